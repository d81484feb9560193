#!/usr/bin/env python3
"""The paper's RLVR claim at toy scale: GRPO on <= 100 K&K puzzles from the quickstart's two SFT
arms, over seeds and GRPO settings, scored on a held-out set larger than the quickstart's.

For each arm (base, warmup) the SFT model is evaluated once (greedy, the quickstart's protocol,
and optionally the paper's 4 samples at T 0.7 / top-p 0.95); then for each named setting and seed
one `warmup run` does GRPO followed by the same evaluation. Prints one JSON object: per run the
per-step reward mean and frac_reward_zero_std, dynamic-sampling rounds, the GRPO stage's wall time
and the held-out accuracy; per setting and arm the mean and spread over seeds.

  PY=~/.cache/warmup/venv/bin/python
  $PY bench/rlvr_study.py --sft-run results/runs/1-xxxx --settings paper,paper_ds@1 --seeds 1,2,3 \
      --test-size 300 --eval-samples 4 --out rlvr_study.json

--sft-run is a finished quickstart run directory (it holds sft-base/model and sft-warmup/model).
The held-out set is the quickstart's generated stream after its 7,200 training puzzles: its first
100 are the quickstart's test split, --test-size takes more of the same stream (never trained on).
"""
import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import tomllib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# GRPO settings under study. "paper": the paper's sampling (T 0.7, top-p 0.95), bnpo, beta 0,
# unscaled advantages, constant lr (scaled to a 3M model trained from scratch: the paper's 1e-6 is
# for a pre-trained 3B model and moves nothing here); _ds: with DAPO's dynamic sampling; "issue":
# the settings issue 21 measured both arms losing accuracy with (T 1.0, top-p 1, lr 2e-5, 15 steps).
COMMON = dict(num_examples=100, prompts_per_step=8, num_generations=8,
              per_device_train_batch_size=16, max_completion_length=600,
              lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
              save_steps=0, logging_steps=5)
SETTINGS = {
    "issue": dict(max_steps=15, temperature=1.0, top_p=1.0, learning_rate=2e-5),
    "paper": dict(max_steps=30, temperature=0.7, top_p=0.95, learning_rate=3e-5),
    "paper_ds": dict(max_steps=30, temperature=0.7, top_p=0.95, learning_rate=3e-5,
                     dynamic_sampling=True, max_num_gen_batches=4),
    "paper_lr1e-4": dict(max_steps=30, temperature=0.7, top_p=0.95, learning_rate=1e-4),
}


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v)


def experiment(model, task, test_size, grpo, eval_samples):
    """The study's experiment file: the SFT run's K&K task (its resolved config, so the generated
    train and test puzzles are the quickstart's) with generate_test = test_size."""
    task = dict(task, generate_test=test_size)
    lines = [
        '[experiment]', 'name = "rlvr-study"', 'seed = 7', '',
        '[model]', f'path = {json.dumps(model)}', 'device = "cpu"', 'dtype = "float32"', '',
        '[tasks.kk]'] + [f'{k} = {toml_value(v)}' for k, v in task.items()] + [
        '', '[rewards.kk_paper]', '']
    if grpo is not None:
        lines += ['[[stages]]', 'name = "rl"', 'algorithm = "grpo"', 'tasks = ["kk"]',
                  'rewards = { kk_paper = 1.0 }', '  [stages.grpo]']
        lines += [f'  {k} = {toml_value(v)}' for k, v in grpo.items()]
        lines.append('')
    lines += ['[[stages]]', 'name = "eval"', 'algorithm = "evaluate"', 'tasks = ["kk"]',
              'rewards = { kk_paper = 1.0 }', 'eval = { split = "test" }', '  [stages.evaluate]',
              '  completions = "model"', '  temperature = 0.0', '  max_new_tokens = 600',
              '  stop = []', '']
    if eval_samples:
        lines += ['[[stages]]', 'name = "eval-sampled"', 'algorithm = "evaluate"',
                  'model_from = "eval"' if grpo is None else 'model_from = "rl"',
                  'tasks = ["kk"]', 'rewards = { kk_paper = 1.0 }',
                  f'eval = {{ split = "test", num_samples = {eval_samples} }}',
                  '  [stages.evaluate]', '  completions = "model"', '  temperature = 0.7',
                  '  top_p = 0.95', '  max_new_tokens = 600', '  stop = []', '']
    return "\n".join(lines)


