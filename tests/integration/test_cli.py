"""`warmup run` on the smoke experiment and the `runs`, `plugins`, `version` commands, checked
against what is really in the SQLite file."""
import csv
import hashlib
import io
import json

from conftest import REPO, query, warmup, write


def run_smoke(store, *extra):
    r = warmup("run", "experiments/smoke.toml", "--store", store, *extra)
    assert r.returncode == 0, r.stderr
    return r


def test_every_subcommand_has_help():
    r = warmup("--help")
    assert r.returncode == 0 and "usage: warmup <command>" in r.stdout
    for cmd in ["run", "plugins", "runs", "version"]:
        r = warmup(cmd, "--help")
        assert r.returncode == 0, (cmd, r.stderr)
        assert r.stdout.startswith(f"usage: warmup {cmd}"), r.stdout
    r = warmup("frobnicate")
    assert r.returncode == 2 and "unknown command 'frobnicate'" in r.stderr


def test_version_reports_the_build():
    r = warmup("version", "--json")
    assert r.returncode == 0
    v = json.loads(r.stdout)
    assert v["torch_version"].startswith("2.11.")
    assert v["plugin_abi"] == "1.10"  # 1.10: Distributed::all_reduce_async, GradientReducer (warmup/distributed.h)
    assert "cxx11abi=1" in v["fingerprint"]
    assert v["cuda_available"] is False  # no GPU in CI
    assert len(v["git_commit"]) >= 7
    text = warmup("version").stdout
    assert "fingerprint:" in text and "C++ ABI:" in text and "torch:" in text


def test_smoke_run_records_params_metrics_samples_and_provenance(store):
    out = run_smoke(store).stdout
    assert "eval/arithmetic/accuracy" in out
    (run_id, status, config, config_hash, run_dir, seed), = query(
        store, "SELECT id, status, config, config_hash, run_dir, seed FROM runs")
    assert status == "finished" and seed == 1234
    assert hashlib.sha256(config.encode()).hexdigest() == config_hash
    # The stored config is the fully resolved one: plugin defaults filled in.
    assert 'train_size = 200' in config and 'case_sensitive = false' in config
    assert (REPO / "experiments/smoke.toml").exists()
    params = dict(query(store, "SELECT key, value FROM params WHERE run_id = ?", run_id))
    assert params["tasks.arithmetic.test_size"] == 40
    assert params["rewards.exact_match.extract"] == "last_number"
    assert params["stages.score-gold.evaluate.completions"] == "reference"
    metrics = dict(query(store, "SELECT key, value FROM metrics WHERE run_id = ?", run_id))
    assert metrics["eval/arithmetic/accuracy"] == 1.0
    assert metrics["eval/arithmetic/count"] == 40
    samples = query(store, "SELECT example_id, prompt, completion, reward, rewards, correct FROM samples")
    assert len(samples) == 40
    for example_id, prompt, completion, reward, rewards, correct in samples:
        assert example_id.startswith("arithmetic/test/")
        a, op, b = prompt.split("?")[0].split()[-3:]
        assert int(completion) == eval(f"{a}{op}{b}")  # the gold answer really is right
        assert reward == 1.0 and correct == 1 and json.loads(rewards)["exact_match"] == 1.0
    (task, split, count, digest), = query(store, "SELECT task, split, count, digest FROM datasets")
    assert (task, split, count, len(digest)) == ("arithmetic", "test", 40, 64)
    plugins = query(store, "SELECT name, library_path, library_sha256 FROM run_plugins")
    assert sorted(p[0] for p in plugins) == ["arithmetic", "evaluate", "exact_match"]
    for _, path, sha in plugins:
        assert hashlib.sha256(open(path, "rb").read()).hexdigest() == sha
    (stage_status,), = query(store, "SELECT status FROM stages")
    assert stage_status == "finished"
    assert (REPO / run_dir / "config.toml").read_text() == config


def test_dry_run_prints_resolved_config_and_writes_nothing(store):
    r = warmup("run", "experiments/smoke.toml", "--store", store, "--dry-run",
               "--set", "tasks.arithmetic.test_size=7")
    assert r.returncode == 0, r.stderr
    assert "test_size = 7" in r.stdout and "prompt_template" in r.stdout
    assert not store.exists()


def test_set_overrides_reach_the_plugins(store):
    run_smoke(store, "--set", "tasks.arithmetic.test_size=7", "--set", "stages.score-gold.eval.limit=5")
    assert query(store, "SELECT count(*) FROM samples") == [(5,)]
    params = dict(query(store, "SELECT key, value FROM params"))
    assert params["tasks.arithmetic.test_size"] == 7
    (overrides,), = query(store, "SELECT overrides FROM runs")
    assert json.loads(overrides) == ["tasks.arithmetic.test_size=7", "stages.score-gold.eval.limit=5"]


