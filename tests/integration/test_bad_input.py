"""Bad input gets one clear error line naming the file and place, a non-zero exit, and never a
run row left 'running'."""
import json
from pathlib import Path

from conftest import TEST_PLUGINS, query, warmup, write

GOOD = """[experiment]
name = "bad-input"

[tasks.arithmetic]
test_size = 3

[[stages]]
name = "eval"
algorithm = "evaluate"
tasks = ["arithmetic"]
rewards = { exact_match = 1.0 }
"""


def error_line(r):
    lines = [l for l in r.stderr.splitlines() if l.startswith("error: ")]
    assert len(lines) == 1, r.stderr
    return lines[0]


def no_running_rows(store):
    return not store.exists() or query(store, "SELECT count(*) FROM runs WHERE status = 'running'") == [(0,)]


def test_malformed_toml(tmp_path, store):
    f = write(tmp_path / "broken.toml", GOOD.replace('test_size = 3', 'test_size = = 3'))
    r = warmup("run", f, "--store", store)
    assert r.returncode == 2
    line = error_line(r)
    assert "broken.toml:5:" in line, line
    assert no_running_rows(store) and not store.exists()


def test_unknown_plugin(tmp_path, store):
    f = write(tmp_path / "exp.toml", GOOD.replace('algorithm = "evaluate"', 'algorithm = "evalute"'))
    r = warmup("run", f, "--store", store)
    assert r.returncode == 2
    line = error_line(r)
    assert "exp.toml:7:1: unknown algorithm plugin 'evalute' (did you mean 'evaluate'?)" in line, line
    assert not store.exists()


def test_unknown_key_in_a_plugin_table(tmp_path, store):
    f = write(tmp_path / "exp.toml", GOOD.replace('test_size = 3', 'test_size = 3\ntest_sise = 4'))
    r = warmup("run", f, "--store", store)
    assert r.returncode == 2
    line = error_line(r)
    assert "exp.toml:6:13: unknown key 'test_sise' in [tasks.arithmetic] (did you mean 'test_size'?)" in line, line


def test_invalid_value_in_a_plugin_table(tmp_path, store):
    f = write(tmp_path / "exp.toml", GOOD.replace('test_size = 3', 'test_size = "three"'))
    r = warmup("run", f, "--store", store)
    assert r.returncode == 2
    assert "exp.toml:5:13: [tasks.arithmetic] test_size: expected integer, found string" in error_line(r)
    r = warmup("run", write(tmp_path / "exp2.toml", GOOD), "--store", store, "--set", "tasks.arithmetic.max_operand=0")
    assert r.returncode == 2
    assert "--set tasks.arithmetic.max_operand=0: [tasks.arithmetic] max_operand must be in" in error_line(r)


def test_unreadable_store(tmp_path):
    f = write(tmp_path / "exp.toml", GOOD)
    junk = write(tmp_path / "junk.sqlite", "x" * 5000)
    r = warmup("run", f, "--store", junk)
    assert r.returncode == 1
    assert "junk.sqlite: cannot open store" in error_line(r)
    r = warmup("run", f, "--store", tmp_path)  # found by the checks before a run starts: bad input
    assert r.returncode == 2 and "is a directory, not a SQLite file" in r.stderr, r.stderr
    r = warmup("runs", "--store", tmp_path / "absent.sqlite")
    assert r.returncode == 2 and "no such store" in error_line(r)


def test_plugin_that_throws_in_create(tmp_path, store):
    f = write(tmp_path / "exp.toml", GOOD.replace('tasks = ["arithmetic"]', 'tasks = ["crashy"]'))
    r = warmup("run", f, "--store", store, "--plugin-dir", TEST_PLUGINS / "crashy")
    assert r.returncode == 2
    line = error_line(r)
    assert "exp.toml:10:9: task 'crashy' (libwarmup_task_test_crashy.so) failed in create: boom" in line, line
    assert no_running_rows(store)


