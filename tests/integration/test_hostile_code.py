"""Hostile code through `warmup score --task humaneval_plus` (issue 13): programs that try to make
the checker report a pass without solving the problem (reward hacking) and programs that try to
leave the sandbox. For every variant (plus, base, plus_originfmt): zero passes, nothing written
outside the sandbox, no planted secret in any output, no connection to the test's listeners, and
the host unharmed. The canonical solutions still passing is plugin.humaneval_plus's test."""
import json
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, warmup

DATA = REPO.parent / "shared" / "data"
TASK = "humaneval_plus/HumanEval/0"  # has_close_elements(numbers, threshold) -> bool
WRONG = "\ndef has_close_elements(numbers, threshold):\n    return False\n"

# ---- reward hacking: each would pass a checker that trusts the candidate's process.
SABOTAGE = {
    "emit a verdict on every fd": """
import os
fake = b'V {"status": "pass"}\\n@@verdict-0{"pass": true}\\n0 ready null\\n' + b''.join(b'%d ok true\\n' % i for i in range(1, 3000))
for fd in range(0, 64):
    try:
        os.write(fd, fake)
    except OSError:
        pass
""" + WRONG,
    "emit then continue": """
import os, sys
def has_close_elements(numbers, threshold):
    for fd in range(3, 64):
        try:
            os.write(fd, b'%d ok true\\n' % 1)
        except OSError:
            pass
    return None
""",
    "verdict nonce from the environment": """
import os
for fd in range(3, 64):
    try:
        os.write(fd, ("".join(k + "=" + v for k, v in os.environ.items()) + '{"pass": true}\\n').encode())
    except OSError:
        pass
""" + WRONG,
    "patch json.dumps": """
import json
json.dumps = lambda *a, **k: '{"status": "pass", "pass": true}'
""" + WRONG,
    "patch os.write": """
import os
_w = os.write
os.write = lambda fd, data: _w(fd, data.replace(b'err', b'ok').replace(b'false', b'true'))
""" + WRONG,
    "patch numpy.allclose": """
import numpy
numpy.allclose = lambda *a, **k: True
numpy.isclose = lambda *a, **k: True
""" + WRONG,
    "replace numpy in sys.modules": """
import sys, types
fake = types.ModuleType("numpy")
fake.allclose = lambda *a, **k: True
fake.ndarray = list
sys.modules["numpy"] = fake
""" + WRONG,
    "patch builtins": """
import builtins
builtins.AssertionError = type("Nope", (Exception,), {})
builtins.isinstance = lambda *a: True
""" + WRONG,
    "answer key from the filesystem": """
import os, glob
found = []
for pattern in ["/tmp/*", "/tmp/*/*", "/var/tmp/*", "*", "/proc/*/cmdline", "/proc/*/environ", "/proc/*/cwd/*", "/proc/*/root/tmp/*"]:
    for p in glob.glob(pattern):
        try:
            found.append(p + ":" + open(p, errors="replace").read(2000))
        except Exception:
            pass
KEY = "\\n".join(found)
def has_close_elements(numbers, threshold):
    return "expected" in KEY or "results" in KEY
""",
    "answer key from memory": """
import gc
def has_close_elements(numbers, threshold):
    for o in gc.get_objects():
        if isinstance(o, dict) and ("expected" in o or "results" in o):
            return o.get("expected", o.get("results"))
    return None
""",
    "answer key from the caller's frames": """
import sys
def has_close_elements(numbers, threshold):
    f = sys._getframe(1)
    while f:
        for name in ("exp", "expected", "results", "out"):
            if name in f.f_locals:
                return f.f_locals[name]
        f = f.f_back
    return None
""",
    "always-equal object": """
class Eq:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __bool__(self): return True
    __hash__ = object.__hash__
def has_close_elements(numbers, threshold):
    return Eq()
""",
    "lying int subclass": """
class B(int):
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    __hash__ = int.__hash__
def has_close_elements(numbers, threshold):
    return B(1)
""",
    "lying str and list subclasses": """
class S(list):
    def __eq__(self, other): return True
def has_close_elements(numbers, threshold):
    return S()
""",
    "spoofed __class__": """
class Fake:
    @property
    def __class__(self): return bool
    def __eq__(self, other): return True
def has_close_elements(numbers, threshold):
    return Fake()
""",
    "numpy bool that is always true": """
import numpy as np
def has_close_elements(numbers, threshold):
    return np.ones(1, dtype=bool)
""",
    "sys.exit(0) before the tests": """
import sys
sys.exit(0)
""" + WRONG,
    "os._exit(0) in the function": """
import os
def has_close_elements(numbers, threshold):
    os._exit(0)
""",
    "SystemExit in the function": """
def has_close_elements(numbers, threshold):
    raise SystemExit(0)
""",
    "kill everything visible": """
import os, signal
def has_close_elements(numbers, threshold):
    for sig in (signal.SIGKILL, signal.SIGTERM):
        try:
            os.kill(-1, sig)
        except OSError:
            pass
    try:
        os.kill(os.getppid(), 9)
    except OSError:
        pass
    return True
""",
    "ignore the per-call alarm": """
import signal, time
signal.signal(signal.SIGALRM, signal.SIG_IGN)
def has_close_elements(numbers, threshold):
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    while True:
        time.sleep(0.1)
""",
    "huge answer": """
def has_close_elements(numbers, threshold):
    return "x" * (80 << 20)
""",
    "self-referential answer": """
def has_close_elements(numbers, threshold):
    l = []
    l.append(l)
    return l
""",
    "malformed answers on the channel": """
import os
def has_close_elements(numbers, threshold):
    for fd in range(3, 64):
        try:
            os.write(fd, b'\\xff\\xfe 1 ok {"$tuple": 1}\\n 1 ok NaN\\n')
        except OSError:
            pass
    return None
""",
    "hand the checker a file descriptor": """
import array, os, socket
r, w = os.pipe()
os.write(w, b'V {"status": "pass"}\\n')
for fd in range(0, 64):
    try:
        s = socket.socket(fileno=os.dup(fd))
        s.sendmsg([b'0 ready null\\n1 ok true\\n'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r, w, fd]))])
    except OSError:
        pass
""" + WRONG,
    "close the channel and linger": """
import os, time
def has_close_elements(numbers, threshold):
    for fd in range(0, 64):
        try:
            os.close(fd)
        except OSError:
            pass
    while True:
        time.sleep(0.1)
""",
    "junk bytes before the start": """
import os
for fd in range(3, 64):
    try:
        os.write(fd, b'\\xff\\xfe\\x00 0 ready null\\n\\xc3\\n')
    except OSError:
        pass
""" + WRONG,
    "forged tags": """
def has_close_elements(numbers, threshold):
    import json, os
    for fd in range(3, 64):
        try:
            os.write(fd, b'1 ok {"$np": ["object", "os.system"]}\\n')
        except OSError:
            pass
    return None
""",
    "plant expected files": """
import os, pickle
for d in (".", "/tmp", "/var/tmp", "/dev/shm"):
    try:
        pickle.dump({"base": [], "plus": []}, open(os.path.join(d, "expected.pkl"), "wb"))
    except OSError:
        pass
""" + WRONG,
    "return the answer of a guess": """
def has_close_elements(numbers, threshold):
    return len(numbers) % 2 == 0
""",
    "generator instead of a value": """
def has_close_elements(numbers, threshold):
    yield True
""",
}

