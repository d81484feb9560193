"""Seconds per GRPO step on the CPU: `warmup run` (algorithm/grpo) vs TRL's GRPOTrainer with the
same model (the quickstart's 3M-parameter Qwen2 shape, random weights, its K&K tokenizer), prompts,
reward (count of "knight", at most 4), 8 prompts x 8 generations, completions of 64 tokens,
temperature 1.0, top-p 1.0, AdamW, one iteration, beta 0, bnpo loss, same torch build and thread
count; generation without vLLM on both sides. Prints JSON with the generate/score/train split."""
import argparse
import contextlib
import glob
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOK = os.path.join(REPO, "experiments/quickstart/tokenizer")


def ours(bin_, model_cfg, steps, tmp, threads):
    exp = os.path.join(tmp, "grpo.toml")
    with open(exp, "w") as f:
        f.write(f"""[experiment]
name = "bench-grpo"
seed = 1
[model]
init = {{ config = "{model_cfg}", seed = 0, tokenizer = "{TOK}" }}
device = "cpu"
[tasks.arithmetic]
train_size = 64
[rewards.regex]
pattern = "knight"
mode = "count"
max = 4
[[stages]]
name = "rl"
algorithm = "grpo"
tasks = ["arithmetic"]
rewards = ["regex"]
  [stages.grpo]
  num_examples = 64
  prompts_per_step = 8
  num_generations = 8
  per_device_train_batch_size = 64
  max_completion_length = 64
  temperature = 1.0
  top_p = 1.0
  learning_rate = 1e-5
  lr_scheduler_type = "constant"
  max_steps = {steps + 1}
  save_steps = 0
  reward_workers = 1
""")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    store = os.path.join(tmp, "s.sqlite")
    subprocess.run([bin_, "run", exp, "--store", store], check=True, capture_output=True, env=env)
    con = sqlite3.connect(store)
    part = {}
    for k in ("generate", "score", "train"):
        vals = [v for (v,) in con.execute("SELECT value FROM metrics WHERE key = ? AND step > 1 ORDER BY step",
                                          (f"train/time/{k}",))]
        part[k] = sum(vals) / len(vals)
    part["step"] = sum(part.values())
    (tokens,) = con.execute("SELECT avg(value) FROM metrics WHERE key = 'train/completions/mean_length' AND step > 1").fetchone()
    part["completion_tokens_mean"] = tokens
    # run folders are runs/<id>-<uuid prefix>/ (the store's run 1)
    return part, glob.glob(os.path.join(tmp, "runs/1-*/model-init"))[0]


def peer(model_dir, steps, threads):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(threads)
    tok = PreTrainedTokenizerFast.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa")
    prompts = [f"What is {a} + {b}? Answer with a number." for a, b in zip(range(64), range(3, 67))]
    timing = {"score": 0.0, "gen_and_score": 0.0}

    def knight(completions, **kw):
        t = time.perf_counter()
        out = [min(4.0, float(len(re.findall("knight", c)))) for c in completions]
        timing["score"] += time.perf_counter() - t
        return out

    args = GRPOConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=64, gradient_accumulation_steps=1,
                      num_generations=8, max_completion_length=64, temperature=1.0, top_p=1.0, top_k=0,
                      learning_rate=1e-5, lr_scheduler_type="constant", beta=0.0, loss_type="bnpo",
                      scale_rewards="none", max_steps=steps + 1, logging_steps=1, save_strategy="no", report_to=[],
                      use_cpu=True, bf16=False, seed=1, dataloader_num_workers=0, disable_tqdm=True,
                      gradient_checkpointing=False)  # as ours (TRL 1.x turns it on by default)
    trainer = GRPOTrainer(model=model, reward_funcs=knight, args=args, processing_class=tok,
                          train_dataset=Dataset.from_dict({"prompt": prompts}))
    inner = trainer._generate_and_score_completions

    def timed(*a, **k):
        t = time.perf_counter()
        r = inner(*a, **k)
        timing["gen_and_score"] += time.perf_counter() - t
        return r
    trainer._generate_and_score_completions = timed
    steps_t = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t = time.perf_counter()
            self.s0 = dict(timing)

        def on_step_end(self, *a, **k):
            steps_t.append((time.perf_counter() - self.t, timing["gen_and_score"] - self.s0["gen_and_score"],
                            timing["score"] - self.s0["score"]))
    trainer.add_callback(Clock())
    trainer.train()
    rows = steps_t[1:]  # the first step warms up
    step = sum(r[0] for r in rows) / len(rows)
    gs = sum(r[1] for r in rows) / len(rows)
    sc = sum(r[2] for r in rows) / len(rows)
    return {"generate": gs - sc, "score": sc, "train": step - gs, "step": step}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--warmup-bin", default=os.path.join(REPO, "build/bin/warmup"))
    ap.add_argument("--config", default=os.path.join(REPO, "experiments/quickstart/model.json"))
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        o, model_dir = ours(a.warmup_bin, a.config, a.steps, tmp, a.threads)
        with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs
            p = peer(model_dir, a.steps, a.threads)
    print(json.dumps({"bench": "grpo_step_cpu", "threads": a.threads, "torch": torch.__version__,
                      "completions_per_step": 64, "max_completion_length": 64, "ours_s": o, "trl_s": p,
                      "speedup": p["step"] / o["step"]}, indent=2))


if __name__ == "__main__":
    main()
