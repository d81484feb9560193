"""Writes the prompt references for the first history row of test_small.jsonl (question 4669):
five_shot_4669.txt with the official 5-shot CoT prompt (functions copied from TIGER-AI-Lab/MMLU-Pro
evaluate_from_local.py; initial_prompt.txt as given in the issue) and rl_4669.txt / eval_4669.txt
with the paper's f-string prompts (apply_prompt in train/dataset_loader.py, generate_cot_prompt in
the eval script; the templates are ../../prompts/*.txt). Run: python3 make_prompt_references.py"""
import json
from pathlib import Path

HERE = Path(__file__).parent
choices = ["A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M", "N", "O", "P"]
INITIAL_PROMPT = ('The following are multiple choice questions (with answers) about {$}. Think step by step and then '
                  'finish your answer with "the answer is (X)" where X is the correct letter choice.\n\n')


def preprocess(test_df):
    res_df = []
    for each in test_df:
        options = []
        for opt in each["options"]:
            if opt == "N/A":
                continue
            options.append(opt)
        each["options"] = options
        res_df.append(each)
    return res_df


def select_by_category(df, subject):
    res = []
    for each in df:
        if each["category"] == subject:
            res.append(each)
    return res


def format_cot_example(example, including_answer=True):
    prompt = "Question:\n"
    question = example["question"]
    options = example["options"]
    prompt += question + "\n"
    prompt += "Options:\n"
    for i, opt in enumerate(options):
        prompt += "{}. {}\n".format(choices[i], opt)
    if including_answer:
        cot_content = example["cot_content"].replace("A: Let's think step by step.",
                                                     "Answer: Let's think step by step.")
        prompt += cot_content + "\n\n"
    else:
        prompt += "Answer: Let's think step by step."
    return prompt


def generate_cot_prompt(val_df, curr, k):
    prompt = INITIAL_PROMPT
    subject = curr["category"]
    val_df = select_by_category(val_df, subject)
    val_df = val_df[: k]
    prompt = prompt.replace("{$}", subject) + "\n"
    for example in val_df:
        prompt += format_cot_example(example, including_answer=True)
    prompt += format_cot_example(curr, including_answer=False)
    return prompt


def paper_prompt(template, example):
    options = ""
    for i, opt in enumerate(example['options']):
        options += "{}. {}\n".format(choices[i], opt)
    return (template.replace("{category}", example["category"]).replace("{question}", example["question"])
            .replace("{options}", options))


if __name__ == "__main__":
    test = preprocess([json.loads(l) for l in open(HERE / "test_small.jsonl")])
    val = preprocess([json.loads(l) for l in open(HERE / "validation_small.jsonl")])
    curr = next(q for q in test if q["question_id"] == 4669)
    (HERE / "five_shot_4669.txt").write_bytes(generate_cot_prompt(val, curr, 5).encode())
    for name in ("rl", "eval"):
        tmpl = (HERE.parent.parent / "prompts" / f"mmlu_{name}.txt").read_text()
        (HERE / f"{name}_4669.txt").write_bytes(paper_prompt(tmpl, curr).encode())