# ---- escapes: each tries to touch the host; {MARK}, {HOME}, {REPO}, {SOCK}, {ABSTRACT}, {PORT},
# {CANARY_FILES}, {STORE} are filled in by the test.
ESCAPE = {
    "write outside the work dir": """
import os
for d in ["/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/run", "{HOME}", "{REPO}", "/", "/etc", "/usr"]:
    try:
        open(os.path.join(d, "{MARK}-file"), "w").write("escaped")
    except OSError:
        pass
""" + WRONG,
    "read secrets": """
data = []
for p in {CANARY_FILES} + ["/etc/shadow", "{STORE}", "/proc/1/environ", "/proc/1/root/etc/shadow"]:
    try:
        data.append(open(p, errors="replace").read(500))
    except OSError as e:
        data.append(type(e).__name__)
raise RuntimeError("LEAK " + " | ".join(data))
""",
    "secrets from the environment": """
import os
raise RuntimeError("LEAK " + repr(dict(os.environ)))
""",
    "setuid shell": """
import os, shutil
for d in ["/tmp", "/var/tmp", "/dev/shm", "."]:
    try:
        p = os.path.join(d, "{MARK}-sh")
        shutil.copy("/bin/sh", p)
        os.chmod(p, 0o4755)
    except OSError:
        pass
""" + WRONG,
    "disk fill": """
import os
for d in [".", "/tmp", "/var/tmp", "/dev/shm"]:
    try:
        with open(os.path.join(d, "{MARK}-fill"), "wb") as f:
            for _ in range(2048):
                f.write(b"\\0" * (1 << 20))
    except OSError:
        pass
""" + WRONG,
    "memory across children": """
import os, time
kids = []
for _ in range(6):
    pid = os.fork()
    if pid == 0:
        try:
            b = bytearray(300 << 20)
            for i in range(0, len(b), 4096):
                b[i] = 1
        except MemoryError:
            pass
        time.sleep(20)
        os._exit(0)
    kids.append(pid)
time.sleep(20)
""" + WRONG,
    "unix socket on a host path": """
import socket
s = socket.socket(socket.AF_UNIX)
s.connect("{SOCK}")
s.sendall(b"escaped")
""" + WRONG,
    "abstract unix socket": """
import socket
s = socket.socket(socket.AF_UNIX)
s.connect("\\0{ABSTRACT}")
s.sendall(b"escaped")
""" + WRONG,
    "tcp to the host": """
import socket
s = socket.create_connection(("127.0.0.1", {PORT}), timeout=2)
s.sendall(b"escaped")
""" + WRONG,
    "fork bomb": """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
""",
    "escaped session": """
import os, time
if os.fork() == 0:
    os.setsid()
    time.sleep(1)
    open("/tmp/{MARK}-late", "w").write("late")
    time.sleep(60)
""" + WRONG,
    "mount and chroot": """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)
try:
    os.chroot("/proc/1/root")
except OSError:
    pass
open("/proc/1/root/tmp/{MARK}-chroot", "w").write("x")
""" + WRONG,
    "ptrace the parent": """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
r = libc.ptrace(16, os.getppid(), 0, 0)
raise RuntimeError("ptrace %d errno %d" % (r, ctypes.get_errno()))
""",
    "write to the store": """
import sqlite3
c = sqlite3.connect("{STORE}")
c.execute("CREATE TABLE escaped (x)")
c.commit()
""" + WRONG,
}


