"""The `openai` teacher against `warmup serve` on loopback (no mock): n completions per prompt,
stop string re-appended, and a distillation killed mid-way resumes from the teacher's cache
without sampling any prompt twice, ending with exactly what an uninterrupted run produces."""
import json

import pytest

from conftest import query, serve, spawn, wait_for, warmup, write

CONFIG = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 300, "hidden_size": 64,
          "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
          "max_position_embeddings": 2048, "tie_word_embeddings": True, "torch_dtype": "float32",
          "initializer_range": 0.3}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("teacher")
    (d / "tiny.json").write_text(json.dumps(CONFIG))
    assert warmup("model", "init", "--config", d / "tiny.json", "--out", d / "tiny", "--seed", "4").returncode == 0
    p, base = serve(d / "tiny", "--max-model-len", "2048")
    yield base + "/v1"
    p.terminate()
    p.wait(timeout=30)


def experiment(tmp_path, name, base_url, cache, max_tokens=24, count=12):
    return write(tmp_path / f"{name}.toml", f"""[experiment]
name = "{name}"
seed = 5
[tasks.arithmetic]
train_size = {count}
[teachers.openai]
base_url = "{base_url}"
max_tokens = {max_tokens}
stop = ["7"]
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
n = 3
""")


def test_n_and_stop_reappended(server, tmp_path, store):
    exp = experiment(tmp_path, "t1", server, tmp_path / "c1.jsonl")
    r = warmup("run", exp, "--store", store)
    assert r.returncode == 0, r.stderr
    (path,), = query(store, "SELECT path FROM artifacts")
    lines = [json.loads(l) for l in open(path)]
    assert len(lines) == 36  # 12 prompts x n 3
    assert {l["source_id"] for l in lines} == {f"arithmetic/train/{i}" for i in range(12)}
    stopped = [l for l in lines if l["finish_reason"] == "stop"]
    assert stopped and all(l["completion"].endswith("7") for l in stopped)  # stop string put back
    assert all(l["completion"].count("7") == 1 for l in stopped)


def test_killed_distillation_resumes_without_resampling(server, tmp_path, store):
    cache = tmp_path / "cache.jsonl"
    exp = experiment(tmp_path, "resume", server, cache, max_tokens=1500, count=30)
    p = spawn("run", exp, "--store", store)
    assert wait_for(lambda: cache.exists() and len(cache.read_text().splitlines()) >= 3, timeout=120)
    p.kill()
    p.wait(timeout=30)
    before = [json.loads(l)["id"] for l in cache.read_text().splitlines() if l.strip().endswith("}")]
    assert 3 <= len(before) < 30
    r = warmup("run", exp, "--store", store)
    assert r.returncode == 0, r.stderr
    assert f"{30 - len(before)} prompts to sample, {len(before)} already in the cache" in r.stderr
    ids = [json.loads(l)["id"] for l in cache.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 30  # nothing sampled twice
    # Same per-prompt seeds: the resumed result equals an uninterrupted run's.
    ref = warmup("run", experiment(tmp_path, "ref", server, tmp_path / "ref.jsonl", max_tokens=1500, count=30),
                 "--store", tmp_path / "ref.sqlite")
    assert ref.returncode == 0, ref.stderr
    resumed = {json.loads(l)["id"]: json.loads(l)["completions"] for l in cache.read_text().splitlines()}
    fresh = {json.loads(l)["id"]: json.loads(l)["completions"] for l in (tmp_path / "ref.jsonl").read_text().splitlines()}
    assert resumed == fresh
