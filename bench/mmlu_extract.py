"""MMLU-Pro answer extraction: ours (warmup-mmlu_pro bench, PCRE2 JIT) vs the official Python chain
(TIGER-AI-Lab/MMLU-Pro evaluate_from_local.py extract_answer / extract_again / extract_final, run
with Python `re`) on the same 12,032 Llama-3.1-8B-Instruct generated_text rows. Both time only the
extraction (rows already in memory) and must agree on every letter. Prints one JSON object.

    python bench/mmlu_extract.py [--tool build/bin/warmup-mmlu_pro] [--data ../shared/data/mmlu_pro] [--repeat 1]
"""
import argparse
import json
import re
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def extract_answer(text):
    pattern = r"answer is \(?([A-J])\)?"
    match = re.search(pattern, text)
    if match:
        return match.group(1)
    return extract_again(text)


def extract_again(text):
    match = re.search(r'.*[aA]nswer:\s*\(?([A-J])\)?', text)
    if match:
        return match.group(1)
    return extract_final(text)


def extract_final(text):
    pattern = r"\b[A-J]\b(?!.*\b[A-J]\b)"
    match = re.search(pattern, text, re.DOTALL)
    if match:
        return match.group(0)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", default=str(ROOT / "build/bin/warmup-mmlu_pro"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/mmlu_pro"))
    ap.add_argument("--repeat", type=int, default=1)  # Python passes; ours runs 20x as many
    a = ap.parse_args()
    path = Path(a.data) / "llama31_8b_instruct_outputs.jsonl"
    with open(path, encoding="utf-8") as f:
        texts = [json.loads(line)["generated_text"] for line in f]

    t0 = time.perf_counter()
    for _ in range(a.repeat):
        preds = [extract_answer(t) for t in texts]
    py_s = time.perf_counter() - t0
    py_rate = len(texts) * a.repeat / py_s

    out = subprocess.run([a.tool, "bench", "--in", str(path), "--chain", "official", "--repeat", str(a.repeat * 20)],
                         capture_output=True, check=True, text=True).stdout
    ours = json.loads(out)
    check = subprocess.run([a.tool, "extract", "--in", str(path), "--chain", "official"], capture_output=True,
                           check=True).stdout.decode()
    ours_preds = [json.loads(line)["pred"] for line in check.split("\n") if line]
    agree = sum(p == q for p, q in zip(preds, ours_preds))
    print(json.dumps({
        "rows": len(texts),
        "ours_extractions_per_s": round(ours["extractions_per_s"], 1),
        "python_re_extractions_per_s": round(py_rate, 1),
        "ratio": round(ours["extractions_per_s"] / py_rate, 2),
        "agree": agree,
        "ours_found": ours["found"],
        "python_found": sum(p is not None for p in preds),
    }, indent=1))


if __name__ == "__main__":
    main()
