#!/usr/bin/env bash
# Quickstart variants on a lent GPU (fast iterations on the recipe's learnability; the CPU run is
# the one that counts). Usage: bench/gpu_quickstart_sweep.sh NAME "--set ..." [NAME "--set ..."]...
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
TL=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__) + "/lib")')
NV=$(find "$(python3 -c 'import nvidia; print(list(nvidia.__path__)[0])')" -maxdepth 3 -type d -name lib | tr '\n' ':')
export LD_LIBRARY_PATH="$PWD/.gpu/deps:$TL:$NV${LD_LIBRARY_PATH:-}"
W=$PWD/.gpu/bin/warmup
while [ $# -ge 2 ]; do
  name=$1; sets=$2; shift 2
  echo "=== $name: $sets ($(date +%T))"
  eval "$W run experiments/quickstart.toml --set 'model.device=\"cuda\"' $sets --store $OUT/$name.sqlite" > "$OUT/$name.log" 2>&1
  echo "rc=$? $(grep -c step "$OUT/$name.log") log lines"
  $W runs table latest --store "$OUT/$name.sqlite" --metrics 'eval/kk/accuracy,eval/kk/kk_paper/format_mean,eval/kk/reward_mean'
done
