# he_checker: the trusted side of a HumanEval(+) check (compiled into the plugin, after
# he_wire.py). A long-lived process of its own (one per worker slot, sandboxed apart from every
# candidate). Two channels:
#   the host (stdin socket / stdout): "F" (carrying, as SCM_RIGHTS, this job's connection to its
#     candidate), "J {job}", "X {expected}", "D REASON" (the candidate is gone and why) in; "E
#     {expected}", "K REASON" (kill the candidate: it broke a limit) and "V {verdict}" out;
#   the candidate (the received connection, straight to its stdin and stdout): "ID TIMEOUT ARGS"
#     out, "ID ok|err|ready|load_error PAYLOAD" back. Calls never cross the host; this process
#     enforces the per-call limit (TIMEOUT + 1 s from the previous answer, or from the call when
#     none was pending), the candidate's wall clock (the job's wall_s: the time spent waiting for
#     it, its start and its calls; this process's own work, such as a test's reference function,
#     is not the candidate's) and the answer size cap (argv[1] bytes); the host the memory limit
#     and a bound on the whole check. Only bytes are read from the candidate (recv: any fd it sends is dropped).
# The tests, the expected outputs and the comparison live only here; what the candidate returns
# arrives as plain data (he_wire.decode), so it can neither read the answer key nor patch the
# comparison nor hand over an object that lies about equality.
#   check:   HumanEval's check(candidate) (base and plus_originfmt tests), run here with the
#            problem's prompt as its globals (helpers such as poly, encode_cyclic) and `candidate`
#            a proxy that calls the candidate's function in its process;
#   compare: EvalPlus's base and plus inputs, outputs compared with the canonical solution's as
#            EvalPlus's unsafe_execute does (floats within atol, find_zero by its polynomial);
#   record:  the canonical solution's outputs on those inputs ("E [base, plus]" before "V").
import hashlib, select, socket, time

_host = socket.socket(fileno=os.dup(0))
_out = os.dup(1)
_null = os.open(os.devnull, os.O_RDWR)
os.dup2(_null, 0)
os.dup2(_null, 1)
sys.stdin, sys.stdout = open(os.devnull), open(os.devnull, "w")
_ANSWER_CAP = int(sys.argv[1]) if len(sys.argv) > 1 else 64 << 20


def _emit(line):
    send_line(_out, line)


_why = why


class CandidateDead(BaseException):  # not an Exception: test code's `except Exception` can't hide it
    pass


class CandidateError(Exception):
    pass


_hostlines = Lines(_host, fds=True)
_state = {"dead": None, "gone": None, "id": 0, "cand": None, "queue": bytearray(), "answered": 0, "last": 0.0,
          "waited": 0.0, "stale": 0, "wall_s": float("inf")}


def _recv():
    """The host's next line (blocking)."""
    while True:
        line = _hostlines.line()
        if line is not None:
            return line.decode("utf-8", "replace")
        if not _hostlines.fill():
            os._exit(0)  # the host is gone


def _take_candidate():
    """This job's connection to its candidate (the newest fd received; older ones are closed)."""
    fds, _hostlines.fds = _hostlines.fds, []
    for fd in fds[:-1]:
        os.close(fd)
    if not fds:
        raise ValueError("no connection to the candidate")
    sock = socket.socket(fileno=fds[-1])
    sock.setblocking(False)
    _state["cand"] = Lines(sock, cap=_ANSWER_CAP)
    _state["queue"], _state["answered"], _state["gone"] = bytearray(), 0, None


def _drop_candidate():
    c = _state["cand"]
    if c is not None:
        c.sock.close()
    _state["cand"] = None


def _dead(reason):
    _state["dead"] = reason or "ended"
    raise CandidateDead(_state["dead"])


def _kill(why):
    """The candidate broke a limit: the host kills it and says so ("D"), which ends the call."""
    if _state["gone"] is None:
        _emit("K " + why.replace("\n", " "))
    while _state["gone"] is None:
        line = _recv()
        if line.startswith("D "):
            _state["gone"] = line[2:]
    _dead(_state["gone"])


def _wait(deadline):
    """Blocks until the candidate or the host has something (or the deadline); flushes calls.
    Once the candidate is gone, what it sent before is still read to its end (EOF)."""
    c, q = _state["cand"], _state["queue"]
    if c.eof:  # all it sent is read: its end, and why, come from the host
        until = time.monotonic() + 1.0  # it probably exited: the host says how within milliseconds
        while _state["gone"] is None and time.monotonic() < until:
            if select.select([_host], [], [], max(0.0, until - time.monotonic()))[0]:
                _read_host()
        _kill("closed its answer channel")  # still running without its channel: the host kills it
    if q and _state["gone"] is None:
        try:
            n = c.sock.send(q)
            del q[:n]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            q.clear()  # it is gone: its EOF (and the host's "D") follow
    if _state["gone"] is not None:  # dead: its socket closes at once (the host killed every holder)
        r, _, _ = select.select([c.sock], [], [], 2.0)
        if not r:
            _dead(_state["gone"])
        r, w = [c.sock], []
    else:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        r, w, _ = select.select([c.sock, _host], [c.sock] if q else [], [], timeout)
    if c.sock in r:
        try:
            c.fill()
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            c.eof = True
    if _host in r:
        _read_host()
    return bool(r or w)


