# he_harness: runs inside the sandbox (compiled into the plugin). Reads config.json, then
#   mode "check":    exec(code + test + "check(entry_point)") with fresh globals, like HumanEval;
#   mode "expected": run the canonical solution on base/plus inputs, pickle the outputs;
#   mode "compare":  run the candidate on base/plus inputs and compare with the pickled expected
#                    outputs exactly as EvalPlus's unsafe_execute does (floats within atol).
# The verdict is one JSON line prefixed with a nonce, written to a private copy of stdout; the
# candidate's own stdout goes to /dev/null. The candidate runs in this interpreter (as in
# EvalPlus), so a deliberately adversarial one could forge its verdict; it cannot leave the sandbox.
import json, os, sys

_nonce = os.environ.pop("WARMUP_SANDBOX_NONCE", "")
_verdict_fd = os.dup(1)
_null = os.open(os.devnull, os.O_WRONLY)
os.dup2(_null, 1)
sys.stdout = open(os.devnull, "w")
with open("config.json") as f:
    _cfg = json.load(f)
os.remove("config.json")
for _s in ("base", "plus"):  # inputs come as JSON text so that big integers stay integers
    if _s + "_json" in _cfg:
        _cfg[_s] = json.loads(_cfg.pop(_s + "_json"))


def _emit(obj):
    os.write(_verdict_fd, (_nonce + json.dumps(obj) + "\n").encode())


def _why(e):
    text = type(e).__name__ + (": " + str(e) if str(e) else "")
    return text[:300]


class _Timeout(BaseException):
    pass


def _alarm(signum, frame):
    raise _Timeout("per-input time limit")


def _call(fn, inp, limit_s):
    import copy, signal
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, limit_s)
    try:
        return fn(*copy.deepcopy(inp))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _is_floats(x):
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


def _load(code, entry_point):
    g = {}
    exec(compile(code, "solution.py", "exec"), g)
    return g[entry_point]


def main():
    mode, code = _cfg["mode"], _cfg["code"]
    if mode == "check":
        g = {}
        exec(compile(code + "\n" + _cfg["test"] + "\n" + "check(" + _cfg["entry_point"] + ")\n", "solution.py", "exec"), g)
        return _emit({"pass": True})
    sections = ("base", "plus")
    try:
        fn = _load(code, _cfg["entry_point"])
    except BaseException as e:
        return _emit({"load_error": _why(e), "base": [0, len(_cfg["base"])], "plus": [0, len(_cfg["plus"])]})
    limit = float(_cfg.get("input_timeout_s", 4.0))
    if mode == "expected":
        import pickle
        out = {s: [_call(fn, inp, limit) for inp in _cfg[s]] for s in sections}
        with open("expected.pkl", "wb") as f:
            pickle.dump(out, f)
        return _emit({"expected": True})
    import pickle
    with open("expected.pkl", "rb") as f:
        expected = pickle.load(f)
    os.remove("expected.pkl")
    result, first = {}, None
    for s in sections:
        inputs, passed = _cfg[s], 0
        for i, inp in enumerate(inputs):
            try:
                out = _call(fn, inp, limit)
                _same(_cfg["entry_point"], inp, out, expected[s][i], _cfg["atol"])
                passed += 1
            except BaseException as e:
                first = first or "%s input %d: %s" % (s, i, _why(e))
                if _cfg.get("fast"):
                    break
        result[s] = [passed, len(inputs)]
        if first and _cfg.get("fast"):
            break
    for s in sections:
        result.setdefault(s, [0, len(_cfg[s])])
    result["first_failure"] = first
    _emit(result)


try:
    main()
except BaseException as e:
    _emit({"pass": False, "error": _why(e)})