def test_stage_that_fails_marks_the_run_failed(tmp_path, store):
    f = write(tmp_path / "exp.toml", """[experiment]
name = "failing"
[[stages]]
name = "s"
algorithm = "sleepy"
[stages.sleepy]
steps = 10
interval_ms = 1
fail_at = 4
""")
    r = warmup("run", f, "--store", store, "--plugin-dir", TEST_PLUGINS / "sleepy")
    assert r.returncode == 1
    assert "stage 's' (sleepy) failed: failing at step 4 as asked" in error_line(r)
    (status, error), = query(store, "SELECT status, error FROM runs")
    assert status == "failed" and "failing at step 4" in error
    assert query(store, "SELECT status, error FROM stages") == [("failed", "failing at step 4 as asked")]
    # Steps before the failure were kept.
    assert query(store, "SELECT count(*) FROM metrics") == [(4,)]


def test_experiment_file_missing_or_a_directory(tmp_path, store):
    r = warmup("run", tmp_path / "nope.toml", "--store", store)
    assert r.returncode == 2 and "nope.toml: no such file" in error_line(r)
    r = warmup("run", tmp_path, "--store", store)
    assert r.returncode == 2 and "is a directory" in error_line(r)
    r = warmup("run", "--store", store)
    assert r.returncode == 2 and "missing EXPERIMENT.toml" in error_line(r)


def test_instance_names_with_dots_and_deep_nesting(tmp_path, store):
    """[tasks."a.b"] is one instance named a.b (it used to crash); nesting 50,000 deep is refused
    with toml++'s limit, naming the place."""
    f = write(tmp_path / "dotted.toml", GOOD.replace("[tasks.arithmetic]", '[tasks."a.b"]\nplugin = "arithmetic"')
              .replace('tasks = ["arithmetic"]', 'tasks = ["a.b"]'))
    r = warmup("run", f, "--store", store, "--dry-run")
    assert r.returncode == 0, r.stderr
    for name, text in [("deep1.toml", "a = " + "[" * 50000 + "]" * 50000),
                       ("deep2.toml", "a = " + "{b=" * 50000 + "1" + "}" * 50000),
                       ("deep3.toml", "[" + ".".join(["a"] * 50000) + "]\nx = 1")]:
        r = warmup("run", write(tmp_path / name, text), "--store", store, "--dry-run")
        assert r.returncode == 2, (name, r.returncode, r.stderr[-300:])
        assert f"{name}:1:" in error_line(r)


def test_base_files_that_are_devices_or_fifos_are_refused(tmp_path, store):
    import os
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    for base in ["/dev/zero", str(fifo), "/dev/null"]:
        f = write(tmp_path / "exp.toml", f'base = "{base}"\n' + GOOD)
        r = warmup("run", f, "--store", store, "--dry-run", timeout=60)
        assert r.returncode == 2, (base, r.stderr)
        assert f"{Path(base).name}: is not a regular file" in error_line(r)  # the path may be shown relative


def test_integers_beyond_2_53_are_stored_exactly(tmp_path, store):
    big = 2**63 - 1
    f = write(tmp_path / "exp.toml", GOOD.replace('name = "bad-input"', f'name = "bad-input"\nseed = {big}'))
    r = warmup("run", f, "--store", store)
    assert r.returncode == 0, r.stderr
    assert query(store, "SELECT value, typeof(value) FROM params WHERE key = 'experiment.seed'") == [(big, "integer")]


def test_runs_reads_a_store_on_a_read_only_mount(tmp_path, store):
    import shutil
    import subprocess
    f = write(tmp_path / "exp.toml", GOOD)
    assert warmup("run", f, "--store", store).returncode == 0
    d = store.parent
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0 or not shutil.which("mount"):
        import pytest
        pytest.skip("no mount namespace here to make a read-only mount")
    from conftest import WARMUP
    script = (f"mount --bind -o ro {d} {d} && touch {d}/probe 2>/dev/null && exit 9; "
              f"{WARMUP} runs list --store {store} && {WARMUP} runs table latest --store {store}")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "finished" in r.stdout and "accuracy" in r.stdout
