"""`warmup report` on a large store: a real run (a tiny model, 2 SFT steps) to which the benchmark
adds synthetic GRPO-like stages straight into the SQLite file (thousands of steps, 40 metric keys
each, and 100,000 completions of ~2,000 characters in groups of 8), then times `warmup report`
(whole process, median of --rounds) and reports the file size, and how long headless Chromium
takes to render the page (until the page marks itself ready). The floor it is compared with is
`sqlite3` reading the same rows the report reads (every metric, the selected samples' text cut
at the same length) into JSON: the cost of the data alone, no HTML.

    ~/.cache/warmup/venv/bin/python bench/report.py --warmup-bin build/bin/warmup [--steps 3000]
"""
import argparse
import json
import math
import random
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 1024, "hidden_size": 32,
        "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
        "max_position_embeddings": 512, "tie_word_embeddings": True, "eos_token_id": 0, "torch_dtype": "float32"}
KEYS = ["train/loss", "train/grad_norm", "train/learning_rate", "train/entropy", "train/reward", "train/reward_std",
        "train/frac_reward_zero_std", "train/completions/mean_length", "train/completions/min_length",
        "train/completions/max_length", "train/completions/clipped_ratio", "train/clip_ratio/low_mean",
        "train/clip_ratio/high_mean", "train/clip_ratio/region_mean", "train/time/generate", "train/time/score",
        "train/time/train", "train/epoch"] + [f"train/rewards/r{i}/mean" for i in range(22)]


def make_store(warmup, d, stages, steps, samples):
    (d / "tiny.json").write_text(json.dumps(TINY))
    (d / "exp.toml").write_text(f"""[experiment]
name = "bench-report"
[model]
init = {{ config = "tiny.json", seed = 1, tokenizer = "{REPO / 'experiments/quickstart/tokenizer'}" }}
[tasks.kk]
plugin = "knights_knaves"
people = [2]
generate_train = 8
generate_test = 2
[teachers.solver]
plugin = "kk_solver"
[[stages]]
name = "sft"
algorithm = "sft"
tasks = ["kk"]
teachers = ["solver"]
  [stages.sft]
  max_steps = 2
  per_device_train_batch_size = 2
  save_steps = 0
""")
    store = d / "big.sqlite"
    r = subprocess.run([warmup, "run", str(d / "exp.toml"), "--store", str(store)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    rng = random.Random(0)
    con = sqlite3.connect(store)
    words = "the knight says that the knave is lying so we conclude therefore".split()
    with con:
        for s in range(stages):
            name = f"rl-{s}"
            con.execute("INSERT INTO stages (run_id, idx, name, algorithm, status, started_at, ended_at)"
                        " VALUES (1, ?, ?, 'grpo', 'finished', 0, 1)", (s + 1, name))
            rows = [(1, name, k, step, math.sin(step / 50 + i) + rng.random(), None, 1.7e9 + step)
                    for i, k in enumerate(KEYS) for step in range(1, steps + 1)]
            con.executemany("INSERT INTO metrics (run_id, stage, key, step, value, flag, wall_time) VALUES (?,?,?,?,?,?,?)", rows)
        per_stage = samples // stages
        for s in range(stages):
            rows = []
            for j in range(per_stage):
                step, ex = 1 + (j // 8) % steps, j // 8
                text = " ".join(rng.choice(words) for _ in range(330))
                reward = float(rng.random() < 0.5)
                rows.append((1, f"rl-{s}", step, "kk", f"kk/train/{ex}", f"prompt {ex} " + "x" * 400, text, 400, "stop",
                             reward, json.dumps({"kk_paper": reward}), int(reward), reward - 0.5, 1.7e9))
            con.executemany("INSERT INTO samples (run_id, stage, step, task, example_id, prompt, completion,"
                            " completion_tokens, finish_reason, reward, rewards, correct, advantage, created_at)"
                            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    con.close()
    return store


def floor_read(store, max_samples, max_chars):
    t = time.perf_counter()
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    metrics = con.execute("SELECT stage, key, step, value, flag, wall_time FROM metrics WHERE run_id = 1"
                          " ORDER BY stage, key, step").fetchall()
    ids = [i for (i,) in con.execute("SELECT id FROM samples WHERE run_id = 1 ORDER BY id")][:max_samples]
    rows = con.execute(f"SELECT id, substr(prompt, 1, {max_chars}), substr(completion, 1, {max_chars}), rewards"
                       " FROM samples WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(ids),)).fetchall()
    json.dumps({"metrics": metrics, "samples": rows})
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--warmup-bin", default=str(REPO / "build/bin/warmup"))
    ap.add_argument("--stages", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--samples", type=int, default=100000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-browser", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        t = time.perf_counter()
        store = make_store(a.warmup_bin, d, a.stages, a.steps, a.samples)
        built = time.perf_counter() - t
        out = d / "report.html"
        ours, floor = [], []
        for _ in range(a.rounds):  # alternating
            t = time.perf_counter()
            r = subprocess.run([a.warmup_bin, "report", "1", "--store", str(store), "--out", str(out)], capture_output=True, text=True)
            ours.append(time.perf_counter() - t)
            assert r.returncode == 0, r.stderr
            floor.append(floor_read(store, 2000, 4000))
        result = {
            "store": {"stages": a.stages + 1, "steps_per_stage": a.steps, "metric_keys": len(KEYS),
                      "metric_rows": a.stages * a.steps * len(KEYS), "samples": a.samples,
                      "store_mb": round(store.stat().st_size / 1e6, 1), "build_s": round(built, 1)},
            "report_s": round(statistics.median(ours), 3), "report_s_all": [round(x, 3) for x in ours],
            "report_mb": round(out.stat().st_size / 1e6, 2),
            "floor_sqlite_read_s": round(statistics.median(floor), 3),
            "ratio_floor_over_ours": round(statistics.median(floor) / statistics.median(ours), 3),
            "stderr": r.stderr.strip().splitlines()[-1],
        }
        chromium = shutil.which("chromium")
        if chromium and not a.no_browser:
            t = time.perf_counter()
            c = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=60000",
                                "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=600)
            result["chromium_dump_dom_s"] = round(time.perf_counter() - t, 2)
            result["chromium_ready"] = 'data-ready="1"' in c.stdout
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
