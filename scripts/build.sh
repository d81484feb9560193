#!/usr/bin/env bash
# Configures and builds warmup (Release with debug info) into ${WARMUP_BUILD_DIR:-build}: everything,
# or $WARMUP_BUILD_TARGET only.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${WARMUP_BUILD_DIR:-$root/build}"
venv="${WARMUP_VENV:-$HOME/.cache/warmup/venv}"
if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DWARMUP_PYTHON="$venv/bin/python" "$@" >/dev/null
fi
# WARMUP_BUILD_TARGET=warmup_runtime builds only the executable, plugins and tools (the quickstart).
cmake --build "$build" -j "$(nproc)" ${WARMUP_BUILD_TARGET:+--target "$WARMUP_BUILD_TARGET"}
