# he_candidate: runs in the candidate's sandbox (compiled into the plugin, after he_wire.py).
# `candidate.py ENTRY_POINT`: executes solution.py in fresh globals as HumanEval does, then serves
# calls: one request line on stdin ("ID TIMEOUT ENCODED_ARGS" with args [args, kwargs]), one
# answer line on stdout ("ID ok ENCODED_VALUE" or "ID err MESSAGE_JSON"). The first line is
# "0 ready null" or "0 load_error MESSAGE_JSON". Nothing here is trusted: the checker (another
# process) holds the tests and the expected values and decides; this process only answers calls.
import signal

_channels = {}


def _send(line):
    send_line(_channels["answers"], line)


_why = why


class _Timeout(BaseException):
    pass


def _alarm(signum, frame):
    raise _Timeout("per-input time limit")


def _serve(entry, code=None):
    """Runs the candidate's code (solution.py if `code` is None) and answers calls on fds 0 and 1."""
    _channels["requests"], _channels["answers"] = private_channels()
    try:
        if code is None:
            with open("solution.py") as f:
                code = f.read()
        elif type(code) is bytes:
            code = code.decode("utf-8")  # as open() reads solution.py: bad UTF-8 is a load error
        g = {}
        exec(compile(code, "solution.py", "exec"), g)
        fn = g[entry]
        if not callable(fn):
            raise TypeError("%s is not callable" % entry)
    except BaseException as e:
        _send("0 load_error " + dumps(_why(e)))
        return
    _send("0 ready null")
    for line in _channels["requests"]:
        rid, timeout, payload = line.decode().split(" ", 2)
        args, kwargs = decode(payload)
        timeout = float(timeout)
        try:
            if timeout > 0:
                signal.signal(signal.SIGALRM, _alarm)
                signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                out = fn(*args, **kwargs)
            finally:
                if timeout > 0:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            answer = rid + " ok " + dumps(encode(out))
        except BaseException as e:
            answer = rid + " err " + dumps(_why(e))
        _send(answer)


if not globals().get("_ZYGOTE"):  # he_zygote.py serves programs from forks of a warm process
    _serve(sys.argv[1])