def test_base_merge_arm_runs(store):
    r = warmup("run", "experiments/smoke_train_split.toml", "--store", store)
    assert r.returncode == 0, r.stderr
    assert query(store, "SELECT e.name, d.split, d.count FROM datasets d JOIN runs r ON r.id = d.run_id "
                        "JOIN experiments e ON e.id = r.experiment_id") == [("smoke-train-split", "train", 100)]


def test_stored_config_reruns_to_the_same_data(store, tmp_path):
    run_smoke(store)
    (run_dir,), = query(store, "SELECT run_dir FROM runs")
    r = warmup("run", f"{run_dir}/config.toml", "--store", store)
    assert r.returncode == 0, r.stderr
    digests = query(store, "SELECT digest FROM datasets ORDER BY run_id")
    assert len(digests) == 2 and digests[0] == digests[1]
    hashes = query(store, "SELECT config_hash FROM runs ORDER BY id")
    assert hashes[0] == hashes[1]


def test_runs_list_show_compare_export(store, tmp_path):
    run_smoke(store)
    run_smoke(store, "--set", "tasks.arithmetic.test_size=10")
    r = warmup("runs", "--store", store)
    assert r.returncode == 0 and r.stdout.count("finished") == 2
    r = warmup("runs", "show", "1", "--store", store)
    assert r.returncode == 0
    for needle in ["run 1", "score-gold", "eval/arithmetic/accuracy", "tasks.arithmetic.test_size = 40", "digest"]:
        assert needle in r.stdout, needle
    r = warmup("runs", "compare", "1", "2", "--store", store)
    assert r.returncode == 0
    line = next(l for l in r.stdout.splitlines() if l.startswith("tasks.arithmetic.test_size"))
    assert line.split()[1:] == ["40", "10"]
    assert "experiment.name" not in r.stdout  # equal params hidden by default
    r = warmup("runs", "export", "latest", "--format", "csv", "--what", "metrics", "--store", store)
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    acc = [x for x in rows if x["key"] == "eval/arithmetic/accuracy"]
    assert len(acc) == 1 and float(acc[0]["value"]) == 1.0 and acc[0]["stage"] == "score-gold"
    out = tmp_path / "run.json"
    r = warmup("runs", "export", "2", "--format", "json", "--out", out, "--store", store)
    assert r.returncode == 0
    j = json.loads(out.read_text())
    assert j["id"] == 2 and len(j["samples"]) == 10 and j["params"]["tasks.arithmetic.test_size"] == 10
    r = warmup("runs", "export", "2", "--format", "csv", "--what", "samples", "--store", store)
    assert len(list(csv.DictReader(io.StringIO(r.stdout)))) == 10
    r = warmup("runs", "show", "99", "--store", store)
    assert r.returncode == 2 and "run 99 not found" in r.stderr


def test_plugins_lists_entries_and_failures():
    from conftest import TEST_PLUGINS
    r = warmup("plugins", "--plugin-dir", TEST_PLUGINS / "wrong_abi", "--plugin-dir", TEST_PLUGINS / "good", "--json")
    assert r.returncode == 0
    j = json.loads(r.stdout)
    names = {(p["kind"], p["name"]) for p in j["plugins"]}
    assert {("task", "arithmetic"), ("reward", "exact_match"), ("algorithm", "evaluate"),
            ("task", "good_task")} <= names
    assert any("built for plugin ABI 2" in f["reason"] for f in j["failures"])
    good = next(p for p in j["plugins"] if p["name"] == "good_task")
    assert good["version"] == "1.2.3" and good["interface"] == "warmup.task@1"
    text = warmup("plugins", "--plugin-dir", TEST_PLUGINS / "wrong_abi").stdout
    assert "load failures (1)" in text and "arithmetic" in text


