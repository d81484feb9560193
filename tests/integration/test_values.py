"""Absurd values are refused up front: every bad option value, name or count below makes
`warmup run` exit 2 within 5 s with one error line naming the file, the line and the bound, before
a run row or a run directory exists (nothing written anywhere, no run left 'running'). Data files
with a wrong JSON type name the file, line and field; a training step whose loss turns NaN stops
the stage with the step named, after saving the last good step's checkpoint."""
import json
import math
import os
import re
import struct
import subprocess

import pytest

from conftest import REPO, WARMUP, query, warmup, write

KK_DATA = REPO / "plugins/knights_knaves/tests/data"
BIG = 2 ** 62  # 4611686018427387904: overflows any product of sizes


def experiment(body):
    """A complete experiment around `body` (TOML for plugin tables and one stage)."""
    return '[experiment]\nname = "values"\n' + body


SFT = """[tasks.knights_knaves]
data_dir = "{data}"
people = [3]
[[stages]]
name = "train"
algorithm = "sft"
tasks = ["knights_knaves"]
teachers = ["kk_solver"]
  [stages.sft]
  {key}
"""

GRPO = """[tasks.arithmetic]
test_size = 3
[[stages]]
name = "rl"
algorithm = "grpo"
tasks = ["arithmetic"]
rewards = {{ exact_match = 1.0 }}
  [stages.grpo]
  max_steps = 1
  {key}
"""

EVAL = """[tasks.arithmetic]
test_size = 3
[[stages]]
name = "eval"
algorithm = "evaluate"
tasks = ["arithmetic"]
rewards = {{ exact_match = 1.0 }}
  [stages.evaluate]
  {key}
"""

KK = """[tasks.knights_knaves]
{key}
[[stages]]
name = "eval"
algorithm = "evaluate"
tasks = ["knights_knaves"]
rewards = ["kk_paper"]
"""

REWARD = """[tasks.arithmetic]
test_size = 3
[rewards.kk_paper]
{key}
[[stages]]
name = "eval"
algorithm = "evaluate"
tasks = ["arithmetic"]
rewards = ["kk_paper"]
"""

ARITH = """[tasks.arithmetic]
{key}
[[stages]]
name = "eval"
algorithm = "evaluate"
tasks = ["arithmetic"]
rewards = {{ exact_match = 1.0 }}
"""

