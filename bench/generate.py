"""Generation throughput on the CPU: `warmup generate` vs transformers `generate` (same model
directory, same torch build and thread count): 128-token prompts, 256 new tokens (greedy, EOS
ignored so both do the same work), at batch 1 and batch 32. Prints JSON with the ratios."""
import argparse
import json
import os
import re
import subprocess
import tempfile
import time

import torch
from transformers import AutoModelForCausalLM


def ours(bin_, model, prompts, new_tokens, threads, tmp, device="cpu", dtype="auto"):
    path = os.path.join(tmp, "p.jsonl")
    with open(path, "w") as f:
        for p in prompts:
            f.write(json.dumps({"prompt_token_ids": p}) + "\n")
    r = subprocess.run([bin_, "generate", "--model", model, "--prompts", path, "--out", os.path.join(tmp, "o.jsonl"),
                        "--temperature", "0", "--ignore-eos", "--max-new-tokens", str(new_tokens),
                        "--threads", str(threads), "--max-batch", str(len(prompts)),
                        "--device", device, "--dtype", dtype],
                       check=True, capture_output=True, text=True)
    m = re.search(r"in ([\d.]+)(m?)s? \(([\d.]+) tok/s\)", r.stderr.replace("\r", "\n"))
    tok_s = float(m.group(3))
    return {"tokens_per_s": tok_s, "generated": len(prompts) * new_tokens}


def peer(model, prompts, new_tokens):
    ids = torch.tensor(prompts, device=model.device)
    if ids.is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, eos_token_id=None, pad_token_id=0)
    if ids.is_cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    assert out.shape[1] == ids.shape[1] + new_tokens
    return {"tokens_per_s": len(prompts) * new_tokens / dt, "seconds": dt}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="bench/qwen2_50m.json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--warmup-bin", default="build/bin/warmup")
    ap.add_argument("--device", default="cpu", help="cpu | cuda (both sides)")
    ap.add_argument("--dtype", default="float32", help="float32 | bfloat16 (both sides)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        mdir = os.path.join(tmp, "model")
        subprocess.run([a.warmup_bin, "model", "init", "--config", a.config, "--out", mdir, "--seed", "1"],
                       check=True, capture_output=True)
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[a.dtype]
        model = AutoModelForCausalLM.from_pretrained(mdir, attn_implementation="sdpa", dtype=dtype).to(a.device).eval()
        g = torch.Generator().manual_seed(0)
        results = {}
        for b in map(int, a.batches.split(",")):
            prompts = torch.randint(0, 256, (b, a.prompt_len), generator=g).tolist()
            o = ours(a.warmup_bin, mdir, prompts, a.new_tokens, a.threads, tmp, a.device, a.dtype)
            peer(model, prompts[:1], 8)  # warm-up (CUDA context, kernels)
            p = peer(model, prompts, a.new_tokens)
            results[f"batch_{b}"] = {"ours": o, "peer": p, "ratio": o["tokens_per_s"] / p["tokens_per_s"]}
    print(json.dumps({"bench": "generate_" + a.device, "dtype": a.dtype, "config": a.config, "threads": a.threads, "torch": torch.__version__,
                      "prompt_len": a.prompt_len, "new_tokens": a.new_tokens, "results": results}, indent=2))


if __name__ == "__main__":
    main()