def test_example_queries_run_on_a_real_store(store):
    import sqlite3
    run_smoke(store)
    run_smoke(store, "--set", "rewards.exact_match.extract=full")
    con = sqlite3.connect(store)
    acc = con.execute((REPO / "results/queries/accuracy_by_stage.sql").read_text()).fetchall()
    assert [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in acc] == [
        (2, "smoke", "score-gold", "arithmetic", 1.0, 1.0), (1, "smoke", "score-gold", "arithmetic", 1.0, 1.0)]
    curve = con.execute((REPO / "results/queries/metric_curve.sql").read_text(),
                        {"run": 1, "key": "eval/arithmetic/count"}).fetchall()
    assert [(c[0], c[1], c[2], c[3]) for c in curve] == [("score-gold", "eval/arithmetic/count", 0, 40.0)]
    latest = con.execute((REPO / "results/queries/metric_curve.sql").read_text(), {"run": None, "key": None}).fetchall()
    # the smoke stage's metrics (accuracy_mean/_std added with the eval harness, errors/error_rate
    # with issue 14's harness-error accounting)
    assert len(latest) == 9
    assert {r[1] for r in latest} >= {"eval/arithmetic/errors", "eval/arithmetic/error_rate"}
    samples = con.execute((REPO / "results/queries/samples_of_run.sql").read_text(), {"run": None}).fetchall()
    assert len(samples) == 40


def test_evaluate_with_a_teacher_plugin(tmp_path, store):
    from conftest import TEST_PLUGINS
    exp = write(tmp_path / "teach.toml", """[experiment]
name = "teacher"
[tasks.arithmetic]
test_size = 6
[teachers.good_teacher]
wrong_text = "not 12345"
[[stages]]
name = "eval"
algorithm = "evaluate"
tasks = ["arithmetic"]
teachers = ["good_teacher"]
rewards = { exact_match = 1.0 }
eval = { num_samples = 3 }
[stages.evaluate]
completions = "teacher"
""")
    r = warmup("run", exp, "--store", store, "--plugin-dir", TEST_PLUGINS / "good",
               "--set", "rewards.exact_match.extract=full")
    assert r.returncode == 0, r.stderr
    metrics = dict(query(store, "SELECT key, value FROM metrics"))
    assert metrics["eval/arithmetic/count"] == 18
    assert abs(metrics["eval/arithmetic/accuracy"] - 1 / 3) < 1e-12
    rows = query(store, "SELECT completion, finish_reason, completion_tokens, correct FROM samples")
    assert sum(1 for r in rows if r[0] == "not 12345" and r[1] == "length" and r[3] == 0) == 12
    assert all(r[2] == 3 for r in rows)
    (teacher_lib,), = query(store, "SELECT library_path FROM run_plugins WHERE kind = 'teacher'")
    assert teacher_lib.endswith("libwarmup_task_test_good.so")


def test_kk_gold_experiment_per_size_metrics(store):
    r = warmup("run", "experiments/kk_gold.toml", "--store", store)
    assert r.returncode == 0, r.stderr
    m = dict(query(store, "SELECT key, value FROM metrics WHERE stage = 'score-gold'"))
    for n in (3, 5, 7):
        assert m[f"eval/knights_knaves/n_people={n}/accuracy"] == 1.0
        assert m[f"eval/knights_knaves/n_people={n}/count"] == 20
    assert m["eval/knights_knaves/kk_paper_mean"] == 2.0 and m["eval/knights_knaves/kk_logic_rl_mean"] == 3.0
    solver = dict(query(store, "SELECT key, value FROM metrics WHERE stage = 'score-solver-traces'"))
    assert solver["eval/knights_knaves/accuracy"] == 1.0 and solver["eval/knights_knaves/kk_paper_mean"] == 2.0
    (trace,), = query(store, "SELECT completion FROM samples WHERE stage = 'score-solver-traces' AND example_id = 'kk/5ppl/test/1'")
    assert trace.startswith("Let's think step by step") and "This leads to a feasible solution.\n</think>\n<answer>\n(1)" in trace
    (prompt,), = query(store, "SELECT prompt FROM samples WHERE stage = 'score-gold' AND example_id = 'kk/3ppl/test/0'")
    assert prompt.startswith("\n    A conversation between User and Assistant.") and prompt.endswith("Assistant: <think>\n    ")


