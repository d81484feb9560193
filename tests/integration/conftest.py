"""Shared helpers for the integration tests: they drive the real `warmup` executable against real
SQLite files in temporary directories. Paths come from ctest's environment."""
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

WARMUP = os.environ.get("WARMUP_BIN", "build/bin/warmup")
REPO = Path(os.environ.get("WARMUP_REPO", Path(__file__).resolve().parents[2]))
BUILD = Path(os.environ.get("WARMUP_BUILD", REPO / "build"))
TEST_PLUGINS = Path(os.environ.get("WARMUP_TEST_PLUGIN_DIR", BUILD / "tests" / "plugins"))


def warmup(*args, cwd=None, env=None, timeout=300, input=None):
    """Runs warmup to completion; returns the CompletedProcess (text mode)."""
    full_env = dict(os.environ)
    full_env.pop("WARMUP_PLUGIN_PATH", None)
    full_env.pop("WARMUP_STORE", None)
    if env:
        full_env.update(env)
    return subprocess.run([WARMUP, *map(str, args)], cwd=cwd or REPO, env=full_env, text=True,
                          capture_output=True, timeout=timeout, input=input)


def tiny_model(directory: Path, config: dict, seed: int) -> Path:
    """`warmup model init` of `config` (a config.json dict) into directory/tiny; returns its path."""
    import json
    (directory / "tiny.json").write_text(json.dumps(config))
    r = warmup("model", "init", "--config", directory / "tiny.json", "--out", directory / "tiny", "--seed", seed)
    assert r.returncode == 0, r.stderr
    return directory / "tiny"


def spawn(*args, cwd=None):
    env = dict(os.environ)
    env.pop("WARMUP_PLUGIN_PATH", None)
    return subprocess.Popen([WARMUP, *map(str, args)], cwd=cwd or REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def serve(model_dir, *extra):
    """Starts `warmup serve` on a free loopback port; returns (process, "http://127.0.0.1:PORT")."""
    import re
    p = subprocess.Popen([WARMUP, "serve", "--model", str(model_dir), "--port", "0", *map(str, extra)],
                         stderr=subprocess.PIPE, text=True)
    line = ""
    while "serving" not in line:
        line = p.stderr.readline()
        if not line and p.poll() is not None:
            raise RuntimeError(f"warmup serve exited with {p.returncode}")
    return p, "http://127.0.0.1:" + re.search(r"127\.0\.0\.1:(\d+)", line).group(1)


def query(store, sql, *params):
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def wait_for(predicate, timeout=60.0, interval=0.05):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if predicate():
                return True
        except sqlite3.OperationalError:
            pass  # store not created yet
        time.sleep(interval)
    return False


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def store(tmp_path):
    return tmp_path / "store" / "warmup.sqlite"
