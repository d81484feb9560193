"""The evaluation harness: `warmup score` against the real references (MATH-500 gold solutions and
Math-Verify's own verdicts, the K&K gold answers), bad input, `warmup eval` end to end on a tiny
model over every paper task, the max_model_len cap, and the per-sample-index statistics
(accuracy mean/std over runs, pass@k, groups) against values computed here independently."""
import json
import math
import os
import statistics
import sys

import pytest

from conftest import REPO, query, warmup, write

DATA = REPO.parent / "shared" / "data"
PY = sys.executable  # the venv's python: has numpy, which HumanEval+ checks import
TINY = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 260, "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 4096, "tie_word_embeddings": True, "torch_dtype": "float32"}

needs_data = pytest.mark.skipif(not (DATA / "math" / "math500_test.jsonl").exists(), reason="no ../shared/data")


def jsonl(path):
    return [json.loads(l) for l in open(path) if l.strip()]


def dump(path, rows):
    write(path, "".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---- warmup score -------------------------------------------------------------------------------

@needs_data
def test_score_math500_gold_solutions_correct_and_shuffled_ones_as_math_verify_says(tmp_path):
    from math_verify import parse, verify
    rows = jsonl(DATA / "math" / "math500_test.jsonl")
    gold = dump(tmp_path / "gold.jsonl", [{"id": f"math/test/{i}", "completion": r["solution"]} for i, r in enumerate(rows)])
    shuf = dump(tmp_path / "shuf.jsonl", [{"id": f"math/test/{i}", "completion": rows[(i + 7) % 500]["solution"]}
                                          for i in range(500)])
    for f in (gold, shuf):
        r = warmup("score", "--task", "math500", "--data", DATA, "--in", f, "--out", f.with_suffix(".out"))
        assert r.returncode == 0, r.stderr
    out = jsonl(gold.with_suffix(".out"))
    assert len(out) == 500 and all(o["correct"] is True and o["reward"] == 1.0 for o in out)
    assert list(out[0])[:2] == ["id", "completion"]  # the input line, then the verdict
    assert set(out[0]) == {"id", "completion", "reward", "rewards", "correct", "extracted_answer", "error"}
    # the extracted answer is Math-Verify's matched text (its parse()[1]) of the solution
    for o, row in zip(out[:50], rows):
        assert o["extracted_answer"] == parse(row["solution"])[1], o["id"]
    out = jsonl(shuf.with_suffix(".out"))
    expected = [bool(verify(parse("\\boxed{" + rows[i]["answer"] + "}"), parse(rows[(i + 7) % 500]["solution"])))
                for i in range(500)]
    assert [o["correct"] for o in out] == expected
    assert sum(expected) < 10  # nearly all wrong: the comparison is not vacuous


@needs_data
def test_score_kk_by_id_and_inline_reference(tmp_path):
    rows = jsonl(DATA / "kk" / "3ppl_test.jsonl")[:20]

    def answer(text):
        return "<think>\nreasoning\n</think>\n<answer>\n" + text + "\n</answer>"

    def flip(text):  # the first person's role swapped
        first, _, rest = text.partition("\n")
        first = first.replace("knight", "KNAVE").replace("knave", "knight").replace("KNAVE", "knave")
        return first + ("\n" + rest if rest else "")

    lines = []
    for i, r in enumerate(rows):
        lines.append({"id": f"kk/3ppl/test/{i}", "completion": answer(r["solution_text_format"])})
        lines.append({"id": f"kk/3ppl/test/{i}", "completion": answer(flip(r["solution_text_format"]))})
        lines.append({"reference": r["solution_text_format"], "completion": answer(r["solution_text_format"])})
        lines.append({"reference": r["solution_text_format"], "completion": "no tags at all"})
    f = dump(tmp_path / "kk.jsonl", lines)
    r = warmup("score", "--task", "kk", "--data", DATA, "--task-option", "people=[3]", "--in", f, "--out", tmp_path / "o.jsonl")
    assert r.returncode == 0, r.stderr
    out = jsonl(tmp_path / "o.jsonl")
    assert [o["correct"] for o in out] == [True, False, True, False] * 20
    assert [o["reward"] for o in out] == [2.0, -0.5, 2.0, -2.0] * 20  # the paper's K&K reward
    assert all(o["error"] == "" for o in out[0::4]) and all(o["error"] for o in out[3::4])
    assert "kk_paper" in out[0]["rewards"]


def test_score_bad_input_names_file_and_line(tmp_path):
    good = {"reference": "4", "completion": "\\boxed{4}"}
    cases = {
        "not json": ("{oops", ":2: not valid JSON"),
        "no completion": (json.dumps({"reference": "4"}), ':2: needs "completion"'),
        "no id or reference": (json.dumps({"completion": "x"}), ':2: needs "id"'),
        "array": ("[1, 2]", ":2: expected a JSON object"),
    }
    for name, (bad, msg) in cases.items():
        f = write(tmp_path / "in.jsonl", json.dumps(good) + "\n" + bad + "\n")
        r = warmup("score", "--task", "math500", "--in", f, "--out", tmp_path / "o.jsonl")
        assert r.returncode == 2, (name, r.stderr)
        assert str(f) + msg in r.stderr, (name, r.stderr)
    r = warmup("score", "--task", "nosuch", "--in", f, "--out", tmp_path / "o.jsonl")
    assert r.returncode == 2 and all(t in r.stderr for t in ("math500", "humaneval_plus", "mmlu_pro[:CATEGORY]", "kk"))
    # Inline references need no data; a bare plugin name needs --reward.
    f = dump(tmp_path / "ok.jsonl", [good, {"reference": "4", "completion": "5"}])
    r = warmup("score", "--task", "math500", "--in", f, "--out", tmp_path / "o.jsonl")
    assert r.returncode == 0, r.stderr
    assert [o["correct"] for o in jsonl(tmp_path / "o.jsonl")] == [True, False]
    r = warmup("score", "--task", "arithmetic", "--in", f, "--out", tmp_path / "o.jsonl")
    assert r.returncode == 2 and "--reward" in r.stderr
    r = warmup("score", "--task", "arithmetic", "--reward", "exact_match", "--reward-option", "extract=last_number",
               "--in", f, "--out", tmp_path / "o.jsonl")
    assert r.returncode == 0, r.stderr
    assert [o["correct"] for o in jsonl(tmp_path / "o.jsonl")] == [True, False]


@needs_data
def test_score_unknown_example_id_is_named(tmp_path):
    f = dump(tmp_path / "in.jsonl", [{"id": "math/test/3", "completion": "x"}, {"id": "math/test/9999", "completion": "x"}])
    r = warmup("score", "--task", "math500", "--data", DATA, "--in", f, "--out", tmp_path / "o.jsonl")
    assert r.returncode == 2
    assert f"{f}:2: unknown example id 'math/test/9999'" in r.stderr
    assert not (tmp_path / "o.jsonl").exists()  # validated before anything is written
    r = warmup("score", "--task", "math500", "--in", f, "--out", tmp_path / "o.jsonl")
    assert r.returncode == 2 and "--data" in r.stderr


# ---- warmup score on other tools' outputs, harness failures (issue 14) -------------------------

import gzip  # noqa: E402
import subprocess  # noqa: E402

from conftest import BUILD  # noqa: E402


def humaneval_rows():
    return [json.loads(l) for l in gzip.open(DATA / "humaneval" / "humaneval_plus.jsonl.gz", "rt")]


@needs_data
def test_score_humaneval_interpreter_without_numpy_is_a_startup_error(tmp_path):
    # A real Python without numpy (a fresh venv; outside /tmp, which the sandbox replaces).
    venv = BUILD / "test-tmp" / f"nonumpy-{os.getpid()}"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--clear", str(venv)], check=True)
    try:
        py = venv / "bin" / "python"
        assert subprocess.run([py, "-c", "import numpy"], capture_output=True).returncode != 0
        row = humaneval_rows()[0]
        f = dump(tmp_path / "in.jsonl", [{"task_id": row["task_id"], "completion": row["canonical_solution"]}])
        for extra in ([], ["--reward", "humaneval_pass_fraction"]):  # --python survives --reward
            r = warmup("score", "--task", "humaneval_plus", "--data", DATA, "--python", py, *extra,
                       "--in", f, "--out", tmp_path / "o.jsonl")
            assert r.returncode == 2, r.stderr
            assert f"interpreter {py} cannot import numpy" in r.stderr and "apt install python3-numpy" in r.stderr, r.stderr
            assert not (tmp_path / "o.jsonl").exists()  # nothing scored, so nothing scored false
    finally:
        subprocess.run(["rm", "-rf", str(venv)])
    # A reward that runs no code refuses --python instead of ignoring it.
    f = dump(tmp_path / "m.jsonl", [{"reference": "4", "completion": "\\boxed{4}"}])
    r = warmup("score", "--task", "math500", "--python", sys.executable, "--in", f, "--out", tmp_path / "o.jsonl")
    assert r.returncode == 2 and "interpreter" in r.stderr, r.stderr


@needs_data
def test_score_humaneval_all_canonical_pass_base_and_plus_with_the_default_interpreter(tmp_path):
    # No --python: /usr/bin/python3 with Debian's numpy (scripts/setup.sh). Lines as human-eval and
    # EvalPlus write them: task_id + completion continuing the prompt.
    rows = humaneval_rows()
    f = dump(tmp_path / "in.jsonl", [{"task_id": r["task_id"], "completion": r["canonical_solution"]} for r in rows])
    r = warmup("score", "--task", "humaneval_plus", "--task-option", "variant=plus", "--data", DATA,
               "--in", f, "--out", tmp_path / "o.jsonl", timeout=600)
    assert r.returncode == 0, r.stderr
    out = jsonl(tmp_path / "o.jsonl")
    assert len(out) == 164
    bad = [(o["task_id"], o["error"]) for o in out if o["correct"] is not True]
    assert not bad, bad
    assert all(o["rewards"]["humaneval_paper/base_pass"] == 1.0 for o in out)  # base inputs and plus inputs
    assert [o["id"] for o in out] == ["humaneval_plus/" + r["task_id"] for r in rows]
    for o, row in zip(out, rows):  # the code that ran: the prompt and the completion
        assert o["extracted_answer"] == row["prompt"] + row["canonical_solution"]


@needs_data
def test_score_humaneval_task_id_lines_same_verdicts_as_our_ids(tmp_path):
    rows = humaneval_rows()[:16]
    ours, theirs = [], []
    for i, r in enumerate(rows):
        for code in (r["canonical_solution"], rows[(i + 1) % len(rows)]["canonical_solution"]):  # right, a neighbour's
            theirs.append({"task_id": r["task_id"], "completion": code})
            ours.append({"id": "humaneval_plus/" + r["task_id"], "completion": "```python\n" + r["prompt"] + code + "\n```"})
        theirs.append({"task_id": r["task_id"], "solution": r["prompt"] + r["canonical_solution"]})  # EvalPlus
        ours.append({"id": "humaneval_plus/" + r["task_id"], "completion": r["prompt"] + r["canonical_solution"]})
    a, b = dump(tmp_path / "a.jsonl", ours), dump(tmp_path / "b.jsonl", theirs)
    for f in (a, b):
        r = warmup("score", "--task", "humaneval_plus", "--data", DATA, "--in", f, "--out", f.with_suffix(".out"))
        assert r.returncode == 0, r.stderr
    oa, ob = jsonl(a.with_suffix(".out")), jsonl(b.with_suffix(".out"))
    assert [o["correct"] for o in oa] == [o["correct"] for o in ob]
    assert [o["id"] for o in oa] == [o["id"] for o in ob]
    assert [o["correct"] for o in oa][0::3].count(True) >= 15  # canonical: all but EvalPlus's broken HumanEval/32 test
    assert [o["correct"] for o in oa][1::3].count(False) >= 14  # neighbours' code: wrong
    assert all(o["extracted_answer"] for o in oa + ob)


@needs_data
def test_score_mmlu_pro_official_outputs_by_question_id(tmp_path):
    """The official MMLU-Pro 5-shot outputs (TIGER-Lab's zip: question_id, generated_text, pred):
    scored by question_id without knowing our split assignment, the extracted letter is the official
    script's `pred`, the verdicts are the official ones, and equal those of the same lines by our ids
    and in lm-eval's --log_samples shape (doc.question_id, resps)."""
    outs = jsonl(DATA / "mmlu_pro" / "llama31_8b_instruct_outputs.jsonl")
    gold = {q["question_id"]: q["answer"] for q in jsonl(DATA / "mmlu_pro" / "test.jsonl")}
    f = dump(tmp_path / "official.jsonl", outs)
    args = ["--task", "mmlu_pro", "--data", DATA, "--reward-option", "extract=official"]
    r = warmup("score", *args, "--in", f, "--out", tmp_path / "o.jsonl")
    assert r.returncode == 0, r.stderr
    out = jsonl(tmp_path / "o.jsonl")
    assert len(out) == len(outs) == 12032
    assert {o["id"].split("/")[1] for o in out} == {"train", "test"}  # both splits, found without the user knowing
    # Where a letter is found it is the official `pred`; the 694 others are guesses (the file's pred
    # is then compute_accuracy.py's guess: not an extracted answer, null here).
    found = [(o["extracted_answer"], o["pred"]) for o in out if o["extracted_answer"] is not None]
    assert len(found) == 12032 - 694 and all(a == b for a, b in found)
    judged = [(o["correct"], o["pred"] == gold[o["question_id"]]) for o in out if o["extracted_answer"] is not None]
    assert all(c == ref for c, ref in judged)  # the official verdicts
    # the same lines by our ids, and as lm-eval logs them
    ours = dump(tmp_path / "ours.jsonl", [{"id": o["id"], "completion": o["generated_text"]} for o in out[:3000]])
    lm = dump(tmp_path / "lm.jsonl", [{"doc_id": i, "doc": {"question_id": o["question_id"]}, "resps": [[o["generated_text"]]],
                                       "filtered_resps": [o["pred"]]} for i, o in enumerate(outs[:3000])])
    for g in (ours, lm):
        r = warmup("score", *args, "--in", g, "--out", g.with_suffix(".out"))
        assert r.returncode == 0, r.stderr
        again = jsonl(g.with_suffix(".out"))
        assert [o["correct"] for o in again] == [o["correct"] for o in out[:3000]]
        assert [o["extracted_answer"] for o in again] == [o["extracted_answer"] for o in out[:3000]]
    # an id of no example is named
    f = dump(tmp_path / "bad.jsonl", [{"question_id": 99999999, "generated_text": "x"}])
    r = warmup("score", *args, "--in", f, "--out", tmp_path / "x.jsonl")
    assert r.returncode == 2 and f"{f}:1: unknown question_id '99999999'" in r.stderr, r.stderr


@needs_data
def test_score_math_by_unique_id_same_as_our_ids(tmp_path):
    rows = jsonl(DATA / "math" / "math500_test.jsonl")[:60]
    comp = [rows[(i + (i % 2)) % 60]["solution"] for i in range(60)]  # even: its own, odd: the next one's
    a = dump(tmp_path / "a.jsonl", [{"id": f"math/test/{i}", "completion": c} for i, c in enumerate(comp)])
    b = dump(tmp_path / "b.jsonl", [{"unique_id": r["unique_id"], "completion": c} for r, c in zip(rows, comp)])
    for f in (a, b):
        r = warmup("score", "--task", "math500", "--data", DATA, "--in", f, "--out", f.with_suffix(".out"))
        assert r.returncode == 0, r.stderr
    oa, ob = jsonl(a.with_suffix(".out")), jsonl(b.with_suffix(".out"))
    assert [(o["correct"], o["extracted_answer"]) for o in oa] == [(o["correct"], o["extracted_answer"]) for o in ob]
    assert [o["id"] for o in ob] == [f"math/test/{i}" for i in range(60)]
    assert all(o["correct"] for o in oa[0::2]) and not all(o["correct"] for o in oa[1::2])


def test_verifier_failures_are_errors_never_wrong_answers(tmp_path, store):
    """A verifier that cannot judge (here: Math-Verify out of a time budget we set absurdly low; a
    HumanEval+ reference the checker cannot use) gives correct null, reward null and the cause;
    past --max-error-rate warmup score exits 1 (output written), under it warns; an evaluate
    stage counts them apart (errors, error_rate, accuracy over the judged) and fails past
    max_error_rate."""
    lines = [{"reference": "4", "completion": "so \\boxed{4}"}, {"reference": "\\frac{1}{2}", "completion": "\\boxed{0.5}"}]
    f = dump(tmp_path / "m.jsonl", lines)
    args = ["score", "--task", "math500", "--reward-option", "timeout_s=1e-9", "--in", f, "--out", tmp_path / "o.jsonl"]
    r = warmup(*args)
    assert r.returncode == 1 and "2 of 2 line(s) could not be judged" in r.stderr and "--max-error-rate" in r.stderr, r.stderr
    out = jsonl(tmp_path / "o.jsonl")
    assert [(o["correct"], o["reward"]) for o in out] == [(None, None)] * 2
    assert all("Math-Verify time budget exceeded" in o["error"] and "timeout_s" in o["error"] for o in out)
    r = warmup(*args, "--max-error-rate", "1")
    assert r.returncode == 0 and "WARNING: 2 of 2" in r.stderr, r.stderr
    r = warmup("score", "--task", "math500", "--in", f, "--out", tmp_path / "o.jsonl")  # the default budget judges them
    assert r.returncode == 0 and [o["correct"] for o in jsonl(tmp_path / "o.jsonl")] == [True, True]
    if (DATA / "humaneval").exists():
        g = dump(tmp_path / "h.jsonl", [{"reference": "not a humaneval_plus reference", "completion": "def f(): pass"}])
        r = warmup("score", "--task", "humaneval_plus", "--python", sys.executable, "--max-error-rate", "1",
                   "--in", g, "--out", tmp_path / "h.out")
        assert r.returncode == 0, r.stderr
        (o,) = jsonl(tmp_path / "h.out")
        assert o["correct"] is None and o["reward"] is None and "bad reference" in o["error"], o
    # evaluate: arithmetic references are judged; math500-style timeouts are not
    exp = """[experiment]
name = "eval-errors"
[tasks.arithmetic]
test_size = 10
[rewards.math_accuracy]
timeout_s = 1e-9
[[stages]]
name = "eval"
algorithm = "evaluate"
tasks = ["arithmetic"]
rewards = { math_accuracy = 1.0 }
eval = { split = "test", num_samples = 2 }
  [stages.evaluate]
  reference_template = "\\\\boxed{{reference}}"
"""
    r = warmup("run", write(tmp_path / "e.toml", exp), "--store", store)
    assert r.returncode != 0 and "20 completion(s) could not be judged" in r.stderr and "max_error_rate" in r.stderr, r.stderr
    r = warmup("run", write(tmp_path / "e1.toml", exp + "  max_error_rate = 1.0\n"), "--store", store)
    assert r.returncode == 0 and "WARNING: arithmetic: 20 of 20" in r.stderr, r.stderr
    (run,), = query(store, "SELECT max(id) FROM runs")
    got = dict(query(store, "SELECT key, value FROM metrics WHERE run_id = ?", run))
    assert got["eval/arithmetic/errors"] == 20 and got["eval/arithmetic/error_rate"] == 1.0 and got["eval/arithmetic/count"] == 20
    assert "eval/arithmetic/accuracy" not in got  # nothing judged: no accuracy, not 0
    assert query(store, "SELECT count(*) FROM samples WHERE run_id = ? AND correct IS NULL", run) == [(20,)]


def test_score_builds_generated_tasks_with_the_runs_seed(tmp_path, store):
    """Puzzles generated at load depend on the experiment seed: `warmup score --run` rebuilds the
    run's puzzles (its stored answers are right again), another seed builds others, and the seed
    used is printed."""
    exp = write(tmp_path / "e.toml", """[experiment]
name = "kk-seed"
seed = 7
[tasks.knights_knaves]
generate_test = 12
people = [3]
[rewards.kk_paper]
[[stages]]
name = "eval"
algorithm = "evaluate"
tasks = ["knights_knaves"]
rewards = { kk_paper = 1.0 }
eval = { split = "test", num_samples = 1 }
  [stages.evaluate]
  reference_template = "<think>\\nr\\n</think>\\n<answer>\\n{reference}\\n</answer>"
""")
    r = warmup("run", exp, "--store", store)
    assert r.returncode == 0, r.stderr
    rows = query(store, "SELECT example_id, completion, correct FROM samples ORDER BY id")
    assert len(rows) == 12 and all(c == 1 for (_, _, c) in rows)
    (run,), = query(store, "SELECT id FROM runs")
    f = dump(tmp_path / "in.jsonl", [{"id": e, "completion": c} for (e, c, _) in rows])
    NODATA = {"WARMUP_DATA": ""}  # the puzzles come from generate_test, not a data directory
    base = ["score", "--task", "knights_knaves", "--reward", "kk_paper", "--task-option", "generate_test=12",
            "--task-option", "people=[3]", "--in", f]
    r = warmup(*base, "--run", str(run), "--store", store, "--out", tmp_path / "run.jsonl", env=NODATA)
    assert r.returncode == 0, r.stderr
    assert f"with seed 7 (run {run})" in r.stderr
    assert all(o["correct"] for o in jsonl(tmp_path / "run.jsonl"))
    r = warmup(*base, "--seed", "7", "--out", tmp_path / "seed.jsonl", env=NODATA)
    assert r.returncode == 0 and "with seed 7 (--seed)" in r.stderr, r.stderr
    assert all(o["correct"] for o in jsonl(tmp_path / "seed.jsonl"))
    r = warmup(*base, "--out", tmp_path / "zero.jsonl", env=NODATA)
    assert r.returncode == 0 and "with seed 0 (default)" in r.stderr, r.stderr
    assert sum(o["correct"] for o in jsonl(tmp_path / "zero.jsonl")) < 6  # other puzzles
    r = warmup(*base, "--run", "999", "--store", store, "--out", tmp_path / "x.jsonl", env=NODATA)
    assert r.returncode == 2 and "--run 999: not found" in r.stderr


# ---- warmup eval --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    (d / "tiny.json").write_text(json.dumps(TINY))
    r = warmup("model", "init", "--config", d / "tiny.json", "--out", d / "tiny", "--seed", "1")
    assert r.returncode == 0, r.stderr
    return d / "tiny"


@needs_data
def test_eval_end_to_end_on_every_paper_task(tiny, tmp_path, store):
    tasks = ["math500", "humaneval_plus", "mmlu_pro:physics", "kk"]
    r = warmup("eval", "--model", tiny, "--tasks", ",".join(tasks), "--samples", "2", "--limit", "2",
               "--max-new-tokens", "8", "--pass-at-k", "1,2", "--data", DATA, "--python", PY, "--store", store,
               "--out-toml", tmp_path / "eval.toml", timeout=600)
    assert r.returncode == 0, r.stderr
    table = r.stdout[r.stdout.index("accuracy (%)"):]
    header, row = table.splitlines()[1:3]
    assert header.split() == ["model"] + tasks
    assert row.startswith("tiny") and row.count("±") == 4
    instances = ["math500", "humaneval_plus", "mmlu_pro_physics", "kk"]
    assert query(store, "SELECT task, count(*) FROM samples GROUP BY task ORDER BY task") == \
        sorted((t, 4) for t in instances)
    assert query(store, "SELECT count(*) FROM samples WHERE correct IS NULL") == [(0,)]
    assert query(store, "SELECT max(completion_tokens) <= 8 FROM samples") == [(1,)]
    keys = {k for (k,) in query(store, "SELECT key FROM metrics")}
    for t in instances:
        for m in ["accuracy_mean", "accuracy_std", "response_tokens_mean", "pass@1", "pass@2", "count"]:
            assert f"eval/{t}/{m}" in keys, (t, m)
    assert "eval/kk/n_people=3/accuracy_mean" in keys
    assert "eval/mmlu_pro_physics/category=physics/accuracy_std" in keys
    assert any(k.startswith("eval/math500/level=") for k in keys) and any(k.startswith("eval/math500/subject=") for k in keys)
    # each task scored by its own reward only
    rewards = {t: {k.split("/")[0] for k in json.loads(r)} for t, r in query(store, "SELECT task, rewards FROM samples")}
    assert rewards["math500"] == {"math_accuracy"} and rewards["kk"] == {"kk_paper"}
    (run_dir,), = query(store, "SELECT run_dir FROM runs")
    assert (tmp_path / "eval.toml").read_text() == open(os.path.join(run_dir, "eval.toml")).read()
    assert os.path.exists(os.path.join(run_dir, "config.toml"))
    # the written experiment re-runs with `warmup run`
    r = warmup("run", tmp_path / "eval.toml", "--store", store, timeout=600)
    assert r.returncode == 0, r.stderr


@needs_data
def test_eval_max_model_len_caps_prompt_plus_completion(tiny, tmp_path, store):
    r = warmup("eval", "--model", tiny, "--tasks", "kk", "--samples", "1", "--limit", "3", "--max-new-tokens", "2",
               "--data", DATA, "--store", store)
    assert r.returncode == 0, r.stderr
    # The tiny tokenizer is byte level: a prompt's tokens are its UTF-8 bytes.
    lens = [len(p.encode()) for (p,) in query(store, "SELECT prompt FROM samples ORDER BY id")]
    assert sorted(lens)[1] < max(lens)
    cap = max(lens) - 1  # the longest prompt does not fit, the others get what is left
    r = warmup("eval", "--model", tiny, "--tasks", "kk", "--samples", "2", "--limit", "3", "--max-model-len", cap,
               "--data", DATA, "--store", store)
    assert r.returncode == 0, r.stderr
    rows = query(store, "SELECT prompt, completion_tokens, finish_reason FROM samples WHERE run_id = 2 ORDER BY id")
    assert len(rows) == 6
    for prompt, tokens, finish in rows:
        room = cap - len(prompt.encode())
        if room <= 0:
            assert (tokens, finish) == (0, "error")
        else:
            assert tokens <= room and (finish == "stop" or tokens == room)
    assert any(f == "length" for _, _, f in rows) and any(f == "error" for _, _, f in rows)


def test_eval_rejects_unknown_tasks_and_missing_data(tiny, tmp_path, store):
    r = warmup("eval", "--model", tiny, "--tasks", "math500,gsm8k", "--data", DATA, "--store", store)
    assert r.returncode == 2 and "unknown task 'gsm8k'" in r.stderr and "mmlu_pro[:CATEGORY]" in r.stderr
    r = warmup("eval", "--model", tiny, "--tasks", "kk", "--data", tmp_path, "--store", store)
    assert r.returncode == 2 and str(tmp_path / "kk") in r.stderr
    assert not store.exists()


@needs_data
def test_eval_dry_run_prints_the_experiment(tiny, store):
    r = warmup("eval", "--model", tiny, "--tasks", "math500,mmlu_pro:history", "--data", DATA, "--store", store, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "num_samples = 4" in r.stdout and "max_model_len = 4096" in r.stdout and "temperature = 0.7\n" in r.stdout
    assert 'categories = [ "history" ]' in r.stdout
    assert not store.exists()
    r = warmup("eval", "--model", tiny, "--tasks", "mmlu_pro:nosuch", "--data", DATA, "--store", store, "--dry-run")
    assert r.returncode == 2 and "unknown category 'nosuch'" in r.stderr


# ---- the statistics on a hand-computed example --------------------------------------------------

def pass_at_k(n, c, k):
    return 1.0 if n - c < k else 1.0 - math.comb(n - c, k) / math.comb(n, k)


def test_accuracy_per_sample_index_mean_std_pass_at_k_and_groups(tmp_path, store):
    # Sample j of every question is template j: right, wrong, right, "0" (right where the answer is 0).
    exp = write(tmp_path / "e.toml", """[experiment]
name = "eval-stats"
[tasks.arithmetic]
test_size = 30
max_operand = 2
operators = "-*"
[rewards.exact_match]
[[stages]]
name = "eval"
algorithm = "evaluate"
tasks = ["arithmetic"]
rewards = { exact_match = 1.0 }
eval = { split = "test", num_samples = 4 }
  [stages.evaluate]
  reference_template = ["{reference}", "wrong", " {reference}\\n", "0"]
  pass_at_k = [1, 2, 3, 4]
  group_by = ["op"]
""")
    r = warmup("run", exp, "--store", store)
    assert r.returncode == 0, r.stderr
    rows = query(store, "SELECT example_id, completion, correct FROM samples ORDER BY id")
    assert len(rows) == 120
    refs = [c for (_, c, _) in rows[0::4]]  # sample 0 is the reference itself
    verdicts = [[1, 0, 1, int(ref == "0")] for ref in refs]
    assert [c for (_, _, c) in rows] == [v for vs in verdicts for v in vs]
    zeros = sum(ref == "0" for ref in refs)
    assert 0 < zeros < 30  # run 3 is neither all right nor all wrong
    runs = [sum(v[j] for v in verdicts) / 30 for j in range(4)]
    expected = {"accuracy_mean": statistics.mean(runs), "accuracy_std": statistics.stdev(runs),
                "accuracy": sum(map(sum, verdicts)) / 120, "count": 120}
    for k in (1, 2, 3, 4):
        expected[f"pass@{k}"] = statistics.mean(pass_at_k(4, sum(v), k) for v in verdicts)
    got = dict(query(store, "SELECT key, value FROM metrics WHERE key NOT LIKE 'eval/arithmetic/op=%'"))
    for k, v in expected.items():
        assert got[f"eval/arithmetic/{k}"] == pytest.approx(v), k
    assert "eval/arithmetic/response_tokens_mean" not in got  # references have no token count
    # per operator: the same statistics over that operator's questions
    for op in "-*":
        ids = {e for (e, p) in query(store, "SELECT example_id, prompt FROM samples WHERE prompt LIKE ?", f"% {op} %")}
        mine = [v for (e, _, _), v in zip(rows[0::4], verdicts) if e in ids]
        runs = [sum(v[j] for v in mine) / len(mine) for j in range(4)]
        g = dict(query(store, "SELECT key, value FROM metrics WHERE key LIKE ?", f"eval/arithmetic/op={op}/%"))
        assert g[f"eval/arithmetic/op={op}/count"] == 4 * len(mine)
        assert g[f"eval/arithmetic/op={op}/accuracy_mean"] == pytest.approx(statistics.mean(runs))
        assert g[f"eval/arithmetic/op={op}/accuracy_std"] == pytest.approx(statistics.stdev(runs))


# ---- warmup score interrupted (issue 15) --------------------------------------------------------

import signal  # noqa: E402
import time  # noqa: E402

from conftest import WARMUP  # noqa: E402


@needs_data
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_score_interrupted_exits_128_plus_signal_and_leaves_no_work_folders(tmp_path, sig):
    # Completions that loop forever (each stopped by the 2 s budget) in unsafe-local sandboxes,
    # whose per-sample folders are made in `work` (outside /tmp, which the sandbox replaces), and
    # TMPDIR our own folder: every work folder the command makes is seen. The signal once sandbox
    # folders exist (scoring has begun).
    tmp, work = tmp_path / "tmp", BUILD / "test-tmp" / f"score-signal-{os.getpid()}-{int(sig)}"
    tmp.mkdir()
    subprocess.run(["rm", "-rf", str(work)])
    work.mkdir(parents=True)
    row = humaneval_rows()[0]
    f = dump(tmp_path / "in.jsonl", [{"task_id": row["task_id"], "completion": "    while True:\n        pass\n"}] * 300)
    env = {k: v for k, v in os.environ.items() if k not in ("WARMUP_PLUGIN_PATH", "WARMUP_STORE")}
    env["TMPDIR"] = str(tmp)
    p = subprocess.Popen([WARMUP, "score", "--task", "humaneval_plus", "--data", str(DATA), "--jobs", "2",
                          "--reward-option", "sandbox=unsafe-local", "--reward-option", f"tmp_dir={work}",
                          "--reward-option", "timeout_s=2", "--in", str(f), "--out", str(tmp_path / "o.jsonl")],
                         cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        err = ""
        for line in p.stderr:  # the task is built after the reward's start-up check: scoring follows
            err += line
            if "building task" in line:
                break
        deadline = time.monotonic() + 60
        while not any(work.iterdir()) and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(work.iterdir()) and p.poll() is None, err
        p.send_signal(sig)
        _, rest = p.communicate(timeout=60)
        err += rest
        left = list(work.iterdir())
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        subprocess.run(["rm", "-rf", str(work)])
    assert p.returncode == 128 + sig, (p.returncode, err)
    assert f"interrupted by {sig.name} after scoring" in err and "nothing written" in err, err
    assert not (tmp_path / "o.jsonl").exists()
    assert left == [] and list(tmp.iterdir()) == []


# ---- evaluate saves as it goes; a stopped evaluation resumes (issue 19 items 1 and 2) -------------

from conftest import spawn, wait_for  # noqa: E402

RESUMABLE = """[experiment]
name = "resumable-eval"
seed = 7
[model]
path = "{model}"
device = "cpu"
[tasks.math]
test = "{data}"
[rewards.math_accuracy]
[[stages]]
name = "eval"
algorithm = "evaluate"
tasks = ["math"]
rewards = {{ math_accuracy = 1.0 }}
eval = {{ split = "test", num_samples = 2 }}
  [stages.evaluate]
  completions = "model"
  max_new_tokens = 48
  save_every = 4
"""


def eval_results(store, run):
    samples = query(store, "SELECT example_id, completion, completion_tokens, reward FROM samples WHERE run_id = ? "
                           "ORDER BY id", run)
    metrics = query(store, "SELECT key, step, value FROM metrics WHERE run_id = ? ORDER BY key", run)
    return samples, metrics


@needs_data
def test_sigint_during_evaluate_keeps_finished_chunks_and_resume_matches_an_uninterrupted_run(tiny, tmp_path, store):
    rows = jsonl(DATA / "math" / "math500_test.jsonl")[:120]
    data = dump(tmp_path / "data" / "math.jsonl", rows)
    exp = write(tmp_path / "eval.toml", RESUMABLE.format(model=tiny, data=data))
    ref_store = tmp_path / "ref.sqlite"
    r = warmup("run", exp, "--store", ref_store, timeout=600)
    assert r.returncode == 0, r.stderr
    ref = eval_results(ref_store, 1)
    assert len(ref[0]) == 240 and ref[1]

    p = spawn("run", exp, "--store", store)
    try:
        assert wait_for(lambda: store.exists() and query(store, "SELECT count(*) FROM samples")[0][0] >= 8, timeout=300)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, err
    assert query(store, "SELECT status FROM runs WHERE id = 1") == [("interrupted",)]
    (kept,), = query(store, "SELECT count(*) FROM samples WHERE run_id = 1")
    assert 8 <= kept < 240 and kept % 8 == 0, kept  # whole chunks of 4 examples x 2 samples
    assert eval_results(store, 1)[0] == ref[0][:kept]  # what was saved is what the full run computed

    r = warmup("run", "--resume", "1", "--store", store, "--dry-run")  # looks, claims nothing
    assert r.returncode == 0 and 'completions = "model"' in r.stdout, r.stderr
    assert query(store, "SELECT status, resumes FROM runs WHERE id = 1") == [("interrupted", 0)]

    # The data moves while the run is stopped: the resume fails before evaluating anything...
    moved = tmp_path / "moved.jsonl"
    data.rename(moved)
    r = warmup("run", "--resume", "1", "--store", store)
    assert r.returncode == 2 and str(data) in r.stderr and "found before the run started" in r.stderr, r.stderr
    assert query(store, "SELECT status FROM runs WHERE id = 1") == [("failed",)]
    # ...--set may fix the path, but not change what the run computes...
    r = warmup("run", "--resume", "1", "--store", store, "--set", "stages.eval.evaluate.temperature=0.1")
    assert r.returncode == 2 and "--set stages.eval.evaluate.temperature" in r.stderr, r.stderr
    r = warmup("run", "--resume", "1", "--store", store, "--set", 'tasks.math.prompt="none"')  # a string, not a path
    assert r.returncode == 2 and "--set tasks.math.prompt" in r.stderr, r.stderr
    r = warmup("run", "--resume", "1", "--store", store, "--set", f'tasks.math.test="{tmp_path / "nowhere.jsonl"}"')
    assert r.returncode == 2 and "does not exist either" in r.stderr, r.stderr
    # ...and the fixed run completes the rest: the same samples and metrics as the uninterrupted run.
    r = warmup("run", "--resume", "1", "--store", store, "--set", f'tasks.math.test="{moved}"', timeout=600)
    assert r.returncode == 0, r.stderr
    assert f"{kept // 2} done by the stopped attempt" in r.stderr, r.stderr
    assert eval_results(store, 1) == ref
    (config, overrides), = query(store, "SELECT config, overrides FROM runs WHERE id = 1")
    assert f'test = "{moved}"' in config and json.loads(overrides) == [f'tasks.math.test="{moved}"']
    (run_dir,), = query(store, "SELECT run_dir FROM runs WHERE id = 1")
    assert f'test = "{moved}"' in open(os.path.join(run_dir, "config.toml")).read()
    assert query(store, "SELECT value FROM params WHERE run_id = 1 AND key = 'tasks.math.test'") == [(str(moved),)]


def run_on_a_terminal(args, env):
    """Runs warmup with stdin/stdout/stderr on a pseudo-terminal; returns (exit code, all output)."""
    import pty
    master, slave = pty.openpty()
    p = subprocess.Popen([WARMUP, *map(str, args)], cwd=REPO, env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return p.wait(timeout=300), out.decode("utf-8", "replace")


@needs_data
def test_progress_bar_only_on_a_terminal_and_not_in_ci(tiny, tmp_path, store):
    data = dump(tmp_path / "math.jsonl", jsonl(DATA / "math" / "math500_test.jsonl")[:12])
    exp = write(tmp_path / "eval.toml", RESUMABLE.format(model=tiny, data=data).replace("save_every = 4", "save_every = 2"))
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "WARMUP_PLUGIN_PATH", "WARMUP_STORE")}
    env["TERM"] = "xterm"
    code, out = run_on_a_terminal(["run", exp, "--store", store], env)
    assert code == 0, out
    assert "\u2588" in out and "[eval] math |" in out, out  # the bar, with its stage and label
    assert "\r\x1b[K" in out  # cleared in place, so the log lines stay whole
    assert "math: 12/12 examples" in out
    code, out = run_on_a_terminal(["run", exp, "--store", tmp_path / "ci.sqlite"], {**env, "CI": "true"})
    assert code == 0 and "\u2588" not in out and "\x1b[K" not in out, out
    r = warmup("run", exp, "--store", tmp_path / "pipe.sqlite")  # stderr is a pipe
    assert r.returncode == 0 and "\u2588" not in r.stderr and "\x1b[K" not in r.stderr