def test_kk_generate_feeds_the_task(tmp_path, store):
    r = warmup("kk", "generate", "--people", "3-4", "--count", "15", "--seed", "9", "--out-dir", tmp_path / "kk",
               "--split", "test")
    assert r.returncode == 0, r.stderr
    again = warmup("kk", "generate", "--people", "3-4", "--count", "15", "--seed", "9", "--out-dir", tmp_path / "kk2",
                   "--split", "test")
    assert (tmp_path / "kk/3ppl_test.jsonl").read_bytes() == (tmp_path / "kk2/3ppl_test.jsonl").read_bytes()
    rows = [json.loads(l) for l in (tmp_path / "kk/4ppl_test.jsonl").read_text().splitlines()]
    assert len(rows) == 15 and set(rows[0]) >= {"quiz", "names", "solution", "solution_text_format", "statements",
                                                 "cot_head", "cot_repeat_steps", "cot_foot"}
    r = warmup("run", "experiments/kk_gold.toml", "--store", store, "--set", f"tasks.knights_knaves.data_dir={tmp_path / 'kk'}",
               "--set", "tasks.knights_knaves.people=[3, 4]")
    assert r.returncode == 0, r.stderr
    m = dict(query(store, "SELECT key, value FROM metrics WHERE stage = 'score-solver-traces'"))
    assert m["eval/knights_knaves/n_people=4/accuracy"] == 1.0 and m["eval/knights_knaves/n_people=3/count"] == 15
    bad = warmup("kk", "generate", "--people", "1-3", "--count", "2", "--out", tmp_path / "x.jsonl")
    assert bad.returncode == 2 and "within 2-20" in bad.stderr
    big = warmup("kk", "generate", "--people", "3-40", "--count", "2", "--out", tmp_path / "x.jsonl", timeout=5)
    assert big.returncode == 2 and "within 2-20 (the solver enumerates all 2^n cases)" in big.stderr


def test_distill_writes_a_filtered_sft_dataset_artifact(tmp_path, store):
    import hashlib
    from conftest import TEST_PLUGINS
    r = warmup("run", "experiments/kk_distill_solver.toml", "--store", store)
    assert r.returncode == 0, r.stderr
    (path, sha, size), = query(store, "SELECT path, sha256, bytes FROM artifacts")
    data = open(path, "rb").read()
    assert hashlib.sha256(data).hexdigest() == sha and len(data) == size
    lines = [json.loads(l) for l in data.decode().splitlines()]
    assert len(lines) == 60 and all(l["correct"] and l["reward"] == 2.0 and l["teacher"] == "kk_solver" for l in lines)
    assert lines[0]["prompt"].endswith("Assistant: <think>\n    ") and "</think>\n<answer>" in lines[0]["completion"]
    assert query(store, "SELECT task, split, count FROM datasets WHERE task = 'sft'") == [("sft", "sft.jsonl", 60)]
    # Filtering: the test teacher answers right once in three samples.
    exp = write(tmp_path / "d.toml", """[experiment]
name = "distill-filter"
[tasks.arithmetic]
test_size = 5
[rewards.exact_match]
extract = "full"
[[stages]]
name = "d"
algorithm = "distill"
tasks = ["arithmetic"]
teachers = ["good_teacher"]
rewards = { exact_match = 1.0 }
[stages.distill]
n = 3
keep = "correct"
""")
    r = warmup("run", exp, "--store", store, "--plugin-dir", TEST_PLUGINS / "good")
    assert r.returncode == 0, r.stderr
    m = dict(query(store, "SELECT key, value FROM metrics WHERE stage = 'd'"))
    assert m["distill/arithmetic/completions"] == 15 and m["distill/arithmetic/kept"] == 5


# ---- clear errors (issue 19 item 6) --------------------------------------------------------------

def test_algorithm_typo_points_at_the_algorithm_not_the_table(tmp_path, store):
    exp = write(tmp_path / "typo.toml", (REPO / "experiments/smoke.toml").read_text()
                .replace('algorithm = "evaluate"', 'algorithm = "evalute"'))
    r = warmup("run", exp, "--store", store, "--dry-run")
    assert r.returncode == 2
    assert 'algorithm = "evalute" but its options table is [evaluate]' in r.stderr, r.stderr
    assert 'did you mean algorithm = "evaluate"?' in r.stderr and "did you mean 'evalute'" not in r.stderr


def test_set_switches_a_bool_or_string_option_to_a_bool(tmp_path, store):
    exp = write(tmp_path / "sft.toml", """[experiment]
name = "bf16"
[model]
path = "nowhere"
[[stages]]
name = "sft-warmup"
algorithm = "sft"
  [stages.sft]
  data = "nowhere.jsonl"
  bf16 = "auto"
""")
    r = warmup("run", exp, "--store", store, "--dry-run", "--set", "stages.sft-warmup.sft.bf16=false")
    assert r.returncode == 2 and "nowhere.jsonl: cannot read" in r.stderr, r.stderr  # the config resolves; the files are missing
    assert "bf16 = false" in r.stdout
    r = warmup("run", exp, "--store", store, "--dry-run", "--set", "experiment.name=123")
    assert 'name = "123"' in r.stdout  # numbers over a string stay text


