"""Plugin libraries that abort, segfault, exit(0), hang or lie about their manifest while being
loaded: the real `warmup` probes each in a child process, lists it as rejected with the reason, and
keeps working with the libraries next to them. Probe results are cached by path, mtime, size and
SHA-256 (re-hashed only when the file's inode or change time moved); a changed library is probed
again."""
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from conftest import BUILD, TEST_PLUGINS, query, warmup, write

# Seconds a probe may take here (WARMUP_PLUGIN_PROBE_TIMEOUT; the default is 10). A probe starts the
# torch-linked warmup executable: about 1 s on a loaded 2-core machine, so 2 s would be flaky.
TIMEOUT = 5
REAL_PLUGINS = BUILD / "lib" / "warmup" / "plugins"

BAD = {  # test plugin case -> what `warmup plugins` must say about it
    "load_abort": "killed by signal 6 (SIGABRT) while loading; stderr: load_abort: aborting in a static initialiser",
    "load_segv": "killed by signal 11 (SIGSEGV) while loading",
    "load_exit0": "exited with status 0 while loading, without reporting a manifest",
    "load_hang": f"timed out after {TIMEOUT} s while loading",
    "absurd_count": "manifest claims 2147483648 entries (max 4096)",
    "bad_name": "manifest entry 0 has kind 'task', name '../evil?name', interface 'warmup.task' "
                "(each must match [A-Za-z0-9_.-]+)",
}


def lib_of(case):
    return TEST_PLUGINS / case / f"libwarmup_task_test_{case}.so"


@pytest.fixture
def plugin_dir(tmp_path):
    """One directory: every crashing library, the real plugins (symlinked) and `flaky`, a copy of
    the segfaulting library that a test may replace."""
    d = tmp_path / "plugins"
    d.mkdir()
    for case in BAD:
        (d / lib_of(case).name).symlink_to(lib_of(case))
    real = sorted(REAL_PLUGINS.glob("*.so"))
    assert len(real) >= 3, REAL_PLUGINS
    for lib in real:
        (d / lib.name).symlink_to(lib)
    shutil.copy(lib_of("load_segv"), d / "libwarmup_task_test_flaky.so")
    return d


def env_for(tmp_path, **extra):
    return {"WARMUP_PLUGIN_PROBE_CACHE": str(tmp_path / "cache" / "plugin-probe.json"),
            "WARMUP_PLUGIN_PROBE_TIMEOUT": str(TIMEOUT), **extra}


def plugins_json(plugin_dir, env, *extra):
    start = time.monotonic()
    r = warmup("plugins", "--plugin-dir", plugin_dir, "--json", *extra, env=env, timeout=120)
    elapsed = time.monotonic() - start
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    libs = {Path(l["library"]).name: l for l in j["libraries"] if Path(l["library"]).parent == plugin_dir}
    return j, libs, elapsed, r.stderr


def probe_children_alive(plugin_dir):
    """Probe processes of this test's libraries still running (a killed hang must not linger)."""
    alive = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if len(cmd) > 2 and cmd[1] == b"__probe-plugin" and cmd[2].startswith(bytes(plugin_dir)):
                alive.append(b" ".join(cmd).decode(errors="replace"))
    return alive


def test_crashing_libraries_are_rejected_with_their_reason(tmp_path, plugin_dir):
    j, libs, elapsed, _ = plugins_json(plugin_dir, env_for(tmp_path))
    for case, reason in BAD.items():
        lib = libs[lib_of(case).name]
        assert (lib["status"], lib["reason"], lib["probe"]) == ("rejected", reason, "probed"), case
        failure = next(f for f in j["failures"] if Path(f["library"]).name == lib_of(case).name)
        assert failure["entry"] == "" and failure["reason"] == reason
        assert not any(p["name"] == case for p in j["plugins"])  # nothing of it was registered
    assert libs["libwarmup_task_test_flaky.so"]["reason"] == BAD["load_segv"]
    # The working libraries next to them are accepted, from this directory (first in search order).
    real = sorted(l.name for l in REAL_PLUGINS.glob("*.so"))
    for name in real:
        assert (libs[name]["status"], libs[name]["probe"]) == ("accepted", "probed"), name
    arithmetic = next(p for p in j["plugins"] if p["name"] == "arithmetic")
    assert Path(arithmetic["library"]).parent == plugin_dir
    # Bounded: the hang costs one timeout (probes run in parallel), not a hung host.
    assert TIMEOUT <= elapsed < TIMEOUT + 60
    assert not probe_children_alive(plugin_dir)
    # The text listing says the same.
    r = warmup("plugins", "--plugin-dir", plugin_dir, env=env_for(tmp_path), timeout=120)
    assert r.returncode == 0
    for case, reason in BAD.items():
        assert f"{plugin_dir / lib_of(case).name}: rejected: {reason}\n" in r.stdout


