#!/usr/bin/env bash
# Set up, build, and run every test (unit and integration) with ctest; its summary ends the output.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh" --test
"$root/scripts/build.sh"
build="${WARMUP_BUILD_DIR:-$root/build}"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" "$@"