def metrics(store, run_id):
    db = sqlite3.connect(store)
    out = {}
    for stage, name, step, value in db.execute(
            "SELECT stage, key, step, value FROM metrics WHERE run_id = ? ORDER BY step", (run_id,)):
        out.setdefault(stage, {}).setdefault(name, []).append((step, value))
    times = {n: e - s for n, s, e in db.execute(
        "SELECT name, started_at, ended_at FROM stages WHERE run_id = ?", (run_id,))}
    db.close()
    return out, times


def last(m, stage, name):
    v = m.get(stage, {}).get(name)
    return v[-1][1] if v else None


def series(m, stage, name):
    return [v for _, v in m.get(stage, {}).get(name, [])]


def run_one(args, store, model, grpo):
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False, dir=args.work) as f:
        f.write(experiment(model, args.task, args.test_size, grpo, args.eval_samples))
        path = f.name
    t0 = time.time()
    p = subprocess.run([args.warmup, "run", path, "--store", store, "-q"], cwd=args.work,
                       capture_output=True, text=True)
    wall = time.time() - t0
    if p.returncode != 0:
        sys.exit(f"warmup run {path} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    db = sqlite3.connect(store)
    (run_id,), = db.execute("SELECT id FROM runs WHERE config_file = ?", (os.path.abspath(path),)).fetchall()
    db.close()
    m, times = metrics(store, run_id)
    r = {"run_id": run_id, "wall_s": round(wall, 1),
         "accuracy": last(m, "eval", "eval/kk/accuracy"),
         "format": last(m, "eval", "eval/kk/kk_paper/format_mean")}
    if args.eval_samples:
        r["accuracy_sampled_mean"] = last(m, "eval-sampled", "eval/kk/accuracy_mean")
        r["accuracy_sampled_std"] = last(m, "eval-sampled", "eval/kk/accuracy_std")
    if grpo is not None:
        r["grpo_s"] = round(times.get("rl", 0.0), 1)
        r["reward"] = series(m, "rl", "train/reward")
        r["frac_reward_zero_std"] = series(m, "rl", "train/frac_reward_zero_std")
        r["rounds"] = series(m, "rl", "train/dynamic_sampling/rounds")
        r["groups_dropped"] = series(m, "rl", "train/dynamic_sampling/groups_dropped")
        r["groups_filled"] = series(m, "rl", "train/dynamic_sampling/groups_filled")
        r["completion_length"] = series(m, "rl", "train/completions/mean_length")
    return r


def answers(store, run_id, stage):
    """{example_id: [(correct, answer span)]} of one evaluation stage."""
    db = sqlite3.connect(store)
    out = {}
    for ex, correct, text in db.execute("SELECT example_id, correct, completion FROM samples "
                                        "WHERE run_id = ? AND stage = ? ORDER BY id", (run_id, stage)):
        m = re.search(r"<answer>(.*?)</answer>", text, re.S)
        out.setdefault(ex, []).append((correct, m.group(1).strip() if m else None))
    db.close()
    return out


def agreement(greedy, sampled):
    """Share of sampled answers equal to the model's own greedy answer (sharpening shows here);
    both as answers() returns them for one run."""
    pairs = [(a, greedy[ex][0][1]) for ex, v in sampled.items() for _, a in v]
    return sum(a == g for a, g in pairs) / len(pairs)


def paired(store, before, after):
    """Sampled accuracy after - before, paired per puzzle, with its standard error; greedy
    verdicts changed and their net; agreement of sampled with greedy answers after."""
    sb, sa = answers(store, before, "eval-sampled"), answers(store, after, "eval-sampled")
    gb, ga = answers(store, before, "eval"), answers(store, after, "eval")
    d = [mean([c for c, _ in sa[ex]]) - mean([c for c, _ in sb[ex]]) for ex in sb]
    m = mean(d)
    se = (sum((x - m) ** 2 for x in d) / (len(d) - 1) / len(d)) ** 0.5
    changed = [ga[ex][0][0] - gb[ex][0][0] for ex in gb if ga[ex][0][0] != gb[ex][0][0]]
    return {"paired_delta_sampled": m, "paired_delta_sampled_se": se, "greedy_changed": len(changed),
            "greedy_net": sum(changed), "sampled_agrees_with_greedy": agreement(ga, sa)}


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sft-run", required=True, help="finished quickstart run dir (sft-base/, sft-warmup/)")
    ap.add_argument("--warmup", default=os.path.join(REPO, "build/bin/warmup"))
    ap.add_argument("--settings", default="paper,paper_ds@1")
    ap.add_argument("--arms", default="base,warmup")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--test-size", type=int, default=300)
    ap.add_argument("--eval-samples", type=int, default=4, help="also the paper's N samples at T 0.7 (0: greedy only)")
    ap.add_argument("--set", action="append", default=[],
                    help="SETTING.key=value: a TOML literal, else a string (paper.learning_rate=1e-5)")
    ap.add_argument("--work", default=None)
    ap.add_argument("--out", default=None, help="also write the JSON here (updated after every run)")
    args = ap.parse_args()
    args.work = args.work or tempfile.mkdtemp(prefix="rlvr-study-")
    store = os.path.join(args.work, "study.sqlite")
    for s in args.set:
        key, eq, val = s.partition("=")
        name, dot, opt = key.partition(".")
        if not eq or not dot or not opt:
            ap.error(f"--set {s!r}: expected SETTING.key=value")
        if name not in SETTINGS:
            ap.error(f"--set {s!r}: no setting {name!r} (known: {', '.join(SETTINGS)})")
        try:
            SETTINGS[name][opt] = tomllib.loads(f"v = {val}")["v"]
        except tomllib.TOMLDecodeError:
            SETTINGS[name][opt] = val  # not a TOML literal: a bare string (token_truncate)
    for item in args.settings.split(","):
        if item.partition("@")[0] not in SETTINGS:
            ap.error(f"--settings: no setting {item!r} (known: {', '.join(SETTINGS)})")
    with open(os.path.join(args.sft_run, "config.toml"), "rb") as f:
        args.task = tomllib.load(f)["tasks"]["kk"]
    result = {"test_size": args.test_size, "common": COMMON, "settings": {}, "arms": {}}
    def dump():
        text = json.dumps(result, indent=1)
        if args.out:
            with open(args.out, "w") as f:
                f.write(text + "\n")
        return text
    for arm in args.arms.split(","):
        model = os.path.join(os.path.abspath(args.sft_run), f"sft-{arm}", "model")
        before = run_one(args, store, model, None)
        if args.eval_samples:
            before["sampled_agrees_with_greedy"] = agreement(answers(store, before["run_id"], "eval"),
                                                             answers(store, before["run_id"], "eval-sampled"))
        result["arms"][arm] = {"before": before, "after": {}}
        print(f"{arm}: before {before['accuracy']}", file=sys.stderr, flush=True)
        dump()
    for item in args.settings.split(","):
        name, _, only = item.partition("@")  # paper_ds@1+2: this setting with seeds 1 and 2 only
        seeds = only.split("+") if only else args.seeds.split(",")
        grpo = dict(COMMON, **SETTINGS[name])
        result["settings"][name] = grpo
        for arm in args.arms.split(","):
            model = os.path.join(os.path.abspath(args.sft_run), f"sft-{arm}", "model")
            runs = []
            for seed in seeds:
                r = run_one(args, store, model, dict(grpo, seed=int(seed)))
                r["seed"] = int(seed)
                runs.append(r)
                print(f"{name} {arm} seed {seed}: accuracy {r['accuracy']} grpo {r['grpo_s']} s "
                      f"zero_std {mean(r['frac_reward_zero_std'])}", file=sys.stderr, flush=True)
                b = result["arms"][arm]["before"]
                if args.eval_samples:
                    r.update(paired(store, b["run_id"], r["run_id"]))
                accs = [x["accuracy"] for x in runs]
                agg = {"runs": runs, "accuracy_mean": mean(accs),
                       "accuracy_min": min(accs), "accuracy_max": max(accs),
                       "delta_mean": mean(accs) - b["accuracy"],
                       "frac_reward_zero_std_mean": mean([mean(x["frac_reward_zero_std"]) for x in runs]),
                       "grpo_s_mean": mean([x["grpo_s"] for x in runs])}
                if args.eval_samples:
                    sampled = [x["accuracy_sampled_mean"] for x in runs]
                    agg.update(accuracy_sampled_mean=mean(sampled), delta_sampled_mean=mean(sampled) - b["accuracy_sampled_mean"])
                result["arms"][arm]["after"][name] = agg
                dump()
    print(dump())


if __name__ == "__main__":
    main()