# (template, the bad line, what the error must say after "exp.toml:<line>:<col>: ")
CASES = [
    # counts that size allocations: the bound is what this machine's memory holds, and it is named
    (KK, "generate_train = 1000000000000", r"generate_train must be >= 0 and <= \d+ \(puzzles of ~4 KiB in this machine's [\d.]+ GiB of memory\), got 1000000000000"),
    (KK, "generate_test = 1000000000000", r"generate_test must be >= 0 and <= \d+ \(puzzles of ~4 KiB"),
    (KK, "generate_train = 1e12", r"generate_train: expected integer, found float"),
    (KK, "generate_train = 10\npeople = [3, 40]", r"people must be >= 2 and <= 20 \(the solver enumerates all 2\^n cases\), got 40"),
    (ARITH, "test_size = 1000000000000", r"test_size must be >= 0 and <= \d+ \(examples of ~1 KiB in this machine's"),
    (ARITH, "train_size = -1", r"train_size must be >= 0 and <= \d+ .*got -1"),
    # training: epochs, learning rate, batch sizes, lengths, optimizer numbers
    (SFT, "num_train_epochs = 1e300", r"num_train_epochs must be > 0 and <= 1000000, got 1e\+300"),
    (SFT, "num_train_epochs = 0", r"num_train_epochs must be > 0 and <= 1000000, got 0"),
    (SFT, "learning_rate = inf", r"learning_rate must be a finite number > 0 and <= 1, got inf"),
    (SFT, "learning_rate = nan", r"learning_rate must be a finite number > 0 and <= 1, got nan"),
    (SFT, "learning_rate = -1e-5", r"learning_rate must be > 0 and <= 1, got -1e-05"),
    (SFT, f"per_device_train_batch_size = {BIG}", rf"per_device_train_batch_size must be >= 1 and <= \d+ \(rows of max_length 32768 tokens in this machine's [\d.]+ GiB of memory\), got {BIG}"),
    (SFT, f"gradient_accumulation_steps = {BIG}", rf"gradient_accumulation_steps must be >= 1 and <= 1048576, got {BIG}"),
    (SFT, f"max_length = {BIG}", rf"max_length must be >= 2 and <= \d+ \(tokens of 16 bytes in this machine's"),
    (SFT, f"max_steps = {BIG}", r"max_steps must be >= -1 and <= 1000000000"),
    (SFT, "adam_epsilon = 0.0", r"adam_epsilon must be > 0 and <= 1, got 0"),
    (SFT, "adam_beta2 = 1.0", r"adam_beta2 must be >= 0 and < 1, got 1"),
    (SFT, "max_grad_norm = -inf", r"max_grad_norm must be a finite number > 0, got -inf"),
    (SFT, "weight_decay = nan", r"weight_decay must be a finite number >= 0, got nan"),
    (GRPO, f"num_generations = {BIG}", rf"num_generations must be >= 2 and <= 1024 \(completions per prompt the engine samples\), got {BIG}"),
    (GRPO, f"prompts_per_step = {BIG}", r"prompts_per_step must be >= 1 and <= \d+ \(sequences of max_prompt_length \+ max_completion_length = 1280 tokens in this machine's"),
    (GRPO, f"max_completion_length = {BIG}", r"max_completion_length must be >= 1 and <= \d+ \(tokens of 16 bytes"),
    (GRPO, f"per_device_train_batch_size = {BIG}", r"per_device_train_batch_size must be >= 1 and <= \d+ \(sequences of"),
    (GRPO, "temperature = 0.0", r"temperature must be > 0, got 0"),
    (GRPO, "top_p = inf", r"top_p must be a finite number > 0 and <= 1, got inf"),
    (GRPO, "beta = nan", r"beta must be a finite number >= 0, got nan"),
    (GRPO, "learning_rate = inf", r"learning_rate must be a finite number > 0 and <= 1, got inf"),
    (GRPO, "num_train_epochs = 1e300", r"num_train_epochs must be > 0 and <= 1000000, got 1e\+300"),
    (EVAL, "temperature = -1.0", r"temperature must be >= 0, got -1"),
    (EVAL, f"max_new_tokens = {BIG}", r"max_new_tokens must be >= 0 and <= \d+ \(tokens of 16 bytes"),
    (EVAL, "pass_at_k = [1, 0]", r"pass_at_k must be >= 1 and <= 1024 .*got 0"),
    # the host's own values
    (EVAL.replace('rewards = {{ exact_match = 1.0 }}', 'rewards = {{ exact_match = inf }}'), "",
     r"stage 'eval'.rewards.exact_match: must be a finite number, got inf"),
    (EVAL.replace('rewards = {{ exact_match = 1.0 }}', 'rewards = {{ exact_match = 1.0 }}\neval = {{ num_samples = 4611686018427387904 }}'), "",
     r"stage 'eval'.eval.num_samples must be >= 1 and <= 1024 .*got 4611686018427387904"),
    # a reward's own value
    (REWARD, "correct = nan", r"\[rewards.kk_paper\] correct: must be a finite number, got nan"),
]


def shown(path):
    """A regex for how warmup prints `path`: as given, or relative to its working directory
    (REPO) when that is shorter (/tmp/x from a checkout in /tmp is ../x)."""
    return "(?:" + re.escape(str(path)) + "|" + re.escape(os.path.relpath(path, REPO)) + ")"


def error_line(r):
    lines = [l for l in r.stderr.splitlines() if l.startswith("error: ")]
    assert len(lines) == 1, r.stderr
    return lines[0]


def run_fast(*args):
    """warmup, which must answer within 5 s (a hang or a long generation is a failure)."""
    return warmup(*args, timeout=5)


def line_of(text, needle):
    for i, l in enumerate(text.splitlines(), 1):
        if needle and needle.splitlines()[-1] in l:
            return i
    return None


def nothing_written(tmp_path, store, files):
    """No store, no run directory, nothing besides the files the test wrote."""
    assert not store.exists() and not store.parent.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(files)


@pytest.mark.parametrize("template,bad,expect", CASES, ids=[f"{i}:{c[1] or c[2][:30]}" for i, c in enumerate(CASES)])
def test_bad_value_is_refused_up_front(tmp_path, store, template, bad, expect):
    text = experiment(template.format(data=KK_DATA, key=bad))
    exp = write(tmp_path / "exp.toml", text)
    r = run_fast("run", exp, "--store", store)
    assert r.returncode == 2, r.stderr
    line = error_line(r)
    where = str(line_of(text, bad)) if bad else r"\d+"
    prefix = "error: " + shown(exp) + ":" + where + r":\d+: "
    assert re.match(prefix, line), line
    assert re.search(expect, line), line
    nothing_written(tmp_path, store, ["exp.toml"])


def test_bad_value_given_with_set_is_refused_the_same(tmp_path, store):
    exp = write(tmp_path / "exp.toml", experiment(SFT.format(data=KK_DATA, key="learning_rate = 1e-3")))
    r = run_fast("run", exp, "--store", store, "--set", "stages.train.sft.learning_rate=inf")
    assert r.returncode == 2, r.stderr
    assert "--set stages.train.sft.learning_rate=inf: [stages.train.sft] learning_rate must be a finite number > 0 and <= 1, got inf" in error_line(r)
    r = run_fast("run", exp, "--store", store, "--set", "stages.train.sft.learning_rate=2.5")
    assert r.returncode == 2 and "learning_rate must be > 0 and <= 1, got 2.5" in error_line(r)
    nothing_written(tmp_path, store, ["exp.toml"])


