"""Durable checkpoints: a tiny SFT whose checkpoint writes fail (WARMUP_FAULT_WRITE makes one write
fail as a full disk would, ENOSPC after half its bytes) at each file of the step-10 checkpoint.
The run exits non-zero and its row is `failed` (never `running`); `latest` names a checkpoint whose
manifest verifies (sizes and sha256 of every file); `warmup run --resume` continues from the newest
checkpoint that verifies and ends with the losses of an uninterrupted run."""
import hashlib
import json

import pytest

from conftest import REPO, query, warmup, write

CONFIG = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 260, "hidden_size": 32,
          "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
          "max_position_embeddings": 2048, "tie_word_embeddings": True, "torch_dtype": "float32"}
STEPS = 15


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    (d / "tiny.json").write_text(json.dumps(CONFIG))
    assert warmup("model", "init", "--config", d / "tiny.json", "--out", d / "tiny", "--seed", "1").returncode == 0
    data = REPO / "plugins/knights_knaves/tests/data"
    exp = write(d / "sft.toml", f"""[experiment]
name = "ckpt-test"
seed = 3
[model]
path = "{d / 'tiny'}"
[tasks.knights_knaves]
data_dir = "{data}"
people = [3]
limit_per_size = 6
[[stages]]
name = "warmup"
algorithm = "sft"
tasks = ["knights_knaves"]
teachers = ["kk_solver"]
  [stages.sft]
  learning_rate = 3e-3
  max_steps = {STEPS}
  per_device_train_batch_size = 2
  max_length = 2048
  save_steps = 5
""")
    ref = d / "ref.sqlite"
    r = warmup("run", exp, "--store", ref, timeout=600)
    assert r.returncode == 0, r.stderr
    return exp, losses(ref)


def losses(store, run=1):
    return [v for (v,) in query(store, "SELECT value FROM metrics WHERE run_id = ? AND key = 'train/loss' ORDER BY step", run)]


def verify(step_dir):
    """The step folder's manifest lists exactly its files with their sizes and sha256; returns the step."""
    m = json.loads((step_dir / "manifest.json").read_text())
    on_disk = sorted(str(p.relative_to(step_dir)) for p in step_dir.rglob("*")
                     if p.is_file() and p.name != "manifest.json" and not p.name.endswith(".tmp"))
    assert sorted(m["files"]) == on_disk
    for rel, want in m["files"].items():
        data = (step_dir / rel).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (want["size"], want["sha256"]), rel
    assert step_dir.name == f"step-{m['step']}"
    return m["step"]


# Every file of the step-10 checkpoint, and `latest` when it moves to step-10 (its 2nd write).
FAULTS = ["step-10/model/model.safetensors", "step-10/model/config.json", "step-10/model/generation_config.json",
          "step-10/model/tokenizer.json", "step-10/optimizer.pt", "step-10/state.json", "step-10/manifest.json",
          "checkpoints/warmup/latest:2"]


@pytest.mark.parametrize("fault", FAULTS)
def test_a_failed_checkpoint_write_fails_the_run_and_resume_continues_from_the_newest_good_step(
        experiment, tmp_path, fault):
    exp, ref = experiment
    store = tmp_path / "s.sqlite"
    r = warmup("run", exp, "--store", store, env={"WARMUP_FAULT_WRITE": fault}, timeout=600)
    assert r.returncode != 0
    assert "No space left on device" in r.stderr, r.stderr[-2000:]
    assert query(store, "SELECT status FROM runs") == [("failed",)]
    assert query(store, "SELECT count(*) FROM stages WHERE status = 'running'") == [(0,)]
    (run_dir,), = query(store, "SELECT run_dir FROM runs")
    ckpt = REPO / run_dir / "checkpoints/warmup"
    latest = (ckpt / "latest").read_text().strip()
    assert latest == "step-5"
    assert verify(ckpt / latest) == 5
    r = warmup("run", "--resume", "1", "--store", store, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "at step 5" in r.stderr + r.stdout
    assert query(store, "SELECT status FROM runs") == [("finished",)]
    assert losses(store) == pytest.approx(ref, abs=1e-6)
    assert verify(ckpt / (ckpt / "latest").read_text().strip()) == STEPS


def test_resume_skips_a_corrupt_latest_and_a_checkpoint_that_does_not_verify(experiment, tmp_path):
    exp, ref = experiment
    store = tmp_path / "s.sqlite"
    assert warmup("run", exp, "--store", store, timeout=600).returncode == 0
    (run_dir,), = query(store, "SELECT run_dir FROM runs")
    ckpt = REPO / run_dir / "checkpoints/warmup"
    # As a full disk left them: `latest` empty, the newest checkpoint's optimizer truncated.
    (ckpt / "latest").write_text("")
    opt = ckpt / "step-15/optimizer.pt"
    opt.write_bytes(opt.read_bytes()[:100])
    with __import__("sqlite3").connect(store) as db:
        db.execute("UPDATE runs SET status = 'failed'")
        db.execute("UPDATE stages SET status = 'failed'")
    r = warmup("run", "--resume", "1", "--store", store, timeout=600)
    assert r.returncode == 0, r.stderr
    out = r.stderr + r.stdout
    assert "step-15 skipped" in out and "is empty" in out and "at step 10" in out, out
    assert losses(store) == pytest.approx(ref, abs=1e-6)


@pytest.fixture
def small_disk(tmp_path):
    """A 600 KiB tmpfs (root only; skipped where mounting is not allowed): room for the store and
    about one checkpoint of the tiny model."""
    import os
    import subprocess
    d = tmp_path / "disk"
    d.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", d],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield d
    subprocess.run(["umount", "-l", d])


def test_a_full_disk_fails_the_run_cleanly_and_resume_continues(experiment, small_disk):
    import subprocess
    exp, ref = experiment
    store = small_disk / "s.sqlite"
    r = warmup("run", exp, "--store", store, timeout=600)
    assert r.returncode != 0
    assert "No space left on device" in r.stderr, r.stderr[-2000:]
    assert query(store, "SELECT status FROM runs") == [("failed",)]
    ckpt = next(small_disk.glob("runs/*/checkpoints/warmup"))
    good = 0
    if (ckpt / "latest").exists():
        good = verify(ckpt / (ckpt / "latest").read_text().strip())
    assert good < STEPS
    assert subprocess.run(["mount", "-o", "remount,size=64m", small_disk]).returncode == 0
    r = warmup("run", "--resume", "1", "--store", store, timeout=600)
    assert r.returncode == 0, r.stderr
    assert f"at step {good}" in r.stderr + r.stdout if good else True
    assert losses(store) == pytest.approx(ref, abs=1e-6)