def test_probe_results_are_cached_and_a_changed_library_is_probed_again(tmp_path, plugin_dir):
    env = env_for(tmp_path)
    _, first, cold, _ = plugins_json(plugin_dir, env)
    assert {l["probe"] for l in first.values()} == {"probed"}
    cache = json.loads((tmp_path / "cache" / "plugin-probe.json").read_text())
    rec = cache["libraries"][str(plugin_dir / lib_of("load_hang").name)]
    assert rec["timed_out_after"] == TIMEOUT and len(rec["sha256"]) == 64

    _, second, warm, log = plugins_json(plugin_dir, env, "-v")
    assert {name: l["probe"] for name, l in second.items()} == {name: "cached" for name in first}
    assert {name: l["reason"] for name, l in second.items()} == {name: l["reason"] for name, l in first.items()}
    assert f"plugin probe: {plugin_dir / lib_of('load_hang').name}: cached (timed out after {TIMEOUT} s" in log
    assert "probed in" not in log
    assert warm < cold - TIMEOUT / 2  # no child waited out the hang this time

    # A longer timeout than the one that expired gives the hanging library another chance.
    _, third, _, _ = plugins_json(plugin_dir, env_for(tmp_path, WARMUP_PLUGIN_PROBE_TIMEOUT=str(TIMEOUT + 1)))
    assert third[lib_of("load_hang").name]["reason"] == f"timed out after {TIMEOUT + 1} s while loading"
    assert third[lib_of("load_hang").name]["probe"] == "probed"
    assert third[lib_of("load_abort").name]["probe"] == "cached"

    # A new change time alone (chmod) makes warmup hash the file again, not probe it again.
    flaky = plugin_dir / "libwarmup_task_test_flaky.so"
    flaky.chmod(0o700)
    _, chmodded, _, _ = plugins_json(plugin_dir, env)
    assert chmodded[flaky.name]["probe"] == "cached"

    # The segfaulting copy is replaced by a working library: probed again, and now accepted.
    shutil.copy(TEST_PLUGINS / "good" / "libwarmup_task_test_good.so", flaky)
    j, fourth, _, log = plugins_json(plugin_dir, env, "-v")
    assert (fourth[flaky.name]["status"], fourth[flaky.name]["probe"]) == ("accepted", "probed")
    assert f"plugin probe: {flaky}: probed in" in log
    assert next(p for p in j["plugins"] if p["name"] == "good_task")["library"] == str(flaky)
    assert all(l["probe"] == "cached" for name, l in fourth.items() if name != flaky.name)

    # Same size and mtime but other bytes: the SHA-256 tells.
    st = flaky.stat()
    data = bytearray(flaky.read_bytes())
    data[-1] ^= 0xFF
    flaky.write_bytes(bytes(data))
    os.utime(flaky, ns=(st.st_atime_ns, st.st_mtime_ns))
    _, fifth, _, _ = plugins_json(plugin_dir, env)
    assert fifth[flaky.name]["probe"] == "probed"


def test_a_corrupt_cache_is_replaced(tmp_path, plugin_dir):
    cache = write(tmp_path / "cache" / "plugin-probe.json", '{"version": 1, "libraries": {"x": ')
    _, libs, _, log = plugins_json(plugin_dir, env_for(tmp_path))
    assert {l["probe"] for l in libs.values()} == {"probed"}
    assert "unreadable; starting a new one" in log
    assert str(plugin_dir / lib_of("load_segv").name) in json.loads(cache.read_text())["libraries"]
    # A record of the wrong shape is a miss, not a crash.
    j = json.loads(cache.read_text())
    j["libraries"][str(plugin_dir / lib_of("load_segv").name)]["result"] = {"ok": True, "entries": 7}
    cache.write_text(json.dumps(j))
    _, libs, _, _ = plugins_json(plugin_dir, env_for(tmp_path))
    assert libs[lib_of("load_segv").name]["probe"] == "probed"
    assert libs[lib_of("load_segv").name]["reason"] == BAD["load_segv"]


def test_an_unrelated_experiment_runs_next_to_crashing_libraries(tmp_path, plugin_dir, store):
    r = warmup("run", "experiments/smoke.toml", "--store", store, "--plugin-dir", plugin_dir,
               "--set", "tasks.arithmetic.test_size=12", env=env_for(tmp_path), timeout=300)
    assert r.returncode == 0, r.stderr
    metrics = dict(query(store, "SELECT key, value FROM metrics"))
    assert metrics["eval/arithmetic/accuracy"] == 1.0 and metrics["eval/arithmetic/count"] == 12
    for _, path in query(store, "SELECT name, library_path FROM run_plugins"):
        assert Path(path).parent == plugin_dir
    assert not probe_children_alive(plugin_dir)


def test_an_experiment_that_needs_a_rejected_library_names_it(tmp_path, plugin_dir, store):
    exp = write(tmp_path / "needs.toml", """[experiment]
name = "needs-segv"
[tasks.load_segv]
[[stages]]
name = "eval"
algorithm = "evaluate"
tasks = ["load_segv"]
rewards = { exact_match = 1.0 }
[stages.evaluate]
completions = "reference"
""")
    r = warmup("run", exp, "--store", store, "--plugin-dir", plugin_dir, env=env_for(tmp_path), timeout=300)
    assert r.returncode == 2, r.stderr
    assert "unknown task plugin 'load_segv'" in r.stderr
    assert f"{plugin_dir / lib_of('load_segv').name}: {BAD['load_segv']}" in r.stderr


def test_a_malformed_probe_timeout_is_bad_input(tmp_path, plugin_dir):
    r = warmup("plugins", "--plugin-dir", plugin_dir, env=env_for(tmp_path, WARMUP_PLUGIN_PROBE_TIMEOUT="soon"))
    assert r.returncode == 2
    assert "WARMUP_PLUGIN_PROBE_TIMEOUT='soon': expected a number of seconds, more than 0 and at most 3600" in r.stderr
