"""Long-context generation with a large vocabulary (issue 16): `warmup generate` vs transformers
`generate` on bench/qwen2_50m.json with its vocabulary overridden to Qwen's 151,936 tokens (random
weights from `warmup model init --seed 1`), batch 32, 1,024-token random prompts + 1,024 new
tokens, greedy with EOS ignored so both sides do the same work. Same prompts (token ids) for both
sides, the same torch build and thread count; rounds alternate the sides (ours first in even
rounds). Prints one JSON object.

Ours: "tokens_per_s" is the rate `warmup generate` prints (prefill + decode, model load excluded),
"wall_tokens_per_s" the same tokens over the whole process; "ratio" uses the first, "ratio_wall"
the second. The new engine's step breakdown (forward / sampling / host seconds) is included when
it prints one.

  PY=~/.cache/warmup/venv/bin/python
  $PY bench/long_context.py --warmup-bin build/bin/warmup --batch 32 --prompt-len 1024 \\
      --new-tokens 1024 --rounds 1 --threads 2 --dtype float32
  # a quick check: --batch 2 --prompt-len 64 --new-tokens 64
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from generate import peer, run_generate  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def kv_cache_mb(cfg, tokens, dtype):
    """The KV cache the whole batch needs at full length, with a quarter to spare (and >= 1 GiB,
    the engine's default)."""
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    per_token = cfg["num_hidden_layers"] * 2 * cfg["num_key_value_heads"] * head_dim * (4 if dtype == "float32" else 2)
    return max(1024, int(1.25 * tokens * per_token / 2**20) + 64)


def ours(a, mdir, prompts, cfg, tmp):
    path = os.path.join(tmp, "prompts.jsonl")
    with open(path, "w") as f:
        for p in prompts:
            f.write(json.dumps({"prompt_token_ids": p}) + "\n")
    args = ["--model", mdir, "--prompts", path, "--out", os.path.join(tmp, "out.jsonl"),
            "--temperature", "0", "--ignore-eos", "--max-new-tokens", str(a.new_tokens),
            "--threads", str(a.threads), "--device", a.device, "--dtype", a.dtype,
            "--kv-cache-mb", str(kv_cache_mb(cfg, len(prompts) * (a.prompt_len + a.new_tokens), a.dtype)),
            *shlex.split(a.ours_args)]
    r = run_generate(a.warmup_bin, args, len(prompts))
    with open(os.path.join(tmp, "out.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    lens = [len(c["token_ids"]) for row in rows for c in row["completions"]]
    assert lens == [a.new_tokens] * len(prompts), f"completion lengths {sorted(set(lens))}, not {a.new_tokens}"
    generated = len(prompts) * a.new_tokens
    o = {"tokens_per_s": r["tokens_per_s"], "wall_s": r["wall_s"], "wall_tokens_per_s": generated / r["wall_s"],
         "first_completion": rows[0]["completions"][0]["token_ids"][:16]}
    if "step_breakdown" in r:
        o["step_breakdown"] = r["step_breakdown"]
    return o


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=os.path.join(HERE, "qwen2_50m.json"))
    ap.add_argument("--vocab-size", type=int, default=151936, help="overrides the config's vocab_size")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--prompt-len", type=int, default=1024)
    ap.add_argument("--new-tokens", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--device", default="cpu", help="cpu | cuda (both sides)")
    ap.add_argument("--warmup-bin", default="build/bin/warmup")
    ap.add_argument("--ours-args", default="", help="more `warmup generate` options, e.g. '--max-num-batched-tokens 8192'")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with open(a.config) as f:
        cfg = json.load(f)
    cfg["vocab_size"] = a.vocab_size
    if a.prompt_len + a.new_tokens > cfg["max_position_embeddings"]:
        raise SystemExit(f"--prompt-len + --new-tokens = {a.prompt_len + a.new_tokens} is more than the config's "
                         f"max_position_embeddings {cfg['max_position_embeddings']}")
    with tempfile.TemporaryDirectory() as tmp:
        cpath, mdir = os.path.join(tmp, "config.json"), os.path.join(tmp, "model")
        with open(cpath, "w") as f:
            json.dump(cfg, f)
        subprocess.run([a.warmup_bin, "model", "init", "--config", cpath, "--out", mdir, "--seed", "1"],
                       check=True, capture_output=True)
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[a.dtype]
        model = AutoModelForCausalLM.from_pretrained(mdir, attn_implementation="sdpa", dtype=dtype).to(a.device).eval()
        g = torch.Generator().manual_seed(0)
        prompts = torch.randint(0, a.vocab_size, (a.batch, a.prompt_len), generator=g).tolist()
        peer(model, prompts[:1], 4)  # warm-up (first-call allocations, CUDA context)
        rounds = []
        for r in range(a.rounds):
            res = {}
            for side in (("ours", "peer") if r % 2 == 0 else ("peer", "ours")):
                res[side] = ours(a, mdir, prompts, cfg, tmp) if side == "ours" else peer(model, prompts, a.new_tokens)
            print(f"round {r}: ours {res['ours']['tokens_per_s']:.1f} tok/s ({res['ours']['wall_tokens_per_s']:.1f} "
                  f"whole process), transformers {res['peer']['tokens_per_s']:.1f} tok/s", file=sys.stderr)
            rounds.append(res)
    med = lambda side, k: statistics.median(x[side][k] for x in rounds)  # noqa: E731
    summary = {
        "bench": "long_context_" + a.device, "config": a.config, "vocab_size": a.vocab_size, "dtype": a.dtype,
        "threads": a.threads, "torch": torch.__version__, "batch": a.batch, "prompt_len": a.prompt_len,
        "new_tokens": a.new_tokens, "ours_args": a.ours_args,
        # greedy on the same weights: the first tokens agree unless near-ties flip (fp32 vs fp32: rarely)
        "same_first_tokens": rounds[0]["ours"]["first_completion"] == rounds[0]["peer"]["first_completion"],
        "ours": {"tokens_per_s": [x["ours"]["tokens_per_s"] for x in rounds],
                 "wall_tokens_per_s": [x["ours"]["wall_tokens_per_s"] for x in rounds],
                 "wall_s": [x["ours"]["wall_s"] for x in rounds]},
        "peer": {"tokens_per_s": [x["peer"]["tokens_per_s"] for x in rounds],
                 "seconds": [x["peer"]["seconds"] for x in rounds]},
        "ratio": med("ours", "tokens_per_s") / med("peer", "tokens_per_s"),
        "ratio_wall": med("ours", "wall_tokens_per_s") / med("peer", "tokens_per_s"),
    }
    steps = [x["ours"]["step_breakdown"] for x in rounds if "step_breakdown" in x["ours"]]
    if steps:
        summary["ours"]["step_breakdown"] = steps
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
