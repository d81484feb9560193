#!/usr/bin/env python3
"""HumanEval+ canonical solutions per second, 2 workers: ours (the humaneval_plus plugin's sandbox,
through the real plugin library, plus_originfmt and plus variants) vs EvalPlus's evaluator
(evalplus.evaluate.check_correctness, which forks one multiprocessing.Process per base/plus
check) on the same problems, in the same run. Prints JSON.

  python bench/humaneval_sandbox.py [--tasks N] [--build build]
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


def run_evalplus(problems, workers):
    from evalplus.evaluate import get_groundtruth
    import hashlib
    key = hashlib.md5(json.dumps(sorted(problems)).encode()).hexdigest() + "-warmup-bench"
    t0 = time.time()
    expected = get_groundtruth(problems, key, [])  # cached on disk by EvalPlus after the first run
    t_gt = time.time() - t0
    t0 = time.time()
    with ProcessPoolExecutor(workers) as ex:
        ok = list(ex.map(evalplus_one, [(p, expected[t]) for t, p in problems.items()]))
    return {"seconds": time.time() - t0, "groundtruth_seconds": t_gt, "passed": sum(ok), "tasks": len(ok)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=164)
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    a = ap.parse_args()
    rows = [json.loads(l) for l in gzip.open(os.path.join(DATA, "humaneval_plus.jsonl.gz"), "rt")][: a.tasks]
    problems = {r["task_id"]: r for r in rows}
    # ours: the plugin test binary's bench case times the reward (real plugin library, 2 workers).
    env = dict(os.environ, HE_BENCH=str(a.tasks))
    out = subprocess.run([os.path.join(a.build, "bin", "test_humaneval_plus"), "-tc=bench*"], env=env,
                         capture_output=True, text=True, timeout=1800)
    ours = None
    for line in out.stdout.splitlines() + out.stderr.splitlines():
        if "HE_BENCH_JSON" in line:
            ours = json.loads(line.split("HE_BENCH_JSON", 1)[1])
    if ours is None:
        sys.exit("ours: no result\n" + out.stdout[-2000:] + out.stderr[-2000:])
    peer = run_evalplus(problems, 2)
    res = {"tasks": len(problems), "workers": 2, "ours": ours, "evalplus": peer,
           "ours_plus_problems_per_s": len(problems) / ours["plus_seconds"],
           "ours_originfmt_problems_per_s": len(problems) / ours["originfmt_seconds"],
           "evalplus_problems_per_s": len(problems) / peer["seconds"]}
    # Our plus time includes computing the expected outputs (cold); EvalPlus's is reported without
    # and with its ground-truth pass.
    res["evalplus_with_groundtruth_problems_per_s"] = len(problems) / (peer["seconds"] + peer["groundtruth_seconds"])
    res["ratio_plus"] = res["ours_plus_problems_per_s"] / res["evalplus_problems_per_s"]
    res["ratio_plus_cold"] = res["ours_plus_problems_per_s"] / res["evalplus_with_groundtruth_problems_per_s"]
    res["ratio_originfmt"] = res["ours_originfmt_problems_per_s"] / res["evalplus_problems_per_s"]
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