def _read_host():
    """Reads what the host sent; during a job only "D" (the candidate is gone, and why) matters."""
    if not _hostlines.fill():
        os._exit(0)  # the host is gone
    while True:
        line = _hostlines.line()
        if line is None:
            return
        if line.startswith(b"D "):
            _state["gone"] = line[2:].decode("utf-8", "replace")


def _await(rid, timeout):
    """The candidate's answer to call `rid` (0: its start), as (kind, payload). The time spent
    here, waiting for the candidate, is its time: over the job's wall_s in all, it is killed."""
    c = _state["cand"]
    start = time.monotonic()  # everything from here to the answer is the candidate's time
    try:
        while True:
            now = time.monotonic()
            if _state["waited"] + (now - start) >= _state["wall_s"]:
                _kill("timeout (wall-clock limit, %d s)" % int(_state["wall_s"] + 0.5))
            deadline = None if timeout <= 0 or rid == 0 else _state["last"] + timeout + 1.0
            if deadline is not None and now >= deadline:  # also while it floods us with junk
                _kill("time limit per call exceeded")
            try:
                line = c.line()
            except ValueError as e:
                _kill(str(e))
            if line is None:
                left = start + _state["wall_s"] - _state["waited"]
                _wait(left if deadline is None else min(deadline, left))
                continue
            line = line.decode("utf-8", "replace")  # answers are ASCII JSON; junk fails to decode later
            parts = line.split(" ", 2)
            if len(parts) != 3 or not parts[0].isdigit() or len(parts[0]) > 18:
                raise CandidateError("malformed answer from the candidate")
            got = int(parts[0])
            if got < rid:  # a late or repeated answer to an earlier call: it neither counts nor resets the clock
                _state["stale"] += 1
                if _state["stale"] > 1000:
                    raise CandidateError("malformed answers from the candidate (more than 1000 stale ones)")
                continue
            if got != rid:
                raise CandidateError("answer out of order")
            if rid > 0:  # the start ("0 ready") is no call
                _state["answered"], _state["last"] = rid, time.monotonic()
            return parts[1], parts[2]
    finally:
        _state["waited"] += time.monotonic() - start


def _message(payload):
    try:
        m = decode(payload)
    except BaseException:
        m = None
    return m if type(m) is str else "malformed error message"


def _send(args, kwargs, timeout):
    """Queues one call (answered in order); returns its id."""
    _state["id"] += 1
    rid = _state["id"]
    if rid - 1 == _state["answered"]:  # nothing pending: its limit runs from now
        _state["last"] = time.monotonic()
    line = "%d %r %s\n" % (rid, float(timeout), dumps([encode(list(args)), encode(dict(kwargs))]))
    _state["queue"] += line.encode()
    return rid


def _result(rid, timeout):
    """The candidate's result of call `rid`; raises CandidateError / CandidateDead."""
    if _state["dead"] is not None:
        raise CandidateDead(_state["dead"])
    kind, payload = _await(rid, timeout)
    if kind == "ok":
        try:
            return decode(payload)
        except BaseException as e:
            raise CandidateError("undecodable result: " + _why(e))
    if kind == "err":
        raise CandidateError(_message(payload))
    raise CandidateError("malformed answer from the candidate")


def _call(args, kwargs, timeout):
    if _state["dead"] is not None:
        raise CandidateDead(_state["dead"])
    return _result(_send(args, kwargs, timeout), timeout)


def _proxy(timeout):
    def candidate(*args, **kwargs):
        return _call(args, kwargs, timeout)
    return candidate


def _pipelined(inputs, timeout):
    """Sends every call at once (the inputs are known in advance) and yields each result (or the
    exception it raised) in order: no round trip per input."""
    rids = []
    for inp in inputs:
        try:
            rids.append(_send(inp, {}, timeout))
        except BaseException as e:  # an argument that cannot be encoded
            rids.append(e)
    for rid in rids:
        if isinstance(rid, BaseException):
            yield rid
            continue
        try:
            yield _result(rid, timeout)
        except BaseException as e:
            yield e


def _ready():
    """None if the candidate's code loaded, else why not."""
    try:
        kind, payload = _await(0, 0.0)
    except CandidateDead as e:
        return "no answer (" + str(e) + ")"
    except BaseException as e:  # whatever the candidate sent, its own failure
        return _why(e)
    if kind == "ready":
        return None
    return _message(payload) if kind == "load_error" else "malformed start"


