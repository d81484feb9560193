"""Real processes against one store: concurrent writers, SIGTERM/SIGINT (interrupted), SIGKILL
(dead run detected and marked failed) and resuming from the stage checkpoint."""
import signal
import time

from conftest import TEST_PLUGINS, query, spawn, wait_for, warmup, write


def sleepy_experiment(tmp_path, name, steps, interval_ms=20, extra="", first_stage_steps=0):
    first = ""
    if first_stage_steps:
        first = f"""
[[stages]]
name = "prep"
algorithm = "sleepy"
[stages.sleepy]
steps = {first_stage_steps}
interval_ms = 1
"""
    return write(tmp_path / f"{name}.toml", f"""[experiment]
name = "{name}"
[plugins]
paths = ["{TEST_PLUGINS / 'sleepy'}"]
{first}
[[stages]]
name = "main"
algorithm = "sleepy"
[stages.sleepy]
steps = {steps}
interval_ms = {interval_ms}
{extra}
""")


def main_steps(store, run):
    return [s for (s,) in query(store, "SELECT step FROM metrics WHERE run_id = ? AND stage = 'main' ORDER BY step", run)]


def test_two_processes_write_one_store_at_once(tmp_path, store):
    a = sleepy_experiment(tmp_path, "writer-a", 60, interval_ms=2)
    b = sleepy_experiment(tmp_path, "writer-b", 60, interval_ms=2)
    procs = [spawn("run", a, "--store", store), spawn("run", b, "--store", store),
             spawn("run", "experiments/smoke.toml", "--store", store)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    runs = query(store, "SELECT id, status FROM runs ORDER BY id")
    assert [s for _, s in runs] == ["finished"] * 3
    for run_id, _ in runs:
        name, = query(store, "SELECT e.name FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE r.id = ?", run_id)[0]
        if name.startswith("writer"):
            assert main_steps(store, run_id) == list(range(60))
    assert query(store, "SELECT count(*) FROM samples") == [(40,)]


def test_sigterm_marks_the_run_interrupted(tmp_path, store):
    exp = sleepy_experiment(tmp_path, "term", 100000)
    p = spawn("run", exp, "--store", store)
    assert wait_for(lambda: query(store, "SELECT count(*) FROM metrics")[0][0] >= 3)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    (status, error), = query(store, "SELECT status, error FROM runs")
    assert status == "interrupted" and "SIGTERM" in error
    assert query(store, "SELECT status FROM stages") == [("interrupted",)]
    assert "warmup run --resume 1" in err


def test_second_sigint_forces_a_stop_that_ignores_the_request(tmp_path, store):
    exp = sleepy_experiment(tmp_path, "stubborn", 100000, extra="ignore_stop = true")
    p = spawn("run", exp, "--store", store)
    assert wait_for(lambda: query(store, "SELECT count(*) FROM metrics")[0][0] >= 3)
    p.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert p.poll() is None  # still running: the stage ignores the stop request
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    (status, error), = query(store, "SELECT status, error FROM runs")
    assert status == "interrupted" and "forced" in error


def test_killed_run_is_detected_and_resumes_from_its_checkpoint(tmp_path, store):
    exp = sleepy_experiment(tmp_path, "killed", 150, interval_ms=10, first_stage_steps=3)
    p = spawn("run", exp, "--store", store)
    assert wait_for(lambda: len(main_steps(store, 1)) >= 20)
    p.kill()
    p.wait(timeout=30)
    assert query(store, "SELECT status FROM runs") == [("running",)]  # nobody closed it
    r = warmup("runs", "--store", store)
    assert r.returncode == 0 and "failed" in r.stdout
    (status, error), = query(store, "SELECT status, error FROM runs")
    assert status == "failed" and "ended without closing the run" in error
    prep_started, = query(store, "SELECT started_at FROM stages WHERE name = 'prep'")[0]
    steps_before = len(main_steps(store, 1))

    r = warmup("run", "--resume", "1", "--store", store)
    assert r.returncode == 0, r.stderr
    assert "resuming at step" in r.stderr
    assert query(store, "SELECT status, resumes FROM runs") == [("finished", 1)]
    assert query(store, "SELECT name, status FROM stages ORDER BY idx") == [("prep", "finished"), ("main", "finished")]
    # The finished stage was not run again; the killed one continued: every step exactly once.
    assert query(store, "SELECT started_at FROM stages WHERE name = 'prep'")[0][0] == prep_started
    assert main_steps(store, 1) == list(range(150))
    assert steps_before >= 20
    r = warmup("run", "--resume", "1", "--store", store)
    assert r.returncode == 2 and "already finished" in r.stderr


def test_two_stores_in_one_folder_keep_their_runs_apart(tmp_path):
    """Store A's failed run 1 resumes from its own folder and config after store B's run 1 exists;
    a folder forged with another run's config is refused naming both."""
    a_store, b_store = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    a = sleepy_experiment(tmp_path, "store-a", 30, interval_ms=1, extra="fail_at = 10")
    r = warmup("run", a, "--store", a_store)
    assert r.returncode == 1
    b = sleepy_experiment(tmp_path, "store-b", 5, interval_ms=1)
    assert warmup("run", b, "--store", b_store).returncode == 0
    (a_dir,), = query(a_store, "SELECT run_dir FROM runs WHERE id = 1")
    (b_dir,), = query(b_store, "SELECT run_dir FROM runs WHERE id = 1")
    assert a_dir != b_dir
    # Resuming A runs A's config (fail_at 10 again) from A's folder, not B's finished one.
    r = warmup("run", "--resume", "1", "--store", a_store)
    assert r.returncode == 1 and "failing at step 10" in r.stderr, r.stderr
    assert query(b_store, "SELECT status, resumes FROM runs") == [("finished", 0)]
    # A forged folder: B's config copied over A's.
    from pathlib import Path
    (Path(a_dir) / "config.toml").write_text((Path(b_dir) / "config.toml").read_text())
    r = warmup("run", "--resume", "1", "--store", a_store)
    assert r.returncode == 2
    assert "config.toml has config hash" in r.stderr and a_dir in r.stderr, r.stderr
    (Path(a_dir) / "run.json").write_text((Path(b_dir) / "run.json").read_text())
    r = warmup("run", "--resume", "1", "--store", a_store)
    assert r.returncode == 2 and "does not own its folder" in r.stderr, r.stderr
    assert query(a_store, "SELECT status FROM runs") == [("failed",)]


def test_a_recreated_store_does_not_reuse_an_old_run_folder(tmp_path, store):
    exp = sleepy_experiment(tmp_path, "again", 3, interval_ms=1)
    assert warmup("run", exp, "--store", store).returncode == 0
    (first,), = query(store, "SELECT run_dir FROM runs")
    store.unlink()
    for suffix in ["-wal", "-shm"]:
        (store.parent / (store.name + suffix)).unlink(missing_ok=True)
    assert warmup("run", exp, "--store", store).returncode == 0
    (second,), = query(store, "SELECT run_dir FROM runs")
    assert first != second


def test_two_resumes_started_together_run_once(tmp_path, store):
    exp = sleepy_experiment(tmp_path, "twice", 100000, interval_ms=5)
    p = spawn("run", exp, "--store", store)
    assert wait_for(lambda: len(main_steps(store, 1)) >= 5)
    p.kill()
    p.wait(timeout=30)
    for trial in range(3):
        procs = [spawn("run", "--resume", "1", "--store", store) for _ in range(2)]
        assert wait_for(lambda: any(q.poll() is not None for q in procs), timeout=120)
        loser = [q for q in procs if q.poll() is not None][0]
        winner = [q for q in procs if q is not loser][0]
        _, err = loser.communicate(timeout=30)
        assert loser.returncode == 2 and ("is running" in err or "claimed by another process" in err), err
        before = len(main_steps(store, 1))
        assert wait_for(lambda: len(main_steps(store, 1)) > before + 3, timeout=60)  # the winner works
        assert winner.poll() is None
        winner.send_signal(signal.SIGTERM)
        _, err = winner.communicate(timeout=60)
        assert winner.returncode == 143, err
    assert query(store, "SELECT resumes, status FROM runs") == [(3, "interrupted")]
    steps = main_steps(store, 1)
    assert steps == sorted(set(steps))  # no step stored twice


# ---- idempotent stages: a stage resumed after SIGKILL stores what an uninterrupted run stores

def stored(store):
    """What a run left in the store, minus times and paths: sample rows, metrics, datasets, artifacts."""
    return {"samples": query(store, "SELECT stage, step, task, example_id, completion, reward, correct FROM samples "
                                    "ORDER BY stage, task, step, id"),
            "metrics": query(store, "SELECT stage, key, step, value, flag FROM metrics ORDER BY stage, key, step"),
            "datasets": query(store, "SELECT stage, task, split, count, digest FROM datasets ORDER BY stage, task, split"),
            "artifacts": query(store, "SELECT stage, name, bytes, sha256 FROM artifacts ORDER BY stage, name")}


def test_evaluate_killed_mid_task_resumes_without_storing_samples_twice(tmp_path, store):
    """The first task's 600 samples are in the store (512 flushed) while the second, much larger
    task is scored; SIGKILL then --resume: the stage starts over and stores exactly what an
    uninterrupted run stores (not 512 + 1,200 samples)."""
    exp = write(tmp_path / "eval.toml", """[experiment]
name = "eval-killed"
seed = 3
[tasks.small]
plugin = "arithmetic"
test_size = 600
[tasks.big]
plugin = "arithmetic"
test_size = 400000
[rewards.exact_match]
[[stages]]
name = "eval"
algorithm = "evaluate"
tasks = ["small", "big"]
rewards = { exact_match = 1.0 }
eval = { split = "test", num_samples = 1 }
  [stages.evaluate]
  max_samples = 600
  reference_template = ["{reference}"]
""")
    p = spawn("run", exp, "--store", store)
    assert wait_for(lambda: store.exists() and query(store, "SELECT count(*) FROM samples")[0][0] >= 512, timeout=120)
    p.kill()
    p.wait(timeout=30)
    assert query(store, "SELECT status FROM runs") == [("running",)]  # killed mid-stage, not after it
    before = query(store, "SELECT count(*) FROM samples")[0][0]
    assert 512 <= before < 1200
    r = warmup("run", "--resume", "1", "--store", store)
    assert r.returncode == 0, r.stderr
    assert query(store, "SELECT status, resumes FROM runs") == [("finished", 1)]
    ref_store = tmp_path / "ref" / "warmup.sqlite"
    r = warmup("run", exp, "--store", ref_store)
    assert r.returncode == 0, r.stderr
    got, want = stored(store), stored(ref_store)
    assert len(want["samples"]) == 1200 and query(ref_store, "SELECT count(*) FROM samples") == [(1200,)]
    assert query(store, "SELECT count(*) FROM samples") == [(1200,)]
    assert got == want


CONFIG = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 300, "hidden_size": 64,
          "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
          "max_position_embeddings": 2048, "tie_word_embeddings": True, "torch_dtype": "float32",
          "initializer_range": 0.3}