@pytest.mark.parametrize("where,name", [("stage", "../../../escape-stage"), ("stage", "a/b"), ("stage", ".."),
                                        ("task", "../escape-task"), ("teacher", "../../escape-teacher"),
                                        ("reward", "../escape-reward")])
def test_names_that_would_leave_the_run_directory(tmp_path, store, where, name):
    stage = name if where == "stage" else "train"
    task = name if where == "task" else "kk"
    teacher = name if where == "teacher" else "solver"
    reward = name if where == "reward" else "kk_paper"
    text = experiment(f"""[tasks."{task}"]
plugin = "knights_knaves"
data_dir = "{KK_DATA}"
people = [3]
[teachers."{teacher}"]
plugin = "kk_solver"
[rewards."{reward}"]
plugin = "kk_paper"
[[stages]]
name = "{stage}"
algorithm = "sft"
tasks = ["{task}"]
teachers = ["{teacher}"]
rewards = ["{reward}"]
  [stages.sft]
  max_steps = 1
""")
    exp = write(tmp_path / "sub" / "dir" / "exp.toml", text)
    r = run_fast("run", exp, "--store", store)
    assert r.returncode == 2, r.stderr
    line = error_line(r)
    assert re.match(rf"error: {shown(exp)}:\d+:\d+: .*'{re.escape(name)}' is not a valid name: use 1 to 128 of A-Z a-z 0-9 _ \. -", line), line
    nothing_written(tmp_path, store, ["sub", "dir", "exp.toml"])
    assert not any("escape" in p.name for p in tmp_path.parent.iterdir())


def test_distill_output_must_be_a_file_name(tmp_path, store):
    text = experiment(f"""[tasks.knights_knaves]
data_dir = "{KK_DATA}"
people = [3]
[[stages]]
name = "distill"
algorithm = "distill"
tasks = ["knights_knaves"]
teachers = ["kk_solver"]
  [stages.distill]
  output = "../../../escaped.jsonl"
""")
    exp = write(tmp_path / "exp.toml", text)
    r = run_fast("run", exp, "--store", store)
    assert r.returncode == 2, r.stderr
    assert re.search(r"exp\.toml:12:\d+: \[stages\.distill\.distill\] output must be a file name of .*got '\.\./\.\./\.\./escaped\.jsonl'",
                     error_line(r)), r.stderr
    nothing_written(tmp_path, store, ["exp.toml"])


# ---- data files and training, on a tiny model

TINY = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 260, "hidden_size": 32,
        "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
        "max_position_embeddings": 256, "tie_word_embeddings": False, "torch_dtype": "float32"}


def tiny_model(tmp_path):
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    r = warmup("model", "init", "--config", tmp_path / "tiny.json", "--out", tmp_path / "tiny", "--seed", "1")
    assert r.returncode == 0, r.stderr
    return tmp_path / "tiny"


def sft_experiment(tmp_path, model, data, steps):
    return write(tmp_path / "exp.toml", f"""[experiment]
name = "sft-values"
seed = 11
[model]
path = "{model}"
[[stages]]
name = "train"
algorithm = "sft"
  [stages.sft]
  data = "{data}"
  learning_rate = 1e-3
  warmup_steps = 0
  max_steps = {steps}
  per_device_train_batch_size = 1
  gradient_accumulation_steps = 1
""")


def test_a_wrong_json_type_in_sft_data_names_file_line_and_field(tmp_path, store):
    model = tiny_model(tmp_path)
    data = write(tmp_path / "data.jsonl", '{"prompt": "a", "completion": "b"}\n\n{"prompt": 5, "completion": "b"}\n')
    exp = sft_experiment(tmp_path, model, data, 2)
    r = warmup("run", exp, "--store", store, timeout=60)
    assert r.returncode == 2, r.stderr
    assert f"{data}:3: field 'prompt': expected string, found number" in error_line(r)
    assert "json.exception" not in r.stderr
    assert query(store, "SELECT status FROM runs") == [("failed",)]
    data.write_text('{"prompt": "a", "completion": ["b"]}\n')
    r = warmup("run", exp, "--store", store, timeout=60)
    # a bad first record is found before the run starts (the first record is what --dry-run reads)
    assert r.returncode == 2 and f"{data}:1: field 'completion': expected string, found array" in r.stderr, r.stderr
    data.write_text('{"prompt": "a"}\n')
    r = warmup("run", exp, "--store", store, timeout=60)
    assert r.returncode == 2 and f"{data}:1: missing field 'completion' (string)" in r.stderr, r.stderr
    assert query(store, "SELECT count(*) FROM runs WHERE status = 'running'") == [(0,)]


