"""`warmup report`: the quickstart's runs (the committed experiments, shrunk with --set) written
as one HTML file and loaded in headless Chromium with the network cut off: no console message,
one chart per metric with the store's number of points, the paper table's numbers equal to the
store's, the completion browser's filters counting what SQL counts, a screenshot. Then the
messages for failed, empty and NaN runs, the page without Chart.js, `--serve` while a real run
trains, and the MLflow (read back by MLflow itself) and JSONL exports."""
import json
import math
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import BUILD, REPO, WARMUP, query, wait_for, warmup, write

TINY = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 1024, "hidden_size": 32,
        "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
        "max_position_embeddings": 512, "tie_word_embeddings": True, "eos_token_id": 0, "torch_dtype": "float32"}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = BUILD / "test-artifacts"


def shrink(rl=True):
    s = ["--set", "tasks.kk.generate_train=16", "--set", "tasks.kk.generate_test=4"]
    for arm in ("base", "warmup"):
        s += ["--set", f"stages.sft-{arm}.sft.max_steps=4", "--set", f"stages.eval-{arm}.evaluate.max_new_tokens=24"]
        if rl:
            s += ["--set", f"stages.rl-{arm}.grpo.max_steps=3", "--set", f"stages.rl-{arm}.grpo.max_completion_length=16",
                  "--set", f"stages.rl-{arm}.grpo.prompts_per_step=2", "--set", f"stages.rl-{arm}.grpo.num_generations=4",
                  "--set", f"stages.rl-{arm}.grpo.per_device_train_batch_size=8",
                  "--set", f"stages.eval-{arm}-rl.evaluate.max_new_tokens=16",
                  "--set", f"stages.eval-{arm}-sampled.evaluate.max_new_tokens=16"]
    return s


@pytest.fixture(scope="module")
def qs(tmp_path_factory):
    """Run 1: quickstart_rlvr (both SFT arms, GRPO on each, six evaluations); run 2: quickstart."""
    d = tmp_path_factory.mktemp("report")
    store = d / "qs.sqlite"
    r = warmup("run", REPO / "experiments/quickstart_rlvr.toml", "--store", store, *shrink(), timeout=900)
    assert r.returncode == 0, r.stderr
    r = warmup("run", REPO / "experiments/quickstart.toml", "--store", store, *shrink(rl=False), timeout=900)
    assert r.returncode == 0, r.stderr
    return store


