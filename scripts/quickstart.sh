#!/usr/bin/env bash
# The main job on a fresh machine: set up, build, run the quickstart experiment on the CPU and show
# what the run store recorded. (For now the smoke experiment; the K&K quickstart replaces it.)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
cd "$root"
build="${WARMUP_BUILD_DIR:-$root/build}"
"$build/bin/warmup" run experiments/smoke.toml "$@"
"$build/bin/warmup" runs show latest
