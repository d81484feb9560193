# he_wire: the plain-data encoding of values between the candidate's process and the checker's
# (one JSON document per line). Only None, bool, int, float, str, bytes, complex, list, tuple,
# dict, set, frozenset and numpy's numeric scalars and arrays cross, each tagged by its exact type
# ({"$tuple": [...]}, {"$f": "nan"}, ...); anything else (a subclass, an object whose __eq__ lies,
# a generator) cannot be encoded, and the decoder builds nothing but those types, so no value of
# the candidate's own making reaches the checker.
import array, json, math, os, re, socket, sys

if hasattr(sys, "set_int_max_str_digits"):
    sys.set_int_max_str_digits(0)

_NP_KINDS = "biuf"  # bool, int, unsigned, float
_MAX_DEPTH = 200


class WireError(Exception):
    pass


_BIG = 1 << 1024


_NUMBERS = {int, float}


def _plain(x):
    """True if the list x is its own encoding (C-level passes, no Python call per element): only
    str, only bool, or ints under 1,024 bits and finite floats."""
    kinds = set(map(type, x))
    if len(kinds) == 1 and (str in kinds or bool in kinds):
        return True
    if not kinds or not kinds <= _NUMBERS:
        return not kinds
    try:
        return -_BIG < min(x) and max(x) < _BIG and (float not in kinds or all(map(math.isfinite, x)))
    except (OverflowError, TypeError):
        return False


def encode(x, depth=0):
    if depth > _MAX_DEPTH:
        raise WireError("value nested too deeply")
    t = type(x)
    if t is list and _plain(x):
        return x
    if t is int and x.bit_length() > 1024:  # hex: linear time both ways (decimal is quadratic)
        return {"$int": hex(x)}
    if x is None or t is bool or t is int or t is str:
        return x
    if t is float:
        return x if math.isfinite(x) else {"$f": repr(x)}
    if t is list:
        return [encode(i, depth + 1) for i in x]
    if t is tuple:
        return {"$tuple": [encode(i, depth + 1) for i in x]}
    if t is set or t is frozenset:
        return {"$" + t.__name__: [encode(i, depth + 1) for i in x]}
    if t is dict:
        return {"$dict": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in x.items()]}
    if t is bytes:
        return {"$bytes": x.hex()}
    if t is complex:
        return {"$complex": [encode(x.real), encode(x.imag)]}
    np = sys.modules.get("numpy")
    if np is not None and getattr(t, "__module__", "") == "numpy":
        if isinstance(x, np.ndarray) and t is np.ndarray and x.dtype.kind in _NP_KINDS:
            return {"$ndarray": [x.dtype.name, list(x.shape), encode(x.tolist(), depth + 1)]}
        if isinstance(x, np.generic) and x.dtype.kind in _NP_KINDS:
            return {"$np": [x.dtype.name, encode(x.item(), depth + 1)]}
    raise WireError("cannot pass a value of type %s" % t.__name__)


_HEX = re.compile(r"-?0x[0-9a-f]+")
_NP_NAMES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
             "float16", "float32", "float64"}


def _hook(d):
    if len(d) != 1:
        raise WireError("untagged object")
    (k, v), = d.items()
    if k == "$tuple" and type(v) is list:
        return tuple(v)
    if k == "$set" and type(v) is list:
        return set(v)
    if k == "$frozenset" and type(v) is list:
        return frozenset(v)
    if k == "$dict" and type(v) is list and all(type(p) is list and len(p) == 2 for p in v):
        return {p[0]: p[1] for p in v}
    if k == "$int" and type(v) is str and _HEX.fullmatch(v):
        return int(v, 16)
    if k == "$f" and v in ("nan", "inf", "-inf"):
        return float(v)
    if k == "$bytes" and type(v) is str:
        return bytes.fromhex(v)
    if k == "$complex" and type(v) is list and len(v) == 2 and all(type(i) in (int, float) for i in v):
        return complex(v[0], v[1])
    if k in ("$np", "$ndarray") and type(v) is list and v and v[0] in _NP_NAMES:
        import numpy as np
        if k == "$np" and len(v) == 2 and type(v[1]) in (bool, int, float):
            return np.dtype(v[0]).type(v[1])
        if k == "$ndarray" and len(v) == 3 and type(v[1]) is list and all(type(i) is int and i >= 0 for i in v[1]):
            return np.array(v[2], dtype=np.dtype(v[0])).reshape(v[1])
    raise WireError("unknown or malformed tag %r" % k[:20])


def _no_constant(name):
    raise WireError("bare %s" % name)


def decode(text):
    """Decodes one encoded value; raises WireError (or ValueError/RecursionError) on anything else."""
    return json.loads(text, object_hook=_hook, parse_constant=_no_constant)


def dumps(obj):
    return json.dumps(obj, allow_nan=False, separators=(",", ":"))


def private_channels():
    """(reader, fd): the process's stdin and stdout kept private; fds 0 and 1 (and sys.stdin,
    sys.stdout) become /dev/null, so code run here can print or read without touching them."""
    reader, out = os.fdopen(os.dup(0), "rb"), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    sys.stdin, sys.stdout = open(os.devnull), open(os.devnull, "w")
    return reader, out


def send_line(fd, line):
    data = (line + "\n").encode("utf-8", "surrogatepass")
    while data:
        data = data[os.write(fd, data):]


def why(e):
    """'Type: message', at most 300 characters, whatever the exception's __str__ does."""
    try:
        text = type(e).__name__ + (": " + str(e) if str(e) else "")
    except BaseException:
        text = type(e).__name__
    return text[:300]


class Lines:
    """Lines from a socket, read by offset (a read may hold thousands; a line may be megabytes)."""

    def __init__(self, sock, cap=None, fds=False):
        self.sock, self.cap, self.with_fds = sock, cap, fds
        self.buf, self.pos, self.scan, self.eof, self.fds = bytearray(), 0, 0, False, []

    def fill(self):
        """One read (blocking unless the socket is not); False at EOF."""
        if self.with_fds:
            data, anc, _, _ = self.sock.recvmsg(1 << 16, socket.CMSG_SPACE(16 * 4))
            for level, kind, d in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    a = array.array("i")
                    a.frombytes(d[: len(d) - len(d) % 4])
                    self.fds.extend(a)
        else:
            data = self.sock.recv(1 << 16)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def line(self):
        """The next whole line (bytes, without the newline) or None; ValueError past the cap."""
        i = self.buf.find(b"\n", max(self.pos, self.scan))
        if i < 0:
            self.scan = len(self.buf)
            if self.cap is not None and len(self.buf) - self.pos > self.cap:
                raise ValueError("an answer longer than %d bytes" % self.cap)
            return None
        out = bytes(self.buf[self.pos:i])
        self.pos = self.scan = i + 1
        if self.pos > (1 << 16) and 2 * self.pos > len(self.buf):
            del self.buf[: self.pos]
            self.pos = self.scan = 0
        return out