class Dom(HTMLParser):
    """The elements of a dumped DOM as [tag, attrs, text, parent], text gathered per element."""

    VOID = ("br", "img", "input", "meta", "link", "hr", "wbr", "source", "col")

    def __init__(self, html):
        super().__init__()
        self.elements, self.stack = [], []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        el = [tag, dict(attrs), "", self.stack[-1] if self.stack else None]
        self.elements.append(el)
        if tag not in self.VOID:
            self.stack.append(el)

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data):
        for el in self.stack:
            el[2] += data

    def find(self, tag=None, inside=None, **attrs):
        def under(e):
            while e is not None:
                if e is inside:
                    return True
                e = e[3]
            return False
        return [e for e in self.elements if (tag is None or e[0] == tag) and (inside is None or under(e[3])) and
                all(e[1].get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def by_id(self, ident):
        found = self.find(id=ident)
        assert len(found) == 1, f"#{ident}: {len(found)} elements"
        return found[0]

    def charts(self):
        """data-key -> attributes of each chart container."""
        return {e[1]["data-key"]: e[1] for e in self.elements
                if "chart" in e[1].get("class", "").split() and "data-key" in e[1]}

    def text(self):
        return " ".join(e[2] for e in self.find("body"))


def chromium(url, *extra, budget=20000):
    """Loads `url` in headless Chromium without network; returns (DOM, console lines)."""
    if not CHROMIUM:
        pytest.fail("chromium is not installed (scripts/setup.sh --test installs it)")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
           "--disable-background-networking", "--disable-sync", "--disable-component-update",
           "--proxy-server=http://127.0.0.1:9",
           "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
           "--enable-logging=stderr", "--v=0", f"--virtual-time-budget={budget}", *extra, url]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    console = [l for l in r.stderr.splitlines() if ":CONSOLE" in l]
    return r.stdout, console


def load(html_file, fragment="", **kw):
    dom, console = chromium(Path(html_file).resolve().as_uri() + fragment, "--dump-dom", **kw)
    assert console == [], console
    d = Dom(dom)
    assert d.by_id("report-errors")[2].strip() == ""
    assert d.find("body", data_ready="1"), "the page never finished its first render"
    return d


def store_points(store, runs):
    """metric key -> (points over the runs, largest series) from the store."""
    rows = query(store, f"SELECT key, count(*) FROM metrics WHERE run_id IN ({','.join('?' * len(runs))})"
                        " GROUP BY run_id, stage, key", *runs)
    out = {}
    for key, n in rows:
        total, longest = out.get(key, (0, 0))
        out[key] = (total + n, max(longest, n))
    return out


def test_report_of_the_quickstart_in_a_browser(qs, tmp_path):
    out = tmp_path / "report.html"
    r = warmup("report", "1", "2", "--store", qs, "--out", out)
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}" in r.stderr and "2 run(s)" in r.stderr, r.stderr
    html = out.read_text()
    # Offline: the page has everything inlined (Chart.js included) and nothing that fetches.
    assert "Chart.js v" in html and not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    d = load(out)

    # One chart per metric that has a series of two or more points, with the store's point count.
    points = store_points(qs, [1, 2])
    want = {k: n for k, (n, longest) in points.items() if longest >= 2}
    assert "train/loss" in want and "train/reward" in want and "train/frac_reward_zero_std" in want
    charts = d.charts()
    assert set(charts) == set(want), (set(charts) ^ set(want))
    for key, attrs in charts.items():
        assert int(attrs["data-points"]) == want[key], key
        assert int(attrs["data-rendered-points"]) == want[key], key

    # The paper table: one row per evaluated stage of both runs, the store's mean and std.
    table = {e[1]["data-row"]: e[1] for e in d.find("td", inside=d.by_id("paper-table"), data_task="kk")}
    table_text = {e[1]["data-row"]: e[2].strip() for e in d.find("td", inside=d.by_id("paper-table"), data_task="kk")}
    expect = query(qs, "SELECT run_id, stage, value FROM metrics WHERE key = 'eval/kk/accuracy_mean'")
    std = dict(((r, s), v) for r, s, v in query(qs, "SELECT run_id, stage, value FROM metrics WHERE key = 'eval/kk/accuracy_std'"))
    assert len(expect) == 8  # six evaluations in run 1 (two greedy, four with 4 samples), two in run 2
    assert sum(1 for run, stage, _ in expect if query(qs, "SELECT value FROM params WHERE run_id = ? AND key = ?",
                                                        run, f"stages.{stage}.eval.num_samples") == [(4,)]) == 4
    for run, stage, mean in expect:
        cell = table[f"run {run} {stage}"]
        assert math.isclose(float(cell["data-mean"]), mean, abs_tol=1e-12)
        (n,), = query(qs, "SELECT value FROM params WHERE run_id = ? AND key = ?", run, f"stages.{stage}.eval.num_samples")
        if n == 1:  # one sample per example: no spread to show
            assert "data-std" not in cell and "±" not in table_text[f"run {run} {stage}"]
        else:
            assert math.isclose(float(cell["data-std"]), std[(run, stage)], abs_tol=1e-12)
        assert table_text[f"run {run} {stage}"].startswith(f"{100 * mean:.1f}")

    # The completion browser counts what SQL counts, for filters given in the URL.
    assert int(d.by_id("sample-count")[2]) == query(qs, "SELECT count(*) FROM samples")[0][0]
    for fragment, sql in [
        ("#samples&correct=1", "correct = 1"),
        ("#samples&correct=0&stage=1:eval-warmup", "correct = 0 AND run_id = 1 AND stage = 'eval-warmup'"),
        ("#samples&stage=1:rl-base&step=2", "run_id = 1 AND stage = 'rl-base' AND step = 2"),
        ("#samples&finish=length", "finish_reason = 'length'"),
        ("#samples&rmin=0.5", "reward >= 0.5"),
    ]:
        f = load(out, fragment)
        assert int(f.by_id("sample-count")[2]) == query(qs, f"SELECT count(*) FROM samples WHERE {sql}")[0][0], fragment
    g = load(out, "#samples&stage=1:rl-warmup&view=groups")
    groups = query(qs, "SELECT count(DISTINCT step || '/' || example_id) FROM samples WHERE run_id = 1 AND stage = 'rl-warmup'")
    assert int(g.by_id("group-count")[2]) == groups[0][0]

    # A screenshot, kept as a test artifact.
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    _, console = chromium(out.resolve().as_uri(), "--hide-scrollbars", "--window-size=1280,2400", f"--screenshot={shot}")
    assert console == [], console
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20000


