"""The official MMLU-Pro 5-shot CoT prompt: our warmup-mmlu_pro output for every one of the 12,032
test rows equals the prompt of TIGER-AI-Lab/MMLU-Pro evaluate_from_local.py (its preprocess,
select_by_category, format_cot_example and generate_cot_prompt, copied into
plugins/mmlu_pro/tests/data/make_prompt_references.py; initial_prompt.txt as
given in the issue). Run by ctest as plugin.mmlu_pro.official_prompt (MMLU_PRO_TOOL, MMLU_SHARED_DIR)."""
import json
import os
import subprocess
import sys
from pathlib import Path

TOOL = os.environ.get("MMLU_PRO_TOOL", "build/bin/warmup-mmlu_pro")
DATA = Path(os.environ.get("MMLU_SHARED_DIR", Path(__file__).resolve().parents[3] / "shared/data/mmlu_pro"))

# The official functions live in one place: the fixture script that also writes the references.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins/mmlu_pro/tests/data"))
from make_prompt_references import generate_cot_prompt, preprocess, select_by_category  # noqa: E402,F401


def load(name):
    with open(DATA / name, encoding="utf-8") as f:
        return preprocess([json.loads(line) for line in f if line.strip()])


def test_five_shot_prompt_equals_official_for_every_test_row():
    test, val = load("test.jsonl"), load("validation.jsonl")
    for k in (5, 2):
        out = subprocess.run([TOOL, "prompts", "--data-dir", str(DATA), "--k", str(k)], capture_output=True,
                             check=True).stdout.decode("utf-8")
        ours = [json.loads(line) for line in out.split("\n") if line]
        assert len(ours) == len(test) == 12032
        for row, q in zip(ours, test):
            assert row["question_id"] == q["question_id"]
            assert row["prompt"] == generate_cot_prompt(val, q, k), q["question_id"]


def test_official_chain_tool_matches_official_pred_on_extracted_rows():
    out = subprocess.run([TOOL, "extract", "--chain", "official", "--in", str(DATA / "llama31_8b_instruct_outputs.jsonl")],
                         capture_output=True, check=True).stdout.decode()
    ours = [json.loads(line) for line in out.split("\n") if line]
    with open(DATA / "llama31_8b_instruct_outputs.jsonl") as f:
        ref = [json.loads(line) for line in f]
    assert len(ours) == len(ref)
    assert all(o["pred"] == r["pred"] for o, r in zip(ours, ref) if o["pred"] is not None)
    assert sum(o["pred"] is None for o in ours) == 694