def test_runs_status_export_what_and_delete(tmp_path, store):
    run_smoke(store)
    run_smoke(store)
    r = warmup("runs", "--status", "faild", "--store", store)
    assert r.returncode == 2 and "running, finished, failed or interrupted" in r.stderr
    r = warmup("runs", "export", "1", "--format", "csv", "--store", store)
    assert r.returncode == 2 and "--what metrics, samples or params" in r.stderr
    j = json.loads(warmup("runs", "export", "1", "--format", "json", "--what", "metrics", "--store", store).stdout)
    assert j["metrics"] and "samples" not in j and "params" not in j
    j = json.loads(warmup("runs", "export", "1", "--format", "json", "--what", "samples", "--store", store).stdout)
    assert len(j["samples"]) == 40 and "metrics" not in j

    (run_dir,), = query(store, "SELECT run_dir FROM runs WHERE id = 1")
    assert (tmp_path / run_dir).exists() or __import__("os").path.isdir(run_dir)
    r = warmup("runs", "delete", "1", "--store", store)  # not a terminal: asks for --yes, deletes nothing
    assert r.returncode == 2 and "--yes" in r.stderr
    assert query(store, "SELECT count(*) FROM runs") == [(2,)]
    r = warmup("runs", "delete", "1", "--yes", "--store", store)
    assert r.returncode == 0, r.stderr
    assert query(store, "SELECT id FROM runs") == [(2,)]
    assert query(store, "SELECT count(*) FROM samples WHERE run_id = 1") == [(0,)]
    assert query(store, "SELECT count(*) FROM metrics WHERE run_id = 1") == [(0,)]
    assert query(store, "SELECT count(*) FROM samples WHERE run_id = 2") == [(40,)]
    assert not __import__("os").path.exists(run_dir)
    r = warmup("runs", "delete", "1", "--yes", "--store", store)
    assert r.returncode == 2 and "not found" in r.stderr


def test_cuda_without_a_gpu_is_one_line(tmp_path):
    cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 260, "hidden_size": 32,
           "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
           "max_position_embeddings": 256, "tie_word_embeddings": True, "torch_dtype": "float32"}
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    assert warmup("model", "init", "--config", tmp_path / "c.json", "--out", tmp_path / "m").returncode == 0
    prompts = write(tmp_path / "p.jsonl", json.dumps({"prompt": "hi"}) + "\n")
    for device in ("cuda", "cuda:3"):
        r = warmup("generate", "--model", tmp_path / "m", "--prompts", prompts, "--out", tmp_path / "o.jsonl",
                   "--device", device)
        assert r.returncode == 2, r.stderr
        assert f"device '{device}': CUDA is not usable here" in r.stderr, r.stderr
        assert "frame #" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


# ---- validation before running (issue 19 item 1) ------------------------------------------------

CHECKS = """[experiment]
name = "checks"
[model]
path = "no/such/model"
device = "gpu"
[tasks.math]
test = "no/such/math500.jsonl"
[rewards.math_accuracy]
[[stages]]
name = "warm"
algorithm = "sft"
  [stages.sft]
  data = "bad.jsonl"
[[stages]]
name = "eval"
algorithm = "evaluate"
tasks = ["math"]
rewards = { math_accuracy = 1.0 }
  [stages.evaluate]
  completions = "model"
"""


def test_dry_run_and_real_run_name_every_problem_before_anything_runs(tmp_path, store):
    write(tmp_path / "bad.jsonl", "not json\n")
    exp = write(tmp_path / "checks.toml", CHECKS)
    for extra in (["--dry-run"], []):
        r = warmup("run", exp, "--store", store, *extra)
        assert r.returncode == 2, r.stderr
        err = r.stderr
        assert "4 problems found before the run started (nothing ran):" in err, err
        assert f"path {tmp_path / 'no/such/model'} does not exist" in err
        assert "unknown device 'gpu'" in err
        assert f"{tmp_path / 'bad.jsonl'}:1: not valid JSON" in err and "stages.warm.sft.data" in err
        assert "stages.eval.evaluate: task 'math' split 'test'" in err and str(tmp_path / "no/such/math500.jsonl") in err
        assert not store.exists()  # a new run with problems leaves no row behind
    r = warmup("run", exp, "--store", store, "--dry-run")
    assert r.stdout.startswith("[experiment]")  # the resolved config is still printed
    # the device alone: CUDA asked for on a machine without it is one line
    r = warmup("run", exp, "--store", store, "--dry-run", "--set", 'model.device="cuda"')
    assert r.returncode == 2 and "CUDA is not usable here" in r.stderr and "unknown device" not in r.stderr
    assert "frame #" not in r.stderr
