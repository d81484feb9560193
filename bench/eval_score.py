"""Lines/s of `warmup score --task math500` (JSONL in, verdicts out, the whole command: plugin
loading, example lookup by id, Math-Verify in C++, --jobs threads) vs the Python peer doing the same
job with Math-Verify 0.9 (read the JSONL, look up the gold by id, verify(parse(\\boxed{gold}),
parse(completion)), write the JSONL) on 1,000 lines: the 500 MATH-500 gold solutions and 500
shuffled ones. Same machine, same run; prints JSON with both rates, the ratio and the verdict
agreement.

    ~/.cache/warmup/venv/bin/python bench/eval_score.py [--bin build/bin/warmup] [--jobs 1] [--repeat 3]
"""
import argparse, json, subprocess, sys, tempfile, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# bench/math_verify.py is named like the peer package: keep this folder off the import path
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
DATA = REPO.parent / "shared" / "data"


def make_input(path):
    rows = [json.loads(l) for l in open(DATA / "math" / "math500_test.jsonl")]
    lines = [{"id": f"math/test/{i}", "completion": r["solution"]} for i, r in enumerate(rows)]
    lines += [{"id": f"math/test/{i}", "completion": rows[(i + 7) % len(rows)]["solution"]} for i in range(len(rows))]
    path.write_text("".join(json.dumps(l) + "\n" for l in lines))
    return rows, len(lines)


def run_ours(binary, inp, out, jobs, repeat):
    t0 = time.perf_counter()
    for _ in range(repeat):
        subprocess.run([binary, "score", "--task", "math500", "--data", str(DATA), "--in", str(inp), "--out", str(out),
                        "--jobs", str(jobs), "-q"], check=True, capture_output=True)
    return time.perf_counter() - t0, [json.loads(l)["correct"] for l in open(out)]


def run_peer(rows, inp, out, repeat):
    from math_verify import parse, verify
    t0 = time.perf_counter()
    for _ in range(repeat):
        gold = {f"math/test/{i}": r["answer"] for i, r in enumerate(rows)}
        with open(inp) as f, open(out, "w") as o:
            verdicts = []
            for l in f:
                d = json.loads(l)
                d["correct"] = bool(verify(parse("\\boxed{" + gold[d["id"]] + "}"), parse(d["completion"])))
                verdicts.append(d["correct"])
                o.write(json.dumps(d) + "\n")
    return time.perf_counter() - t0, verdicts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(REPO / "build" / "bin" / "warmup"))
    ap.add_argument("--jobs", type=int, default=1, help="warmup score --jobs (the peer is single-threaded)")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        rows, n = make_input(d / "in.jsonl")
        ours_s, ours_v = run_ours(a.bin, d / "in.jsonl", d / "ours.jsonl", a.jobs, a.repeat)
        peer_s, peer_v = run_peer(rows, d / "in.jsonl", d / "peer.jsonl", a.repeat)
    ours_rate, peer_rate = n * a.repeat / ours_s, n * a.repeat / peer_s
    json.dump({"bench": "eval_score", "lines": n, "repeat": a.repeat, "jobs": a.jobs,
               "ours": {"seconds": ours_s, "lines_per_s": ours_rate},
               "peer": {"name": "math_verify 0.9 (Python)", "seconds": peer_s, "lines_per_s": peer_rate},
               "ratio": ours_rate / peer_rate,
               "agreement": sum(x == y for x, y in zip(ours_v, peer_v)) / n}, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
