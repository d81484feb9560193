"""Generation throughput on the CPU: `warmup generate` vs transformers `generate` (same model
directory, same torch build and thread count): 128-token prompts, 256 new tokens (greedy, EOS
ignored so both do the same work), at batch 1 and batch 32. Prints JSON with the ratios.

Ours: "tokens_per_s" is the rate `warmup generate` prints (generation only, after the model is
loaded), "wall_tokens_per_s" the same tokens over the whole process as timed here. The helpers
(run_generate, parse_stderr, max_seqs_flag) are shared with rollout.py and long_context.py and
work with the old engine (--max-batch, one summary line) and the new one (--max-num-seqs, a
second line with the step breakdown)."""
import argparse
import json
import os
import re
import subprocess
import tempfile
import time

import torch
from transformers import AutoModelForCausalLM

_HELP = {}


def max_seqs_flag(bin_):
    """`--max-num-seqs` where the binary has it (the new engine), else the old `--max-batch`."""
    if bin_ not in _HELP:
        _HELP[bin_] = subprocess.run([bin_, "generate", "--help"], capture_output=True, text=True).stdout
    return "--max-num-seqs" if "--max-num-seqs" in _HELP[bin_] else "--max-batch"


def parse_stderr(err):
    """The summary lines `warmup generate` prints at the end. The duration is printed by
    format_duration ("4.2s", "1m05s", "1h02m"), so it is not parsed: the rate in "(X tok/s)" is.
    The second line ("generate: N steps | forward X s, sampling Y s, host Z s | prefix-cache hits
    P% of Q prompt tokens | R preemptions") is printed by the new engine only."""
    lines = err.replace("\r", "\n").splitlines()
    out = {}
    for line in lines:
        m = re.search(r"generate: (\d+) completions, (\d+) prompt \+ (\d+) generated tokens in (\S+) \(([\d.]+) tok/s\)", line)
        if m:
            out.update(completions=int(m.group(1)), prompt_tokens=int(m.group(2)), generated_tokens=int(m.group(3)),
                       duration=m.group(4), tokens_per_s=float(m.group(5)))
        m = re.search(r"generate: (\d+) steps \|", line)
        if m:
            steps = {"line": line.strip(), "steps": int(m.group(1))}
            for key, pat in (("forward_s", r"forward ([\d.]+) s"), ("sampling_s", r"sampling ([\d.]+) s"),
                             ("host_s", r"host ([\d.]+) s"), ("prefix_cache_hit_pct", r"hits ([\d.]+)%"),
                             ("prefix_cache_queries", r"of (\d+) prompt tokens"), ("preemptions", r"(\d+) preemptions")):
                k = re.search(pat, line)
                if k:
                    steps[key] = float(k.group(1)) if key.endswith(("_s", "_pct")) else int(k.group(1))
            out["step_breakdown"] = steps
    if "tokens_per_s" not in out:
        m = re.findall(r"\(([\d.]+) tok/s\)", err)  # any other wording of the summary
        if not m:
            raise RuntimeError("no '(X tok/s)' in warmup generate's stderr:\n" + err[-2000:])
        out["tokens_per_s"] = float(m[-1])
    return out


def run_generate(bin_, args, max_seqs):
    """Runs `warmup generate ARGS` as a whole process (model load included); returns the parsed
    summary plus the wall time measured here."""
    cmd = [bin_, "generate", *args, max_seqs_flag(bin_), str(max_seqs)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stderr[-3000:]}")
    out = parse_stderr(r.stderr)
    out["wall_s"] = wall
    return out


def ours(bin_, model, prompts, new_tokens, threads, tmp, device="cpu", dtype="auto"):
    path = os.path.join(tmp, "p.jsonl")
    with open(path, "w") as f:
        for p in prompts:
            f.write(json.dumps({"prompt_token_ids": p}) + "\n")
    r = run_generate(bin_, ["--model", model, "--prompts", path, "--out", os.path.join(tmp, "o.jsonl"),
                            "--temperature", "0", "--ignore-eos", "--max-new-tokens", str(new_tokens),
                            "--threads", str(threads), "--device", device, "--dtype", dtype], len(prompts))
    generated = len(prompts) * new_tokens
    o = {"tokens_per_s": r["tokens_per_s"], "generated": generated,
         "wall_s": r["wall_s"], "wall_tokens_per_s": generated / r["wall_s"]}  # wall: load included
    if "step_breakdown" in r:
        o["step_breakdown"] = r["step_breakdown"]
    return o


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
    return {"tokens_per_s": len(prompts) * new_tokens / dt, "seconds": dt,
            "first_completion": out[0, ids.shape[1]:ids.shape[1] + 16].tolist()}


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