def _is_floats(x):  # EvalPlus evaluate.py
    import numpy as np
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    if isinstance(x, np.ndarray):
        return x.dtype == np.float64 or x.dtype == np.float32
    return False


def _poly(xs, x):
    import math
    return sum([coeff * math.pow(x, i) for i, coeff in enumerate(xs)])


def _same(entry_point, inp, out, exp, atol):  # EvalPlus unsafe_execute, HumanEval part
    import numpy as np
    if entry_point == "find_zero":
        assert abs(_poly(*inp, out)) <= atol
        return
    exact_match = out == exp
    if atol == 0 and _is_floats(exp):
        atol = 1e-6
    if not exact_match and atol != 0:
        assert type(out) == type(exp)
        if isinstance(exp, (list, tuple)):
            assert len(out) == len(exp)
        assert np.allclose(out, exp, rtol=1e-07, atol=atol)
    else:
        assert exact_match


_compiled = {}  # source -> code object, the 16 newest: a GRPO group checks one task many times


def _code(source, name):
    code = _compiled.get(source)
    if code is None:
        code = _compiled[source] = compile(source, name, "exec")  # a test's literals: tens of ms
        if len(_compiled) > 16:
            del _compiled[next(iter(_compiled))]
    return code


_expected = {}  # sha256 of an "X" line -> its decoded outputs, the newest only (read only by _same)


def _expected_outputs(text):
    """The decoded expected outputs: decoding 100 MB of them takes seconds, and a GRPO group
    checks one task's completions one after another."""
    key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    value = _expected.get(key)
    if value is None:
        _expected.clear()  # first: two sets of 100 MB of outputs would not fit in the checker's memory limit
        value = _expected[key] = decode(text)
    return value


def _check(job):
    g = {}
    try:
        exec(_code(job.get("prompt", ""), "prompt.py"), g)
    except BaseException as e:
        return {"status": "error", "reason": "the problem's prompt does not run: " + _why(e)}
    why = _ready()
    if why is not None:
        return {"status": "fail", "reason": "load: " + why}
    candidate = _proxy(0.0)
    g[job["entry_point"]] = candidate
    try:
        exec(_code(job["test"], "test.py"), g)
        g["check"](candidate)
    except CandidateDead as e:
        return {"status": "fail", "reason": "candidate: " + str(e)}
    except BaseException as e:
        return {"status": "fail", "reason": _why(e)}
    return {"status": "pass"}


def _compare(job, expected):
    import numpy  # noqa: F401  the comparison needs it: missing, the checker fails (an error), not the candidate
    sections = ("base", "plus")
    why = _ready()
    if why is not None:
        return {"status": "fail", "reason": "load: " + why, "base": [0, len(job["base"])], "plus": [0, len(job["plus"])]}
    timeout = float(job.get("input_timeout_s", 4.0))
    result, first = {}, None
    for k, s in enumerate(sections):
        inputs, passed = job[s], 0
        for i, out in enumerate(_pipelined(inputs, timeout)):
            try:
                if isinstance(out, BaseException):
                    raise out
                _same(job["entry_point"], inputs[i], out, expected[k][i], job["atol"])
                passed += 1
            except BaseException as e:
                first = first or "%s input %d: %s" % (s, i, _why(e))
                if job.get("fast"):
                    break
        result[s] = [passed, len(inputs)]
        if first and job.get("fast"):
            break
    for s in sections:
        result.setdefault(s, [0, len(job[s])])
    ok = all(result[s][0] == result[s][1] for s in sections)
    result.update({"status": "pass" if ok else "fail", "reason": first})
    return result


def _record(job):
    why = _ready()
    if why is not None:
        return {"status": "error", "reason": "canonical solution does not load: " + why}
    outs = []
    for s in ("base", "plus"):
        outs.append([])
        for i, out in enumerate(_pipelined(job[s], float(job.get("input_timeout_s", 60.0)))):
            if isinstance(out, BaseException):
                return {"status": "error", "reason": "canonical solution, %s input %d: %s" % (s, i, _why(out))}
            outs[-1].append(out)
    _emit("E " + dumps(encode(outs)))
    return {"status": "ok"}


def _main():
    while True:
        line = _recv()
        if not line.startswith("J "):
            continue  # a leftover of an earlier job
        job = json.loads(line[2:])
        _state["dead"], _state["id"], _state["waited"], _state["stale"] = None, 0, 0.0, 0
        _state["wall_s"] = float(job.get("wall_s", float("inf")))
        try:
            _take_candidate()
            if job["mode"] == "check":
                verdict = _check(job)
            elif job["mode"] == "compare":
                x = _recv()
                if not x.startswith("X "):
                    raise ValueError("expected outputs missing")
                verdict = _compare(job, _expected_outputs(x[2:]))
            else:
                verdict = _record(job)
        except BaseException as e:
            verdict = {"status": "error", "reason": "checker: " + _why(e)}
        _drop_candidate()
        _emit("V " + json.dumps(verdict))


_main()
