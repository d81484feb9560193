"""The product's promise: a plugin built by a separate CMake project against the installed SDK,
dropped into a directory, is listed and used by the already-built `warmup`, with no rebuild; and a
whole new domain (task + reward in one library, with its eval preset beside it) works with
`warmup run`, `warmup eval` and `warmup score`."""
import json
import os
import shutil
import subprocess

from conftest import BUILD, REPO, query, warmup, write


TINY = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 260, "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 4096, "tie_word_embeddings": True, "torch_dtype": "float32"}


def build_out_of_tree(tmp_path):
    prefix = tmp_path / "prefix"
    subprocess.run(["cmake", "--install", BUILD, "--prefix", prefix], check=True, capture_output=True)
    assert (prefix / "include/warmup/sdk.h").exists()
    assert (prefix / "lib/cmake/warmup/warmupConfig.cmake").exists()
    src = tmp_path / "src"
    shutil.copytree(REPO / "tests/out_of_tree_plugin", src)  # outside the warmup tree
    build = tmp_path / "build"
    subprocess.run(["cmake", "-S", src, "-B", build, f"-DCMAKE_PREFIX_PATH={prefix}",
                    "-DCMAKE_BUILD_TYPE=Release"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", build], check=True, capture_output=True)
    lib = build / "libwarmup_reward_even_answer.so"
    assert lib.exists()
    assert (build / "libwarmup_echo.so").exists() and (build / "echo.eval.toml").exists()
    return lib


def test_out_of_tree_plugin_is_listed_and_used(tmp_path, store):
    lib = build_out_of_tree(tmp_path)
    drop = tmp_path / "my-plugins"
    drop.mkdir()
    shutil.copy(lib, drop)

    r = warmup("plugins", "--plugin-dir", drop, "--json")
    j = json.loads(r.stdout)
    entry = next(p for p in j["plugins"] if p["name"] == "even_answer")
    assert entry["kind"] == "reward" and entry["version"] == "0.3.0"
    assert entry["library"] == str(drop / lib.name)
    assert not j["failures"]

    exp = write(tmp_path / "exp" / "even.toml", """[experiment]
name = "out-of-tree"
[plugins]
paths = ["../my-plugins"]          # relative to this file
[tasks.arithmetic]
test_size = 30
[rewards.even_answer]
odd = -0.5
[[stages]]
name = "eval"
algorithm = "evaluate"
tasks = ["arithmetic"]
rewards = { exact_match = 1.0, even_answer = 2.0 }
""")
    r = warmup("run", exp, "--store", store)
    assert r.returncode == 0, r.stderr
    rows = query(store, "SELECT completion, reward, rewards FROM samples")
    assert len(rows) == 30
    for completion, reward, rewards in rows:
        parity = 1.0 if int(completion) % 2 == 0 else -0.5
        parts = json.loads(rewards)
        assert parts["even_answer"] == parity
        assert parts["even_answer/last_digit"] == abs(int(completion)) % 10
        assert reward == 1.0 + 2.0 * parity
    (lib_path,), = query(store, "SELECT library_path FROM run_plugins WHERE name = 'even_answer'")
    assert lib_path.endswith("my-plugins/libwarmup_reward_even_answer.so")

    # $WARMUP_PLUGIN_PATH is searched too, without [plugins] paths.
    exp2 = write(tmp_path / "exp" / "even2.toml", exp.read_text().replace('paths = ["../my-plugins"]', ''))
    assert warmup("run", exp2, "--store", store).returncode == 2
    r = warmup("run", exp2, "--store", store, env={"WARMUP_PLUGIN_PATH": str(drop)})
    assert r.returncode == 0, r.stderr


def test_out_of_tree_domain_works_with_run_eval_and_score(tmp_path, store):
    lib = build_out_of_tree(tmp_path)
    drop = tmp_path / "domains"
    drop.mkdir()
    for f in ("libwarmup_echo.so", "echo.eval.toml"):
        shutil.copy(lib.parent / f, drop)
    words = ["cat", "elephant", "sun", "giraffe", "owl", "crocodile"]
    data = tmp_path / "data"
    write(data / "echo" / "words.jsonl", "".join(json.dumps({"word": w}) + "\n" for w in words))

    j = json.loads(warmup("plugins", "--plugin-dir", drop, "--json").stdout)
    mine = {(p["kind"], p["name"]): p["library"] for p in j["plugins"] if p["library"].startswith(str(drop))}
    assert mine == {("task", "echo"): str(drop / "libwarmup_echo.so"), ("reward", "echo_match"): str(drop / "libwarmup_echo.so")}
    preset = next(p for p in j["eval_presets"] if p["name"] == "echo")
    assert preset["task"] == "echo" and preset["reward"] == "echo_match" and preset["file"] == str(drop / "echo.eval.toml")
    assert {"math500", "kk"} <= {p["name"] for p in j["eval_presets"]}  # the in-tree domains' presets too

    # score: by our ids, through the preset (data path under --data, reward)
    lines = [{"id": f"echo/test/{i}", "completion": w if i % 2 == 0 else w[::-1]} for i, w in enumerate(words)]
    f = write(tmp_path / "in.jsonl", "".join(json.dumps(l) + "\n" for l in lines))
    r = warmup("score", "--plugin-dir", drop, "--task", "echo", "--data", data, "--in", f, "--out", tmp_path / "o.jsonl")
    assert r.returncode == 0, r.stderr
    out = [json.loads(l) for l in open(tmp_path / "o.jsonl")]
    assert [o["correct"] for o in out] == [i % 2 == 0 for i in range(len(words))]
    # without the domain's folder the name is unknown, and the error lists what is known
    r = warmup("score", "--task", "echo", "--data", data, "--in", f, "--out", tmp_path / "o.jsonl")
    assert r.returncode == 2 and "'echo' is not an eval preset" in r.stderr and "math500" in r.stderr

    # eval: a tiny model, 2 samples per word; the preset's group_by breaks accuracy down
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    r = warmup("model", "init", "--config", tmp_path / "tiny.json", "--out", tmp_path / "tiny", "--seed", "1")
    assert r.returncode == 0, r.stderr
    r = warmup("eval", "--plugin-dir", drop, "--model", tmp_path / "tiny", "--tasks", "echo", "--data", data,
               "--samples", "2", "--max-new-tokens", "4", "--store", store, "--out-toml", tmp_path / "echo_eval.toml")
    assert r.returncode == 0, r.stderr
    assert "echo" in r.stdout.splitlines()[-4]  # the table's header row names the task
    rows = query(store, "SELECT prompt, task, example_id FROM samples WHERE run_id = 1")
    assert len(rows) == 2 * len(words) and {t for _, t, _ in rows} == {"echo"}
    assert {p for p, _, _ in rows} == {f"Repeat the word: {w}\n" for w in words}
    metrics = {k for (k,) in query(store, "SELECT DISTINCT key FROM metrics WHERE run_id = 1")}
    assert {"eval/echo/accuracy_mean", "eval/echo/length=short/accuracy_mean", "eval/echo/length=long/accuracy_mean"} <= metrics, metrics

    # run: the experiment eval built, as a file, with the domain found through --plugin-dir
    r = warmup("run", tmp_path / "echo_eval.toml", "--plugin-dir", drop, "--store", store)
    assert r.returncode == 0, r.stderr
    assert query(store, "SELECT status FROM runs WHERE id = 2") == [("finished",)]
    assert len(query(store, "SELECT id FROM samples WHERE run_id = 2")) == 2 * len(words)


def test_out_of_tree_algorithm_that_uses_the_model(tmp_path, store):
    lib = build_out_of_tree(tmp_path)  # the package's warmup::torch found LibTorch for it
    drop = tmp_path / "algos"
    drop.mkdir()
    shutil.copy(lib.parent / "libwarmup_ref_logprob.so", drop)
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    assert warmup("model", "init", "--config", tmp_path / "tiny.json", "--out", tmp_path / "tiny", "--seed", "1").returncode == 0
    exp = write(tmp_path / "exp.toml", f"""[experiment]
name = "ref-logprob"
[model]
path = "{tmp_path / 'tiny'}"
[plugins]
paths = ["{drop}"]
[tasks.arithmetic]
test_size = 5
[[stages]]
name = "probe"
algorithm = "ref_logprob"
tasks = ["arithmetic"]
  [stages.ref_logprob]
  limit = 3
""")
    values = []
    for _ in range(2):
        r = warmup("run", exp, "--store", store)
        assert r.returncode == 0, r.stderr
        run = len(values) + 1
        m = dict(query(store, "SELECT key, value FROM metrics WHERE run_id = ? AND key LIKE 'ref_logprob/%'", run))
        assert set(m) == {"ref_logprob/arithmetic/0", "ref_logprob/arithmetic/1", "ref_logprob/arithmetic/2",
                          "ref_logprob/arithmetic/mean"}, m
        per = [m[f"ref_logprob/arithmetic/{i}"] for i in range(3)]
        assert all(v < 0 for v in per) and abs(sum(per) / 3 - m["ref_logprob/arithmetic/mean"]) < 1e-9
        values.append(per)
    assert values[0] == values[1]  # the same weights give the same log-probs
    (lib_path,), = query(store, "SELECT library_path FROM run_plugins WHERE name = 'ref_logprob' AND run_id = 1")
    assert lib_path == str(drop / "libwarmup_ref_logprob.so")