def test_failed_empty_and_nan_runs_read_as_such(qs, tmp_path):
    store = tmp_path / "odd.sqlite"
    shutil.copy(qs, store)
    con = sqlite3.connect(store)
    with con:
        con.execute("UPDATE runs SET status = 'failed', error = 'stage rl-base: loss is NaN' WHERE id = 1")
        con.execute("UPDATE metrics SET value = NULL, flag = 'nan' WHERE run_id = 1 AND key = 'train/loss' AND step >= 2")
        con.execute("UPDATE metrics SET value = NULL, flag = 'nan' WHERE run_id = 1 AND key = 'eval/kk/accuracy_mean'")
        # Values near the double range, which Chart.js cannot lay out (it throws or hangs).
        con.executemany("INSERT INTO metrics (run_id, stage, key, step, value, flag, wall_time) VALUES (1, 'rl-base', 'train/huge', ?, ?, NULL, 0)",
                        [(1, 9e307), (2, -9e307), (3, 1.797e308)])
        # A run that died before recording anything.
        con.execute("INSERT INTO runs (id, experiment_id, name, status, started_at, config, config_hash, host, pid, seed)"
                    " SELECT 3, experiment_id, 'empty', 'interrupted', started_at, config, config_hash, host, pid, seed"
                    " FROM runs WHERE id = 2")
    con.close()
    out = tmp_path / "odd.html"
    r = warmup("report", "1", "3", "--store", store, "--out", out)
    assert r.returncode == 0, r.stderr
    d = load(out)
    text = d.text()
    assert "stage rl-base: loss is NaN" in text
    assert "recorded no metrics or samples" in text
    nan_points = query(store, "SELECT count(*) FROM metrics WHERE run_id = 1 AND key = 'train/loss' AND flag = 'nan'")[0][0]
    assert f"{nan_points} points are NaN/inf" in text
    huge = d.charts()["train/huge"]
    assert huge["data-points"] == "3" and "data-rendered-points" not in huge and "shown as a table" in text
    loss = d.charts()["train/loss"]
    assert int(loss["data-rendered-points"]) == query(store, "SELECT count(*) FROM metrics WHERE run_id = 1 AND key = 'train/loss'")[0][0]
    # Only the empty run: still a page with its message, not a blank one.
    r = warmup("report", "3", "--store", store, "--out", out)
    assert r.returncode == 0, r.stderr
    d = load(out)
    assert "recorded no metrics or samples" in d.text()


def test_without_chartjs_curves_are_tables(qs, tmp_path):
    out = tmp_path / "plain.html"
    r = warmup("report", "1", "--store", qs, "--out", out, env={"WARMUP_CHARTJS": str(tmp_path / "missing.js")})
    assert r.returncode == 0 and "curves are shown as tables" in r.stderr, r.stderr
    assert "Chart.js v" not in out.read_text()
    d = load(out)
    assert "curves are shown as tables" in d.text()
    charts = d.charts()
    assert charts and all("data-rendered-points" not in c for c in charts.values())
    points = store_points(qs, [1])
    assert {k: int(c["data-points"]) for k, c in charts.items()} == {k: n for k, (n, longest) in points.items() if longest >= 2}


def test_bad_arguments(qs, tmp_path):
    r = warmup("report", "99", "--store", qs, "--out", tmp_path / "x.html")
    assert r.returncode == 2 and "run 99 not found" in r.stderr, r.stderr
    r = warmup("report", "--store", tmp_path / "none.sqlite")
    assert r.returncode == 2 and "no such store" in r.stderr, r.stderr
    r = warmup("report", "1", "--store", qs, "--max-chars", "0")
    assert r.returncode == 2 and "--max-chars" in r.stderr, r.stderr
    assert not (tmp_path / "x.html").exists()
    # Never over the store itself or a folder; nothing left behind.
    copy = tmp_path / "copy.sqlite"
    shutil.copy(qs, copy)
    r = warmup("report", "1", "--store", copy, "--out", copy)
    assert r.returncode == 2 and "is the store" in r.stderr, r.stderr
    assert query(copy, "SELECT count(*) FROM runs") == [(2,)]
    (tmp_path / "folder").mkdir()
    r = warmup("report", "1", "--store", qs, "--out", tmp_path / "folder")
    assert r.returncode == 2 and "is a folder" in r.stderr, r.stderr
    assert list(tmp_path.glob("*.tmp")) == []
    # A run given twice is reported once.
    r = warmup("report", "1", "1", "latest", "2", "--store", qs, "--out", tmp_path / "twice.html")
    assert r.returncode == 0 and "2 run(s)" in r.stderr, r.stderr


