"""Answers/s of the C++ verifier (`warmup-math verify`) vs Math-Verify 0.9 (`verify(parse(gold),
parse(pred))`) on the same pairs: Math-Verify's test cases (../shared/data/math_verify) and the
500 MATH-500 (\\boxed{answer}, gold solution) pairs. Same machine, one thread each; prints JSON.

    ~/.cache/warmup/venv/bin/python bench/math_verify.py [--bin build/bin/warmup-math] [--repeat 3]
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# this file is named like the peer package: keep its folder off the import path
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
SHARED = REPO.parent / "shared" / "data"


def pairs():
    out = [json.loads(l) for l in open(SHARED / "math_verify" / "equivalence_cases.jsonl")]
    for l in open(SHARED / "math" / "math500_test.jsonl"):
        r = json.loads(l)
        out.append({"gold": "\\boxed{" + r["answer"] + "}", "pred": r["solution"], "harness": "default"})
    return out


def peer_config(c):
    from math_verify import ExprExtractionConfig, LatexExtractionConfig
    if c.get("harness") == "compare_strings":
        t = [LatexExtractionConfig(boxed_match_priority=0) if m == "latex" else ExprExtractionConfig() for m in c["match_types"]]
        return t, dict(float_rounding=c["float_rounding"], strict=c["strict"], allow_set_relation_comp=c["allow_set_relation_comp"])
    return [LatexExtractionConfig(), ExprExtractionConfig()], {}


def run_peer(cases, repeat):
    from math_verify import parse, verify
    configs = [peer_config(c) for c in cases]
    verdicts, t0 = [], time.perf_counter()
    for _ in range(repeat):
        verdicts = [bool(verify(parse(c["gold"], t), parse(c["pred"], t), **kw)) for c, (t, kw) in zip(cases, configs)]
    secs = time.perf_counter() - t0
    return {"seconds": secs, "answers_per_s": len(cases) * repeat / secs}, verdicts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(REPO / "build" / "bin" / "warmup-math"))
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    cases = pairs()
    with tempfile.TemporaryDirectory() as d:
        path, vout = os.path.join(d, "pairs.jsonl"), os.path.join(d, "verdicts.jsonl")
        with open(path, "w") as f:
            for c in cases:
                f.write(json.dumps(c) + "\n")
        p = subprocess.run([a.bin, "verify", "--in", path, "--repeat", str(a.repeat), "--out", vout], capture_output=True, text=True, check=True)
        ours = json.loads(p.stdout)
        our_verdicts = [json.loads(l)["equal"] for l in open(vout)]
    peer, peer_verdicts = run_peer(cases, a.repeat)
    agree = sum(x == y for x, y in zip(our_verdicts, peer_verdicts))
    print(json.dumps({"pairs": len(cases), "repeat": a.repeat,
                      "ours": {"answers_per_s": ours["answers_per_s"], "seconds": ours["seconds"], "max_call_s": ours["max_call_s"]},
                      "peer": {"name": "math_verify 0.9 verify(parse(gold), parse(pred))", **peer},
                      "ratio": ours["answers_per_s"] / peer["answers_per_s"],
                      "verdict_agreement_with_peer": agree / len(cases)}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