def completion(code):
    return "```python\n" + code.strip("\n") + "\n```"


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """Canaries, listeners and the marker the programs try to write."""
    tmp = tmp_path_factory.mktemp("hostile")
    h = {"MARK": "warmup-escape-" + secrets.token_hex(6), "SECRET": "canary-" + secrets.token_hex(16)}
    home = Path(os.environ.get("HOME", "/root"))
    canaries = [home / (h["MARK"] + "-canary"), tmp / "canary"]
    etc = Path("/etc") / (h["MARK"] + "-canary")
    try:
        etc.write_text(h["SECRET"])
        canaries.append(etc)
    except OSError:
        pass  # not root: the $HOME canary still counts
    for c in canaries[:2]:
        c.write_text(h["SECRET"])
        c.chmod(0o600)
    store = tmp / "store.sqlite"
    import sqlite3
    sqlite3.connect(store).execute("CREATE TABLE secret (x)").connection.execute(
        "INSERT INTO secret VALUES (?)", (h["SECRET"],)).connection.commit()
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(tmp / "host.sock"))
    unix.listen(8)
    unix.setblocking(False)
    abstract = socket.socket(socket.AF_UNIX)
    h["ABSTRACT"] = h["MARK"] + "-abstract"
    abstract.bind("\0" + h["ABSTRACT"])
    abstract.listen(8)
    abstract.setblocking(False)
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(8)
    tcp.setblocking(False)
    h.update(HOME=str(home), REPO=str(REPO), SOCK=str(tmp / "host.sock"), PORT=str(tcp.getsockname()[1]),
             CANARY_FILES=repr([str(c) for c in canaries]), STORE=str(store))
    h["tmp"], h["listeners"], h["canaries"], h["store_path"] = tmp, [unix, abstract, tcp], canaries, store
    yield h
    for s in h["listeners"]:
        s.close()
    for c in canaries:
        c.unlink(missing_ok=True)


