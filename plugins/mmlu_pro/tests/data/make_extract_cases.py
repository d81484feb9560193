"""Writes extract_cases.jsonl: tricky completions with the letters Python's `re` extracts through
the paper's chain (the authors' dataset_loader.py / eval script) and the official chain
(TIGER-AI-Lab/MMLU-Pro evaluate_from_local.py, tier 2 with and without `\\(?`). Run with Python 3:
    python3 make_extract_cases.py > extract_cases.jsonl
The patterns below are copied from those scripts; tiers are numbered 1..3, 0 = none."""
import json
import re


def paper(text):
    m = re.search(r"\\boxed\{(?:\\text\{)?\s*([A-J])\s*(?:\})?\}", text)
    if m:
        return m.group(1), 1
    m = re.search(r"<answer>\s*([A-J])(\.\s*(.*?))?\s*</answer>", text)
    if m:
        return m.group(1), 2
    m = re.search(r"\b[A-J]\b(?!.*\b[A-J]\b)", text, re.DOTALL)
    return (m.group(0), 3) if m else (None, 0)


def official(text, again=r".*[aA]nswer:\s*\(?([A-J])\)?"):
    m = re.search(r"answer is \(?([A-J])\)?", text)
    if m:
        return m.group(1), 1
    m = re.search(again, text)
    if m:
        return m.group(1), 2
    m = re.search(r"\b[A-J]\b(?!.*\b[A-J]\b)", text, re.DOTALL)
    return (m.group(0), 3) if m else (None, 0)


CASES = [
    "so <answer> \\boxed{C} </answer>",
    "\\boxed{\\text{ D }} and \\boxed{E}",
    "\\boxed{\\text{F}",                      # unclosed \text: (?:\})? then \} closes
    "\\boxed{ G\x1c}",                        # \x1c is whitespace for Python
    "\\boxed{ H\x85}",                        # NEL too
    "\\boxed{\u2003I\u3000}",
    "\\boxed{K} then B",
    "<answer> B. because\nof x </answer> and C",  # lazy .*? cannot cross \n
    "<answer>J. fine </answer>",
    "<answer>\n\nA\n</answer>",
    "The answer is (B). Answer: C",
    "the answer is C",
    "answer is(D)",
    "Answer: (E)\nanswer: F\nAnswer: G",
    "x Answer: A y answer: B\nAnswer: C",
    "Final Answer:\n\n(H) done",
    "Answer: I\u00e9",
    "\u00e9A and \u00dfB and _C and 1D and E\u0301",  # letters glued to Unicode word characters
    "\u0661F \u00bdG \u2160H",                       # Arabic-Indic digit, fraction (No), Roman numeral (Nl)
    "A, B or maybe C.\n\nI think J",
    "no letters here at all",
    "lowercase a b c",
    "K L M",
    "",
    "\u201cA\u201d",
    "A\u200bB",                               # zero-width space is not whitespace nor word
]

for text in CASES:
    p, pt = paper(text)
    o, ot = official(text)
    n, nt = official(text, r".*[aA]nswer:\s*([A-J])")
    print(json.dumps({"text": text, "paper": p, "paper_tier": pt, "official": o, "official_tier": ot,
                      "official_plain": n, "official_plain_tier": nt}))
