# he_checker: the trusted side of a HumanEval(+) check (compiled into the plugin, after
# he_wire.py). A long-lived process of its own (one per worker slot, sandboxed apart from every
# candidate): the host sends it a job ("J {...}"), it calls the candidate through the host ("C ID
# TIMEOUT ARGS" out, "R ID ok|err|ready|load_error PAYLOAD" or "D REASON" back) and ends the job
# with "V {verdict}". The tests, the expected outputs and the comparison live only here; what the
# candidate returns arrives as plain data (he_wire.decode), so it can neither read the answer key
# nor patch the comparison nor hand over an object that lies about equality.
#   check:   HumanEval's check(candidate) (base and plus_originfmt tests), run here with the
#            problem's prompt as its globals (helpers such as poly, encode_cyclic) and `candidate`
#            a proxy that calls the candidate's function in its process;
#   compare: EvalPlus's base and plus inputs, outputs compared with the canonical solution's as
#            EvalPlus's unsafe_execute does (floats within atol, find_zero by its polynomial);
#   record:  the canonical solution's outputs on those inputs ("E [base, plus]" before "V").
_in, _out = private_channels()


def _emit(line):
    send_line(_out, line)


_why = why


class CandidateDead(BaseException):  # not an Exception: test code's `except Exception` can't hide it
    pass


class CandidateError(Exception):
    pass


_state = {"dead": None, "id": 0}


def _recv():
    line = _in.readline()
    if not line:
        os._exit(0)  # the host is gone
    return line.decode("utf-8", "replace").rstrip("\n")  # answers are ASCII JSON; junk fails to decode later


def _await(rid):
    """The candidate's answer to call `rid` (0: its start), as (kind, payload)."""
    while True:
        line = _recv()
        if line.startswith("D "):
            _state["dead"] = line[2:] or "ended"
            raise CandidateDead(_state["dead"])
        if not line.startswith("R "):
            continue
        parts = line[2:].split(" ", 2)
        if len(parts) != 3 or not parts[0].isdigit() or len(parts[0]) > 18:
            raise CandidateError("malformed answer from the candidate")
        got = int(parts[0])
        if got < rid:
            continue  # a late answer to an earlier call
        if got != rid:
            raise CandidateError("answer out of order")
        return parts[1], parts[2]


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
    _emit("C %d %r %s" % (rid, float(timeout), dumps([encode(list(args)), encode(dict(kwargs))])))
    return rid


def _result(rid):
    """The candidate's result of call `rid`; raises CandidateError / CandidateDead."""
    if _state["dead"] is not None:
        raise CandidateDead(_state["dead"])
    kind, payload = _await(rid)
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
    return _result(_send(args, kwargs, timeout))


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
            yield _result(rid)
        except BaseException as e:
            yield e


def _ready():
    """None if the candidate's code loaded, else why not."""
    try:
        kind, payload = _await(0)
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


def _check(job):
    g = {}
    try:
        exec(compile(job.get("prompt", ""), "prompt.py", "exec"), g)
    except BaseException as e:
        return {"status": "error", "reason": "the problem's prompt does not run: " + _why(e)}
    why = _ready()
    if why is not None:
        return {"status": "fail", "reason": "load: " + why}
    candidate = _proxy(0.0)
    g[job["entry_point"]] = candidate
    try:
        exec(compile(job["test"], "test.py", "exec"), g)
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
        _state["dead"], _state["id"] = None, 0
        try:
            if job["mode"] == "check":
                verdict = _check(job)
            elif job["mode"] == "compare":
                x = _recv()
                if not x.startswith("X "):
                    raise ValueError("expected outputs missing")
                verdict = _compare(job, decode(x[2:]))
            else:
                verdict = _record(job)
        except BaseException as e:
            verdict = {"status": "error", "reason": "checker: " + _why(e)}
        _emit("V " + json.dumps(verdict))


_main()
