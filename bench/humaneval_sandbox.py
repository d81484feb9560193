#!/usr/bin/env python3
"""HumanEval+ canonical solutions per second, 2 workers: ours (the humaneval_plus plugin's sandbox,
through the real plugin library: plus cold (recording the expected outputs), plus warm, and
plus_originfmt) vs EvalPlus's evaluator (evalplus.evaluate.check_correctness, which forks one
multiprocessing.Process per base/plus check; its ground truth cached) on the same problems, in the
same run, on EvalPlus's full inputs and on its mini inputs (HumanEval+ Mini). Also the bound that
no scorer can beat: the canonical solutions' own compute on every input (plain loop, one process),
spread over the workers. Prints JSON.

  python bench/humaneval_sandbox.py [--tasks N] [--build build]   # also ours with warm_pool = false
  python bench/humaneval_sandbox.py --per-task OUT.json   # each task alone, ours and EvalPlus's
Needs `pip install evalplus` (in scripts/requirements-test.txt) and a built tree.
"""
import argparse, gzip, json, os, subprocess, sys, time
from concurrent.futures import ProcessPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "..", "shared", "data", "humaneval")


def evalplus_one(args):
    problem, expected = args
    from evalplus.evaluate import check_correctness
    r = check_correctness("humaneval", 0, problem, problem["prompt"] + problem["canonical_solution"], expected)
    return r["base"][0] == "pass" and r["plus"][0] == "pass"


def run_evalplus(problems, workers, name="full"):
    from evalplus.evaluate import get_groundtruth
    import hashlib
    key = hashlib.md5(json.dumps(sorted(problems)).encode()).hexdigest() + "-warmup-bench-" + name
    t0 = time.time()
    import contextlib
    with contextlib.redirect_stdout(sys.stderr):  # EvalPlus prints its progress: the JSON is ours
        expected = get_groundtruth(problems, key, [])  # cached on disk by EvalPlus after the first run
    t_gt = time.time() - t0
    t0 = time.time()
    with ProcessPoolExecutor(workers) as ex:
        ok = list(ex.map(evalplus_one, [(p, expected[t]) for t, p in problems.items()]))
    return {"seconds": time.time() - t0, "groundtruth_seconds": t_gt, "passed": sum(ok), "tasks": len(ok)}


def per_task(problems, a):
    """Where the time goes: each task alone (one worker), ours (plus warm, plus_originfmt) and EvalPlus."""
    from evalplus.evaluate import get_groundtruth
    import hashlib
    ours_file = a.per_task + ".ours"
    env = dict(os.environ, HE_BENCH=str(len(problems)), HE_BENCH_PER_TASK=ours_file)
    subprocess.run([os.path.join(a.build, "bin", "test_humaneval_plus"), "-tc=bench*"], env=env, check=True,
                   capture_output=True, timeout=3600)
    ours = json.load(open(ours_file))
    key = hashlib.md5(json.dumps(sorted(problems)).encode()).hexdigest() + "-warmup-bench"
    expected = get_groundtruth(problems, key, [])
    peer = {}
    for t, p in problems.items():
        t0 = time.time()
        evalplus_one((p, expected[t]))
        peer[t] = time.time() - t0
    json.dump({"ours": ours, "evalplus": peer}, open(a.per_task, "w"), indent=1)
    print(json.dumps({"ours_plus_s": sum(v[0] for v in ours["plus"].values()),
                      "ours_originfmt_s": sum(v[0] for v in ours["plus_originfmt"].values()),
                      "evalplus_s": sum(peer.values())}))


def compute_seconds(problems):
    """The canonical solutions run on every input in a plain loop: the work any scorer must do."""
    sys.set_int_max_str_digits(0)
    per = {}
    for t, p in problems.items():
        g = {}
        exec(p["prompt"] + p["canonical_solution"], g)
        fn = g[p["entry_point"]]
        t0 = time.time()
        for inp in p["base_input"] + p["plus_input"]:
            fn(*inp)
        per[t] = time.time() - t0
    return per


def run_ours(build, n, plus_file=None, cold=False):
    env = dict(os.environ, HE_BENCH=str(n))
    if cold:
        env["HE_BENCH_COLD"] = "1"
    if plus_file:
        env["HE_BENCH_PLUS_FILE"] = plus_file
    out = subprocess.run([os.path.join(build, "bin", "test_humaneval_plus"), "-tc=bench*"], env=env,
                         capture_output=True, text=True, timeout=3600)
    for line in out.stdout.splitlines() + out.stderr.splitlines():
        if "HE_BENCH_JSON" in line:
            return json.loads(line.split("HE_BENCH_JSON", 1)[1])
    sys.exit("ours: no result\n" + out.stdout[-2000:] + out.stderr[-2000:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=164)
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--per-task", metavar="JSON", help="instead: seconds per task, one at a time, ours and EvalPlus's, to JSON")
    a = ap.parse_args()
    res = {"workers": 2}
    for name, file in (("full", "humaneval_plus.jsonl.gz"), ("mini", "humaneval_plus_mini.jsonl.gz")):
        rows = [json.loads(l) for l in gzip.open(os.path.join(DATA, file), "rt")][: a.tasks]
        problems = {r["task_id"]: r for r in rows}
        if a.per_task:
            return per_task(problems, a)
        ours = run_ours(a.build, a.tasks, None if name == "full" else file)
        peer = run_evalplus(problems, 2, name)
        cold = run_ours(a.build, a.tasks, None if name == "full" else file, cold=True)
        n = len(problems)
        compute = compute_seconds(problems)
        bound = max(sum(compute.values()) / 2, max(compute.values()))  # 2 workers, perfectly balanced
        r = {"tasks": n, "ours": ours, "ours_cold_start": cold, "evalplus": peer,
             "ours_cold_start_plus_problems_per_s": n / cold["plus_seconds"],
             "evalplus_problems_per_s": n / peer["seconds"],
             "ours_plus_problems_per_s": n / ours["plus_seconds"],
             "ours_plus_cold_problems_per_s": n / ours["plus_cold_seconds"],
             "ours_originfmt_problems_per_s": n / ours["originfmt_seconds"],
             "compute_seconds": sum(compute.values()), "compute_bound_problems_per_s": n / bound}
        r["ratio_plus"] = r["ours_plus_problems_per_s"] / r["evalplus_problems_per_s"]
        r["ratio_plus_cold"] = r["ours_plus_cold_problems_per_s"] / (n / (peer["seconds"] + peer["groundtruth_seconds"]))
        r["ratio_originfmt"] = r["ours_originfmt_problems_per_s"] / r["evalplus_problems_per_s"]
        r["ratio_bound"] = r["compute_bound_problems_per_s"] / r["evalplus_problems_per_s"]
        r["ours_cold_start_originfmt_problems_per_s"] = n / cold["originfmt_seconds"]
        r["ratio_plus_cold_start"] = r["ours_cold_start_plus_problems_per_s"] / r["evalplus_problems_per_s"]
        if name == "mini":  # plus_originfmt has no mini tests: its time is the full one, above
            for k in ("ours_originfmt_problems_per_s", "ratio_originfmt", "ours_cold_start_originfmt_problems_per_s"):
                del r[k]
        res[name] = r
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