def test_distill_killed_mid_task_resumes_to_what_an_uninterrupted_run_stores(tmp_path, store):
    """A distill stage (teacher: `warmup serve` on loopback) killed while the teacher samples, then
    --resume: one artifact, the same JSONL, metrics and dataset as an uninterrupted run (which
    reads the same teacher cache, so the completions are the same)."""
    import json
    from conftest import serve
    (tmp_path / "tiny.json").write_text(json.dumps(CONFIG))
    assert warmup("model", "init", "--config", tmp_path / "tiny.json", "--out", tmp_path / "tiny", "--seed", "4").returncode == 0
    server, base = serve(tmp_path / "tiny", "--max-model-len", "2048")
    try:
        cache = tmp_path / "cache.jsonl"
        exp = write(tmp_path / "distill.toml", f"""[experiment]
name = "distill-killed"
seed = 5
[tasks.arithmetic]
train_size = 30
[teachers.openai]
base_url = "{base}/v1"
max_tokens = 1500
concurrency = 3
cache = "{cache}"
[[stages]]
name = "distill"
algorithm = "distill"
tasks = ["arithmetic"]
teachers = ["openai"]
rewards = {{ exact_match = 1.0 }}
eval = {{ split = "train" }}
[stages.distill]
n = 2
batch = 10
""")
        p = spawn("run", exp, "--store", store)
        assert wait_for(lambda: cache.exists() and len(cache.read_text().splitlines()) >= 12, timeout=180)
        p.kill()
        p.wait(timeout=30)
        assert query(store, "SELECT status FROM runs") == [("running",)]
        r = warmup("run", "--resume", "1", "--store", store)
        assert r.returncode == 0, r.stderr
        assert query(store, "SELECT status, resumes FROM runs") == [("finished", 1)]
        ref_store = tmp_path / "ref" / "warmup.sqlite"
        r = warmup("run", exp, "--store", ref_store)
        assert r.returncode == 0, r.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)
    got, want = stored(store), stored(ref_store)
    assert len(want["artifacts"]) == 1 and want["metrics"]
    assert got == want
    (a,), = query(store, "SELECT path FROM artifacts")
    (b,), = query(ref_store, "SELECT path FROM artifacts")
    assert open(a).read() == open(b).read() and open(a).read().count("\n") == 60  # 30 prompts x n 2