def fill(code, h):
    for k in ("MARK", "HOME", "REPO", "SOCK", "ABSTRACT", "PORT", "CANARY_FILES", "STORE"):
        code = code.replace("{" + k + "}", h[k])
    return code


def leftovers(h):
    """Files of the marker anywhere the programs tried to write."""
    found = []
    for d in ["/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/run", h["HOME"], h["REPO"], "/", "/etc", "/usr"]:
        try:
            found += [os.path.join(d, n) for n in os.listdir(d) if n.startswith(h["MARK"]) and "-canary" not in n]
        except OSError:
            pass
    return found


@pytest.mark.parametrize("variant", ["plus", "base", "plus_originfmt"])
def test_hostile_programs_never_pass_and_never_escape(host, variant, tmp_path):
    programs = {**SABOTAGE, **{k: fill(v, host) for k, v in ESCAPE.items()}}
    assert len(programs) >= 30
    lines = [{"id": TASK, "name": name, "completion": completion(code)} for name, code in programs.items()]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(l) + "\n" for l in lines))
    out = tmp_path / "out.jsonl"
    env = {"WARMUP_CANARY_TOKEN": host["SECRET"], "OPENAI_API_KEY": host["SECRET"]}
    r = warmup("score", "--task", "humaneval_plus", "--data", DATA, "--python", sys.executable,
               "--task-option", f"variant={variant}", "--reward-option", "timeout_s=6",
               "--reward-option", "memory_mb=1024", "--jobs", "2",
               "--in", src, "--out", out, env=env, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert host["SECRET"] not in r.stdout + r.stderr
    results = [json.loads(l) for l in out.read_text().splitlines()]
    assert len(results) == len(programs)
    for res in results:
        assert res["correct"] is False, (res["name"], res["error"])
        assert res["reward"] == -1.0, (res["name"], res["reward"])
        assert host["SECRET"] not in json.dumps(res), res["name"]
        # a candidate's own failure, never one it could pass off as the harness's ("error")
        assert res["error"].startswith(("humaneval_paper: fail:", "humaneval_paper: timeout:")), \
            (res["name"], res["error"])
    by_name = {res["name"]: res for res in results}
    assert "memory limit of the whole sample" in by_name["memory across children"]["error"], \
        by_name["memory across children"]["error"]
    assert "bwrap" in by_name["always-equal object"]["error"]  # the bubblewrap sandbox ran them
    assert leftovers(host) == []
    for s in host["listeners"]:
        with pytest.raises(BlockingIOError):
            s.accept()
    # The store the programs tried to write is untouched.
    import sqlite3
    tables = [t for (t,) in sqlite3.connect(host["store_path"]).execute("SELECT name FROM sqlite_master")]
    assert tables == ["secret"]
    # The machine still works: a fresh run of the canonical solution passes.
    good = tmp_path / "good.jsonl"
    canonical = ("def has_close_elements(numbers, threshold):\n    for i, a in enumerate(numbers):\n"
                 "        for j, b in enumerate(numbers):\n            if i != j and abs(a - b) < threshold:\n"
                 "                return True\n    return False\n")
    good.write_text(json.dumps({"id": TASK, "completion": completion(canonical)}) + "\n")
    r = warmup("score", "--task", "humaneval_plus", "--data", DATA, "--python", sys.executable,
               "--task-option", f"variant={variant}", "--in", good, "--out", tmp_path / "good.out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "good.out").read_text())["correct"] is True


def test_missing_bubblewrap_is_refused_unless_unsafe_local(tmp_path):
    good = tmp_path / "in.jsonl"
    good.write_text(json.dumps({"id": TASK, "completion": completion(WRONG)}) + "\n")
    args = ["score", "--task", "humaneval_plus", "--data", DATA, "--python", sys.executable,
            "--in", good, "--out", tmp_path / "out.jsonl"]
    r = warmup(*args, "--reward-option", "bwrap=/nonexistent/bwrap", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    err = [l for l in r.stderr.splitlines() if "error" in l.lower()]
    assert len(err) == 1 and "bubblewrap" in err[0] and "unsafe-local" in err[0], r.stderr
    r = warmup(*args, "--reward-option", "bwrap=/nonexistent/bwrap", "--reward-option", "sandbox=unsafe-local",
               cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "out.jsonl").read_text())["correct"] is False


def descendants(root):
    """Live (not zombie) descendants of pid `root`: {pid: argv}."""
    parent, argv = {}, {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            if stat[0] != "Z":
                parent[int(pid)] = int(stat[1])
                argv[int(pid)] = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
    out, frontier = {}, {root}
    while frontier:
        frontier = {q for q, pp in parent.items() if pp in frontier and q not in out}
        out.update({q: argv[q] for q in frontier})
    return out


def alive(pids):
    live = []
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                live.append(pid)
        except OSError:
            pass
    return live


@pytest.mark.parametrize("warm", [True, False])
def test_killed_host_leaves_nothing_behind(tmp_path, warm):
    """SIGKILL to `warmup score` in the middle of sandboxed programs: every sandbox dies with it
    and nothing of theirs stays on the disk. Warm: the programs are forks of the zygotes (one per
    slot); cold: each runs candidate.py in a sandbox of its own."""
    import signal
    import time
    before = set(os.listdir("/tmp"))
    mark = "warmup-killed-" + secrets.token_hex(6)
    slow = f"import time, os\nopen('/tmp/{mark}', 'w').write('x' * 1000)\n" \
           "if os.fork() == 0:\n    time.sleep(120)\ntime.sleep(120)\n" + WRONG
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": TASK, "completion": completion(slow)}) + "\n" for _ in range(4)))
    env = dict(os.environ)
    env.pop("WARMUP_PLUGIN_PATH", None)
    from conftest import WARMUP
    p = subprocess.Popen([WARMUP, "score", "--task", "humaneval_plus", "--data", str(DATA), "--python", sys.executable,
                          "--task-option", "variant=plus_originfmt", "--reward-option", "timeout_s=120",
                          "--reward-option", f"warm_pool={str(warm).lower()}",
                          "--in", str(src), "--out", str(tmp_path / "out.jsonl")], env=env, cwd=tmp_path,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    program, running = (b"zygote.py", 6) if warm else (b"candidate.py", 2)  # warm: 2 x (zygote, PID 1, program)
    while sum(any(a.endswith(program) for a in c) for c in descendants(p.pid).values()) < running:
        assert time.time() < deadline and p.poll() is None, "the sandboxes never started"
        time.sleep(0.1)
    time.sleep(1.0)  # their children fork
    tree = descendants(p.pid)
    assert any(any(a.endswith(b"checker.py") for a in c) for c in tree.values())
    p.send_signal(signal.SIGKILL)
    p.wait()
    deadline = time.time() + 10
    while alive(tree) and time.time() < deadline:
        time.sleep(0.1)
    assert alive(tree) == [], {q: tree[q] for q in alive(tree)}
    # What the programs wrote (/tmp/MARK in their view) and unsafe-local's work dirs: not on the host.
    assert [n for n in set(os.listdir("/tmp")) - before if n == mark or n.startswith("warmup-sbx")] == []
