"""SFT tokens/s on the CPU: the `sft` algorithm (a `warmup run`) vs an equivalent transformers
training loop: same model directory (bench/qwen2_50m.json, random init), same torch build and
thread count, same K&K solver-trace sequences truncated to the same max length, same batch and
AdamW. Loss on completion tokens only on both sides (completion_fraction: their share of the
tokens; ours runs the LM head on those rows alone, the peer on every row, as transformers does);
--bf16 autocasts both. Ours and the peer alternate in --rounds rounds (the machine's speed drifts);
each side's rate is the median over its steps. Prints JSON with the ratio and peak RSS."""
import argparse
import glob
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
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of ours and the peer")
    ap.add_argument("--warmup-bin", default="build/bin/warmup")
    ap.add_argument("--packing", action="store_true", help="ours with packing = true (rows of max-length tokens)")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast on both sides (ours: bf16 = true)")
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
  bf16 = {"true" if a.bf16 else "false"}
"""
        open(f"{tmp}/e.toml", "w").write(exp)
        os.environ["OMP_NUM_THREADS"] = str(a.threads)
        torch.set_num_threads(a.threads)

        def ours_round(r):
            os.makedirs(f"{tmp}/r{r}")
            subprocess.run([a.warmup_bin, "run", f"{tmp}/e.toml", "--store", f"{tmp}/r{r}/s.sqlite"],
                           check=True, capture_output=True, text=True)
            con = sqlite3.connect(f"{tmp}/r{r}/s.sqlite")
            return [v for (v,) in con.execute("SELECT value FROM metrics WHERE key = 'train/tokens_per_s' AND step > 1")]

        # The machine's speed drifts over minutes: ours and the peer alternate, round by round, and
        # each reports the median over all its measured steps.
        ours_rates = ours_round(0)
        ours_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # before this process grows
        tok = Tokenizer.from_file(f"{tmp}/m/tokenizer.json")
        rows = [json.loads(l) for l in open(glob.glob(f"{tmp}/r0/runs/1-*/sft.jsonl")[0])]
        seqs = []
        for r in rows:
            p, c = tok.encode(r["prompt"]).ids, tok.encode(r["completion"]).ids + [256]
            ids = (p + c)[: a.max_length]
            labels = ([-100] * len(p) + c)[: a.max_length]
            seqs.append((ids, labels))
        used = seqs[: a.batch * (a.steps + 1)]
        completion_fraction = sum(sum(l != -100 for l in x[1]) for x in used) / sum(len(x[0]) for x in used)
        model = AutoModelForCausalLM.from_pretrained(f"{tmp}/m", attn_implementation="sdpa").train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=1e-4)
        peer_rates = []
        for rnd in range(a.rounds):
            if rnd > 0:
                ours_rates += ours_round(rnd)
            for s in range(a.steps + 1):
                batch = seqs[s * a.batch:(s + 1) * a.batch]
                T = max(len(x[0]) for x in batch)
                ids = torch.tensor([x[0] + [0] * (T - len(x[0])) for x in batch])
                labels = torch.tensor([x[1] + [-100] * (T - len(x[1])) for x in batch])
                mask = torch.tensor([[1] * len(x[0]) + [0] * (T - len(x[0])) for x in batch])
                t = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
                    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
                opt.step()
                opt.zero_grad(set_to_none=True)
                if s > 0:
                    peer_rates.append(int(mask.sum()) / (time.perf_counter() - t))
        median = lambda v: sorted(v)[len(v) // 2]
        ours = {"impl": "warmup sft" + (" (packing)" if a.packing else ""), "tokens_per_s": median(ours_rates),
                "steps": len(ours_rates), "peak_rss_mb": ours_rss}
        peer = {"impl": "transformers loop", "tokens_per_s": median(peer_rates), "steps": len(peer_rates),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        print(json.dumps({"bench": "sft_cpu", "config": a.config, "threads": a.threads, "batch": a.batch, "bf16": a.bf16,
                          "max_length": a.max_length, "completion_fraction": round(completion_fraction, 3), "torch": torch.__version__, "ours": ours, "peer": peer,
                          "ratio": ours["tokens_per_s"] / peer["tokens_per_s"]}, indent=2))


if __name__ == "__main__":
    main()
