"""SFT tokens/s on the CPU: the `sft` algorithm (a `warmup run`) vs an equivalent transformers
training loop: same model directory (bench/qwen2_50m.json, random init), same torch build and
thread count, same K&K solver-trace sequences truncated to the same max length, same batch and
AdamW. Loss on completion tokens only on both sides. Prints JSON with the ratio and peak RSS."""
import argparse
import json
import os
import resource
import sqlite3
import subprocess
import tempfile
import time

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="bench/qwen2_50m.json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup-bin", default="build/bin/warmup")
    ap.add_argument("--packing", action="store_true", help="ours with packing = true (rows of max-length tokens)")
    a = ap.parse_args()
    repo = os.path.abspath(".")
    with tempfile.TemporaryDirectory() as tmp:
        run = lambda *args: subprocess.run([a.warmup_bin, *map(str, args)], check=True, capture_output=True, text=True)
        run("model", "init", "--config", a.config, "--out", f"{tmp}/m", "--seed", "1")
        run("kk", "generate", "--people", "3", "--count", str(a.batch * (a.steps + 1)), "--seed", "1",
            "--out-dir", f"{tmp}/kk", "--split", "train")
        exp = f"""[experiment]
name = "bench-sft"
[model]
path = "{tmp}/m"
[tasks.knights_knaves]
data_dir = "{tmp}/kk"
people = [3]
prompt = "plain"
[[stages]]
name = "distill"
algorithm = "distill"
tasks = ["knights_knaves"]
teachers = ["kk_solver"]
eval = {{ split = "train" }}
[[stages]]
name = "sft"
algorithm = "sft"
  [stages.sft]
  data = "{{run_dir}}/sft.jsonl"
  max_steps = {a.steps + 1}
  per_device_train_batch_size = {a.batch}
  gradient_accumulation_steps = 1
  max_length = {a.max_length}
  learning_rate = 1e-4
  packing = {"true" if a.packing else "false"}
"""
        open(f"{tmp}/e.toml", "w").write(exp)
        os.environ["OMP_NUM_THREADS"] = str(a.threads)
        subprocess.run([a.warmup_bin, "run", f"{tmp}/e.toml", "--store", f"{tmp}/s.sqlite"],
                       check=True, capture_output=True, text=True)
        con = sqlite3.connect(f"{tmp}/s.sqlite")
        tps = [v for (v,) in con.execute("SELECT value FROM metrics WHERE key = 'train/tokens_per_s' AND step > 1 ORDER BY step")]
        ours = {"impl": "warmup sft" + (" (packing)" if a.packing else ""), "tokens_per_s": sorted(tps)[len(tps) // 2], "steps": len(tps)}

        torch.set_num_threads(a.threads)
        tok = Tokenizer.from_file(f"{tmp}/m/tokenizer.json")
        rows = [json.loads(l) for l in open(f"{tmp}/runs/1/sft.jsonl")]
        seqs = []
        for r in rows:
            p, c = tok.encode(r["prompt"]).ids, tok.encode(r["completion"]).ids + [256]
            ids = (p + c)[: a.max_length]
            labels = ([-100] * len(p) + c)[: a.max_length]
            seqs.append((ids, labels))
        model = AutoModelForCausalLM.from_pretrained(f"{tmp}/m", attn_implementation="sdpa").train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=1e-4)
        times, counts = [], []
        for s in range(a.steps + 1):
            batch = seqs[s * a.batch:(s + 1) * a.batch]
            T = max(len(x[0]) for x in batch)
            ids = torch.tensor([x[0] + [0] * (T - len(x[0])) for x in batch])
            labels = torch.tensor([x[1] + [-100] * (T - len(x[1])) for x in batch])
            mask = torch.tensor([[1] * len(x[0]) + [0] * (T - len(x[0])) for x in batch])
            t = time.perf_counter()
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if s > 0:
                times.append(time.perf_counter() - t)
                counts.append(int(mask.sum()))
        rates = sorted(c / t for c, t in zip(counts, times))
        peer = {"impl": "transformers loop", "tokens_per_s": rates[len(rates) // 2],
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        ours["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(json.dumps({"bench": "sft_cpu", "config": a.config, "threads": a.threads, "batch": a.batch,
                          "max_length": a.max_length, "torch": torch.__version__, "ours": ours, "peer": peer,
                          "ratio": ours["tokens_per_s"] / peer["tokens_per_s"]}, indent=2))


if __name__ == "__main__":
    main()
