#!/usr/bin/env bash
# Packs the CUDA build for bench/gpu_check.sh on a lent GPU machine: stripped binaries, plugins and
# the non-system, non-torch shared libraries they need, into .gpu/ (ignored by git).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"; b="$root/build"; g="$root/.gpu"
rm -rf "$g"; mkdir -p "$g/bin" "$g/lib/warmup/plugins" "$g/deps"
cp "$b/bin/warmup" "$b/bin/warmup-knights_knaves" "$g/bin/"
ln -s warmup-knights_knaves "$g/bin/warmup-kk"
cp "$b"/lib/warmup/plugins/*.so "$b"/lib/warmup/plugins/*.eval.toml "$g/lib/warmup/plugins/"
strip --strip-debug "$g/bin/warmup" "$g/bin/warmup-knights_knaves" "$g"/lib/warmup/plugins/*.so
for f in "$g/bin/warmup" "$g/bin/warmup-knights_knaves" "$g"/lib/warmup/plugins/*.so; do ldd "$f"; done | awk '/=> \//{print $3}' | sort -u |
  grep -v -e torch/lib -e /nvidia/ -e 'libc\.so' -e 'libm\.so' -e 'libstdc++' -e 'libgcc_s' -e ld-linux -e libpthread \
          -e libdl -e librt -e libutil | while read -r l; do cp -L "$l" "$g/deps/"; done
du -sh "$g"
