"""The product's promise: a plugin built by a separate CMake project against the installed SDK,
dropped into a directory, is listed and used by the already-built `warmup`, with no rebuild."""
import json
import os
import shutil
import subprocess

from conftest import BUILD, REPO, query, warmup, write


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
