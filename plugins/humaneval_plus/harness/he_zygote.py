# he_zygote: the warm candidate pool (compiled into the plugin, after he_wire.py and
# he_candidate.py with _ZYGOTE set). One long-lived process per worker slot, in the candidate's
# bubblewrap sandbox and uid, with the harness already imported. For each program the host sends
# "P {job}" carrying (SCM_RIGHTS) the program's connection to the checker; this process clones a
# child into fresh user, mount, PID, IPC, network and UTS namespaces (the child maps its own uid,
# mounts new size-limited tmpfs on /tmp, /var/tmp and /dev/shm and a new /proc, and as PID 1 of
# its namespace forks the program: fresh globals from a copy of this clean interpreter, its own
# RLIMIT_CPU). Nothing a program does reaches the next one: its memory is its own (a fork), its
# files, processes, System V objects and sockets die with its namespaces, and it cannot see or
# signal this process (another PID namespace; this process is not dumpable). "K" from the host
# kills the program (SIGKILL to its PID 1 from outside: the whole namespace dies); "E exit N" or
# "E signal N" reports its end, after everything of it is gone. At start "Z ok", or "Z no WHY"
# when the namespaces are refused (the host then starts each program cold).
import array, ctypes, platform, resource, select, socket, struct

_libc = ctypes.CDLL(None, use_errno=True)
_NEWNS, _NEWUTS, _NEWIPC, _NEWUSER, _NEWPID, _NEWNET = 0x20000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000
_FLAGS = _NEWUSER | _NEWNS | _NEWPID | _NEWIPC | _NEWNET | _NEWUTS
_SYS_CLONE = {"x86_64": 56, "aarch64": 220}.get(platform.machine())
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REC, _MS_PRIVATE = 2, 4, 8, 16384, 1 << 18
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE = 1, 4


def _check(ret, what):
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, "%s: %s" % (what, os.strerror(e)))


def _mount(source, target, fstype, flags, data):
    enc = lambda s: None if s is None else s.encode()
    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), "mount " + target)


def _clone():
    """fork() into new namespaces: the child (PID 1 of its own) gets 0."""
    if _SYS_CLONE is None:
        raise OSError("clone: unsupported architecture")
    pid = _libc.syscall(_SYS_CLONE, ctypes.c_ulong(_FLAGS | signal.SIGCHLD), None, None, None, None)
    if pid < 0:
        e = ctypes.get_errno()
        raise OSError(e, "clone: " + os.strerror(e))
    return pid


def _write(path, text):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _enter(uid, gid, tmpfs_mb):
    """In the cloned child: its own ids, private mounts, fresh tmpfs and /proc."""
    _libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)  # else its /proc files are root's (the zygote is not dumpable)
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", "%d %d 1" % (uid, uid))
    _write("/proc/self/gid_map", "%d %d 1" % (gid, gid))
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE, None)
    for d in ("/tmp", "/var/tmp", "/dev/shm"):
        _mount("tmpfs", d, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=%dm,mode=1777" % tmpfs_mb)
    try:  # a /proc of this PID namespace; where refused the old one stays (it shows no process it can signal)
        _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None)
    except OSError:
        pass
    os.chdir("/tmp")


def _init(job, status_w):
    """PID 1 of the program's namespace: starts it, reaps, reports its wait status, ends (and with
    it every process left in the namespace)."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    pid = os.fork()
    if pid == 0:
        os.close(status_w)
        os.setsid()
        cpu = max(1, int(job["cpu_s"]))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        try:
            _serve(job["entry_point"], job["code"])
        finally:
            os._exit(0)
    os.close(0)  # the connection is the program's alone: when it closes its end, the checker sees it
    os.close(1)
    status = 0
    while True:
        try:
            p, st = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if p == pid:
            status = st
            break
    os.write(status_w, struct.pack("i", status))
    os._exit(0)


def _start(job, conn):
    """The program's PID 1 (its pid here), connected on its fds 0 and 1; its wait status arrives
    on the returned pipe."""
    r, w = os.pipe()
    uid, gid = os.getuid(), os.getgid()
    pid = _clone()
    if pid == 0:
        try:
            os.dup2(conn, 0)
            os.dup2(conn, 1)
            os.closerange(3, w)
            os.closerange(w + 1, 1 << 16)
            _enter(uid, gid, int(job["tmpfs_mb"]))
            _init(job, w)
        except BaseException as e:
            try:
                os.write(2, ("zygote: %s\n" % why(e)).encode())
            finally:
                os._exit(126)
    os.close(w)
    return pid, r


def _describe(status):
    if os.WIFSIGNALED(status):
        return "signal %d" % os.WTERMSIG(status)
    return "exit %d" % (os.WEXITSTATUS(status) if os.WIFEXITED(status) else 255)


def _probe(tmpfs_mb):
    """None if a program can be started in fresh namespaces here, else why not."""
    r, w = os.pipe()
    uid, gid = os.getuid(), os.getgid()
    try:
        pid = _clone()
    except OSError as e:
        return str(e)
    if pid == 0:
        code = 0
        try:
            _enter(uid, gid, tmpfs_mb)
        except BaseException as e:
            os.write(w, why(e).encode()[:300])
            code = 1
        os._exit(code)
    os.close(w)
    _, st = os.waitpid(pid, 0)
    msg = os.read(r, 400).decode("utf-8", "replace")
    os.close(r)
    return None if st == 0 else (msg or _describe(st))


def _zygote():
    host = socket.socket(fileno=os.dup(0))
    out = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    tmpfs_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    no = _probe(tmpfs_mb)
    send_line(out, "Z ok" if no is None else "Z no " + no.replace("\n", " "))
    if no is not None:
        return
    buf, fds = bytearray(), []

    def fill():
        data, anc, _, _ = host.recvmsg(1 << 16, socket.CMSG_SPACE(16 * 4))
        for level, kind, d in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                a = array.array("i")
                a.frombytes(d[: len(d) - len(d) % 4])
                fds.extend(a)
        if not data:
            os._exit(0)  # the host is gone
        buf.extend(data)

    def line():
        while True:
            i = buf.find(b"\n")
            if i >= 0:
                text = bytes(buf[:i])
                del buf[: i + 1]
                return text
            fill()

    while True:
        text = line()
        if not text.startswith(b"P "):
            continue  # a "K" for a program already gone
        job = json.loads(text[2:])
        if not fds:
            send_line(out, "E exit 125")
            continue
        conn = fds.pop()
        for fd in fds:
            os.close(fd)
        del fds[:]
        try:
            pid, status_r = _start(job, conn)
        except OSError as e:
            os.close(conn)
            send_line(out, "E exit 126")
            continue
        os.close(conn)
        pidfd = os.pidfd_open(pid)
        while True:
            ready, _, _ = select.select([host, pidfd], [], [])
            if pidfd in ready:
                break
            fill()
            while b"\n" in buf:
                if line().startswith(b"K"):
                    os.kill(pid, signal.SIGKILL)
        os.close(pidfd)
        _, st = os.waitpid(pid, 0)
        data = os.read(status_r, 4)
        os.close(status_r)
        if len(data) == 4:
            st = struct.unpack("i", data)[0]
        send_line(out, "E " + _describe(st))


_zygote()
