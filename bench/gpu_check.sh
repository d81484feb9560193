#!/usr/bin/env bash
# One-shot GPU checks on a lent CUDA machine (torch 2.11 + CUDA 13 in its python3, no internet):
# our binaries are built here with CUDA (scripts/build.sh) and carried in .gpu/ by
# bench/gpu_pack.sh. Writes logs and stores to $OUT. Not part of CI.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
TL=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__) + "/lib")')
NV=$(find "$(python3 -c 'import nvidia, os; print(list(nvidia.__path__)[0])')" -maxdepth 3 -type d -name lib | tr '\n' ':')
export LD_LIBRARY_PATH="$PWD/.gpu/deps:$TL:$NV${LD_LIBRARY_PATH:-}"
W=$PWD/.gpu/bin/warmup
export PYTHONUNBUFFERED=1
log() { echo "=== $* ($(date +%T))"; }
log version; $W version 2>&1 | tee "$OUT/version.txt"; nvidia-smi --query-gpu=name,memory.total --format=csv

log "logits parity vs transformers on cuda"
python3 - "$W" <<'PY' 2>&1 | tee "$OUT/parity.txt"
import json, subprocess, sys, tempfile, os, torch
from safetensors.torch import load_file
from transformers import Qwen2Config, Qwen2ForCausalLM
W = sys.argv[1]
torch.manual_seed(0)
cfg = Qwen2Config(vocab_size=1000, hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=8,
                  num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=False)
with tempfile.TemporaryDirectory() as d:
    m = Qwen2ForCausalLM(cfg).eval(); m.save_pretrained(d)
    ids = torch.randint(0, 1000, (3, 40)); mask = torch.ones_like(ids); mask[1, :7] = 0; mask[2, :19] = 0
    json.dump({"input_ids": ids.tolist(), "attention_mask": mask.tolist()}, open(d + "/b.json", "w"))
    for dtype, tol in (("float32", 1e-4), ("bfloat16", 0.15)):
        subprocess.run([W, "model", "logits", d, "--batch", d + "/b.json", "--device", "cuda", "--dtype", dtype,
                        "--out", d + "/o.st"], check=True, capture_output=True)
        ours = load_file(d + "/o.st")["logits"]
        hf = m.to("cuda", getattr(torch, dtype))
        with torch.no_grad():
            ref = hf(input_ids=ids.cuda(), attention_mask=mask.cuda()).logits.float().cpu()
        real = mask.bool()
        diff = (ours[real] - ref[real]).abs().max().item()
        same = (ours[real].argmax(-1) == ref[real].argmax(-1)).float().mean().item()
        print(json.dumps({"dtype": dtype, "max_abs_diff": diff, "argmax_agree": same, "ok": diff < tol}))
PY

log "generation throughput vs transformers generate (cuda, bf16, Qwen2.5-0.5B shape, random weights)"
python3 bench/generate.py --warmup-bin "$W" --config bench/qwen2.5_0.5b.json --device cuda --dtype bfloat16 \
  --threads 8 --batches 1,32 --prompt-len 128 --new-tokens 256 2>&1 | tee "$OUT/generate.json"

log "process groups on one GPU: SFT with ProcessGroupNCCL of world size 1 against none (goal: < 3% slower)"
python3 bench/distributed_sft.py --warmup-bin "$W" --device cuda --nproc 1 --threads 8 --global-batch 8 \
  --max-length 1024 --steps 10 --rounds 2 2>&1 | tee "$OUT/distributed_sft.json"

log "quickstart on cuda (4 arms)"
time $W run experiments/quickstart.toml --set 'model.device="cuda"' --store "$OUT/quickstart.sqlite" 2>&1 | tail -60 | tee "$OUT/quickstart.txt"
$W runs table latest --store "$OUT/quickstart.sqlite" --metrics 'eval/kk/accuracy,eval/kk/kk_paper/format_mean,eval/kk/reward_mean' 2>&1 | tee -a "$OUT/quickstart.txt"
log done
