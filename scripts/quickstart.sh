#!/usr/bin/env bash
# The main job on a fresh machine: set up, build, run the K&K quickstart on the CPU (two arms,
# base and warmup, each trained by SFT and evaluated on held-out K&K puzzles) and print what the
# run store recorded (a table here, and results/quickstart-report.html: `warmup report`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
WARMUP_BUILD_TARGET=warmup_runtime "$root/scripts/build.sh"  # no test targets (scripts/test.sh builds those)
cd "$root"
build="${WARMUP_BUILD_DIR:-$root/build}"
"$build/bin/warmup" run experiments/quickstart.toml "$@"
"$build/bin/warmup" runs table latest \
  --metrics 'eval/kk/accuracy,eval/kk/kk_paper/format_mean,eval/kk/reward_mean'
# Curves, the accuracy table and every completion in one offline page (open it in a browser).
"$build/bin/warmup" report latest --out results/quickstart-report.html