def test_a_store_path_with_uri_characters_opens_that_file(qs, tmp_path):
    """'%', '?' and '#' in the store's path name that file, not another one (SQLite URIs)."""
    (tmp_path / "a b.sqlite").write_bytes(b"not this one")
    odd = tmp_path / "a%20b#?.sqlite"
    shutil.copy(qs, odd)
    r = warmup("report", "1", "--store", odd, "--out", tmp_path / "odd.html")
    assert r.returncode == 0, r.stderr


def get(url):
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read().decode()


def test_serve_follows_a_run_that_is_training(tmp_path):
    """A real SFT run writes its metrics while `warmup report --serve` answers: the page fetched
    later has more points, and neither blocks the other."""
    store = tmp_path / "live.sqlite"
    write(tmp_path / "tiny.json", json.dumps(TINY))
    exp = write(tmp_path / "live.toml", f"""[experiment]
name = "live"
seed = 1
[model]
init = {{ config = "tiny.json", seed = 1, tokenizer = "{REPO / 'experiments/quickstart/tokenizer'}" }}
[tasks.kk]
plugin = "knights_knaves"
people = [2]
generate_train = 8
generate_test = 2
[teachers.solver]
plugin = "kk_solver"
[[stages]]
name = "sft"
algorithm = "sft"
tasks = ["kk"]
teachers = ["solver"]
  [stages.sft]
  max_steps = 100000
  per_device_train_batch_size = 2
  gradient_accumulation_steps = 1
  save_steps = 0
""")
    env = dict(os.environ)
    env.pop("WARMUP_STORE", None)
    train = subprocess.Popen([WARMUP, "run", str(exp), "--store", str(store)], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    server = None
    try:
        assert wait_for(lambda: query(store, "SELECT count(*) FROM metrics WHERE key = 'train/loss'")[0][0] >= 3, 300)
        server = subprocess.Popen([WARMUP, "report", "--serve", "--port", "0", "--store", str(store)],
                                  cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
        line = ""
        while "serving" not in line:
            line = server.stderr.readline()
            assert line or server.poll() is None, "warmup report --serve exited"
        base = "http://127.0.0.1:" + re.search(r"127\.0\.0\.1:(\d+)", line).group(1)
        assert get(base + "/health").strip() == "ok"

        def loss_points():
            data = json.loads(get(base + "/api/report.json?samples=0"))
            assert data["live"] and data["samples"] is None and data["runs"][0]["status"] == "running"
            # The count the page compares to refetch completions (SFT without eval writes none).
            assert data["samples_total"] == query(store, "SELECT count(*) FROM samples")[0][0] == 0
            return sum(len(s["step"]) for s in data["series"] if s["key"] == "train/loss")

        first = loss_points()
        assert first >= 3
        assert wait_for(lambda: loss_points() > first + 5, 120)
        # The page itself, fetched twice while the run trains, shows the growing count.
        counts = []
        for _ in range(2):
            dom, console = chromium(base + "/", "--dump-dom", budget=3000)
            assert console == [], console
            d = Dom(dom)
            assert d.find("body", data_ready="1")
            counts.append(int(d.charts()["train/loss"]["data-points"]))
            time.sleep(1.5)
        assert counts[1] > counts[0] >= first
        assert train.poll() is None, "the run stopped while being served"
        # Unknown runs are a 404 with the reason.
        with pytest.raises(urllib.error.HTTPError) as e:
            get(base + "/api/report.json?runs=42")
        assert e.value.code == 404 and "run 42 not found" in e.value.read().decode()
        with pytest.raises(urllib.error.HTTPError) as e:
            get(base + "/api/report.json?runs=abc")
        assert e.value.code == 400
    finally:
        train.send_signal(signal.SIGINT)
        train.wait(timeout=120)
        if server:
            server.send_signal(signal.SIGINT)
            assert server.wait(timeout=30) == 0


def test_jsonl_export_has_every_row(qs, tmp_path):
    r = warmup("runs", "export", "1", "--store", qs, "--format", "jsonl", "--out", tmp_path / "run.jsonl")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(l) for l in (tmp_path / "run.jsonl").read_text().splitlines()]
    assert list(lines[0])[0] == "type" and lines[0]["type"] == "run" and lines[0]["id"] == 1
    by_type = {}
    for l in lines:
        by_type.setdefault(l["type"], []).append(l)
    for type_, table in [("metric", "metrics"), ("sample", "samples"), ("param", "params"), ("stage", "stages")]:
        assert len(by_type[type_]) == query(qs, f"SELECT count(*) FROM {table} WHERE run_id = 1")[0][0], type_
    s = by_type["sample"][0]
    assert isinstance(s["rewards"], dict) and "kk_paper" in s["rewards"]
    r = warmup("runs", "export", "1", "--store", qs, "--format", "jsonl", "--what", "metrics")
    assert {json.loads(l)["type"] for l in r.stdout.splitlines()} == {"run", "metric"}


def test_mlflow_reads_the_export(qs, tmp_path):
    from mlflow.tracking import MlflowClient
    store = tmp_path / "nan.sqlite"
    shutil.copy(qs, store)
    con = sqlite3.connect(store)
    with con:
        con.execute("UPDATE metrics SET value = NULL, flag = 'nan' WHERE run_id = 1 AND key = 'train/loss' AND step = 2")
        con.execute("UPDATE runs SET status = 'failed' WHERE id = 2")
    con.close()
    root = tmp_path / "mlruns"
    for run in (1, 2):
        r = warmup("runs", "export", str(run), "--store", store, "--format", "mlflow", "--out", root)
        assert r.returncode == 0, r.stderr
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    client = MlflowClient(tracking_uri=root.resolve().as_uri())
    exps = {e.name: e for e in client.search_experiments()}
    assert {"quickstart-rlvr", "quickstart"} <= set(exps)
    (run,) = client.search_runs([exps["quickstart-rlvr"].experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "quickstart-rlvr"
    (uuid,), = query(store, "SELECT uuid FROM runs WHERE id = 1")
    assert run.info.run_id == uuid.replace("-", "")
    params = dict(query(store, "SELECT key, CAST(value AS TEXT) FROM params WHERE run_id = 1 AND type = 'string'"))
    for k, v in params.items():
        if len(v) <= 6000:
            assert run.data.params[k.replace("=", ":")] == v, k
    history = client.get_metric_history(run.info.run_id, "rl-base/train/loss")
    rows = query(store, "SELECT step, value, flag FROM metrics WHERE run_id = 1 AND stage = 'rl-base' AND key = 'train/loss' ORDER BY step")
    assert [m.step for m in history] == [s for s, _, _ in rows]
    for m, (_, v, flag) in zip(history, rows):
        assert (math.isnan(m.value) and flag == "nan") or m.value == v
    acc = client.get_metric_history(run.info.run_id, "eval-base/eval/kk/n_people:3/accuracy")
    assert acc[0].value == query(store, "SELECT value FROM metrics WHERE run_id = 1 AND stage = 'eval-base'"
                                        " AND key = 'eval/kk/n_people=3/accuracy'")[0][0]
    (failed,) = client.search_runs([exps["quickstart"].experiment_id])
    assert failed.info.status == "FAILED"
    # A second export of the same run replaces the first.
    r = warmup("runs", "export", "1", "--store", store, "--format", "mlflow", "--out", root)
    assert r.returncode == 0, r.stderr
    assert len(client.search_runs([exps["quickstart-rlvr"].experiment_id])) == 1
    # A store whose uuid is a path cannot make the export write or delete outside DIR.
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    con = sqlite3.connect(store)
    with con:
        con.execute("UPDATE runs SET uuid = ? WHERE id = 2", (str(victim),))
        con.execute("INSERT INTO metrics (run_id, stage, key, step, value, flag, wall_time) VALUES"
                    " (2, 'sft-base', 'm/x', 1, 1.0, NULL, 0), (2, 'sft-base', 'm/x/y', 1, 2.0, NULL, 0),"
                    " (2, 'sft-base', 'm/none', 1, NULL, NULL, 0)")
    con.close()
    r = warmup("runs", "export", "2", "--store", store, "--format", "mlflow", "--out", root)
    assert r.returncode == 0, r.stderr
    assert (victim / "keep.txt").read_text() == "keep" and len(list(victim.iterdir())) == 1
    # (The run's folder is now named from a hash, not the uuid: a second run in the experiment.)
    runs = client.search_runs([exps["quickstart"].experiment_id])
    assert len(runs) == 2
    (failed,) = [r for r in runs if "sft-base/m/none" in r.data.metrics]
    # m/x is a file, so m/x/y goes into the folder m/x_2 (MLflow's file store cannot have both).
    assert {"sft-base/m/x", "sft-base/m/x_2/y"} <= set(failed.data.metrics), sorted(failed.data.metrics)
    assert failed.data.metrics["sft-base/m/x_2/y"] == 2.0
    assert math.isnan(failed.data.metrics["sft-base/m/none"])
    samples = (root / exps["quickstart-rlvr"].experiment_id / run.info.run_id / "artifacts" / "samples.jsonl").read_text()
    assert len(samples.splitlines()) == query(store, "SELECT count(*) FROM samples WHERE run_id = 1")[0][0]