def test_a_wrong_json_type_in_task_data_names_file_line_and_field(tmp_path, store):
    rows = (KK_DATA / "3ppl_test.jsonl").read_text().splitlines()
    bad = json.loads(rows[1])
    bad["quiz"] = 42
    rows[1] = json.dumps(bad)
    (tmp_path / "kk").mkdir()
    (tmp_path / "kk" / "3ppl_test.jsonl").write_text("\n".join(rows) + "\n")
    exp = write(tmp_path / "exp.toml", experiment(KK.format(key=f'data_dir = "{tmp_path / "kk"}"\npeople = [3]')))
    r = run_fast("run", exp, "--store", store)
    assert r.returncode == 2, r.stderr
    assert f"3ppl_test.jsonl:2: field 'quiz': expected string, found number" in r.stderr  # found before the run
    assert "found before the run started" in error_line(r)
    assert not store.exists()  # no run was made


def poison_embedding(model_dir, token):
    """Sets the input embedding of `token` to +inf in model.safetensors (float32), in place."""
    path = model_dir / "model.safetensors"
    raw = bytearray(path.read_bytes())
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    t = header["model.embed_tokens.weight"]
    assert t["dtype"] == "F32"
    hidden = t["shape"][1]
    start = 8 + n + t["data_offsets"][0] + token * hidden * 4
    raw[start:start + hidden * 4] = struct.pack(f"<{hidden}f", *([math.inf] * hidden))
    path.write_bytes(bytes(raw))


def test_a_nonfinite_loss_stops_sft_after_saving_the_last_good_step(tmp_path, store):
    model = tiny_model(tmp_path)
    tok = subprocess.run([WARMUP, "tokenize", "--tokenizer", model], input="~", text=True, capture_output=True)
    assert tok.returncode == 0, tok.stderr
    (poison,) = json.loads(tok.stdout)
    poison_embedding(model, poison)
    # Eight examples, one of which holds the poisoned token: the step that draws it has a NaN loss.
    lines = [{"prompt": f"q{i}", "completion": f"answer {i}"} for i in range(8)]
    lines[5]["prompt"] = "q~5"
    data = write(tmp_path / "data.jsonl", "".join(json.dumps(l) + "\n" for l in lines))
    exp = sft_experiment(tmp_path, model, data, 8)
    r = warmup("run", exp, "--store", store, timeout=120)
    assert r.returncode == 1, r.stderr
    line = error_line(r)
    m = re.search(r"step (\d+): the loss is (nan|inf|-inf) and the gradient norm (nan|inf) \(not finite\): training "
                  r"stopped before the optimizer step; the weights and optimizer after step (\d+) are saved in (\S+)", line)
    assert m, line
    bad, good, saved = int(m.group(1)), int(m.group(4)), m.group(5)
    assert good == bad - 1 and 1 <= bad <= 8
    (run_dir,), = query(store, "SELECT run_dir FROM runs")
    ckpt = f"{run_dir}/checkpoints/train"
    assert saved == f"{ckpt}/step-{good}"
    assert (REPO / ckpt / "latest").read_text().strip() == f"step-{good}"
    assert (REPO / saved / "model" / "model.safetensors").exists() and (REPO / saved / "optimizer.pt").exists()
    # The good steps were recorded (finite), the bad one not; run and stage are failed, none running.
    losses = [v for (v,) in query(store, "SELECT value FROM metrics WHERE key = 'train/loss' ORDER BY step")]
    assert len(losses) == good and all(math.isfinite(v) for v in losses)
    assert query(store, "SELECT status FROM runs") == [("failed",)]
    (status, error), = query(store, "SELECT status, error FROM stages")
    assert status == "failed" and f"step {bad}:" in error


def test_epochs_times_steps_beyond_the_bound_is_refused_before_training(tmp_path, store):
    model = tiny_model(tmp_path)
    data = write(tmp_path / "data.jsonl", "".join(json.dumps({"prompt": f"q{i}", "completion": "a"}) + "\n"
                                                  for i in range(2000)))
    exp = sft_experiment(tmp_path, model, data, -1)
    r = warmup("run", exp, "--store", store, "--set", "stages.train.sft.num_train_epochs=1000000", timeout=60)
    assert r.returncode == 2, r.stderr
    assert ("sft: num_train_epochs 1000000 x 2000 steps per epoch is 2000000000 steps, more than the 1000000000 a "
            "stage may take") in error_line(r)
    assert query(store, "SELECT status FROM runs") == [("failed",)]
    assert query(store, "SELECT count(*) FROM metrics WHERE key = 'train/loss'") == [(0,)]
