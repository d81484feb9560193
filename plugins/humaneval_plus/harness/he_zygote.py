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
import ctypes, fcntl, platform, resource, select, socket, struct

_libc = ctypes.CDLL(None, use_errno=True)
_NEWNS, _NEWUTS, _NEWIPC, _NEWUSER, _NEWPID, _NEWNET = 0x20000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000
_FLAGS = _NEWUSER | _NEWNS | _NEWPID | _NEWIPC | _NEWNET | _NEWUTS
_SYS_CLONE = {"x86_64": 56, "aarch64": 220}.get(platform.machine())
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REC, _MS_PRIVATE = 2, 4, 8, 16384, 1 << 18
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP = 1, 4, 24, 38, 22
_ARCH = {"x86_64": (0xC000003E, {"mount": 165, "umount2": 166, "unshare": 272, "setns": 308, "pivot_root": 155,
                                  "clone": 56, "capset": 126}),
         "aarch64": (0xC00000B7, {"mount": 40, "umount2": 39, "unshare": 97, "setns": 268, "pivot_root": 41,
                                   "clone": 220, "capset": 91})}.get(platform.machine())
_MOUNT_API = (428, 429, 430, 431, 432, 433, 442)  # open_tree, move_mount, fsopen, fsconfig, fsmount, fspick, mount_setattr
_CLONE3 = 435


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


def _lockdown():
    """The program keeps no capability in its user namespace (it could unmount its fresh /tmp
    and reach the zygote's, or grow a tmpfs outside any memory count) and cannot mount, make or
    join namespaces (seccomp: EPERM; clone3 ENOSYS, so libc falls back to clone, which is checked)."""
    if _ARCH is None:
        raise OSError("seccomp: unsupported architecture")
    arch, nr = _ARCH
    for cap in range(64):
        _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    _check(_libc.syscall(nr["capset"], header, data), "capset")
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    ld, jeq, jset, ret = 0x20, 0x15, 0x45, 0x06
    allow, kill, eperm, enosys = 0x7FFF0000, 0x80000000, 0x00050000 | 1, 0x00050000 | 38
    ns = _FLAGS | 0x02000000  # and CLONE_NEWCGROUP
    code = [(ld, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, kill), (ld, 0, 0, 0)]
    for n in [nr["mount"], nr["umount2"], nr["unshare"], nr["setns"], nr["pivot_root"], *_MOUNT_API]:
        code += [(jeq, 0, 1, n), (ret, 0, 0, eperm)]
    code += [(jeq, 0, 1, _CLONE3), (ret, 0, 0, enosys)]
    code += [(jeq, 1, 0, nr["clone"]), (ret, 0, 0, allow)]
    code += [(ld, 0, 0, 16), (jset, 0, 1, ns), (ret, 0, 0, eperm), (ret, 0, 0, allow)]  # clone's flags (args[0])
    raw = b"".join(struct.pack("HBBI", *i) for i in code)
    buf = ctypes.create_string_buffer(raw)

    class _Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = _Prog(len(code), ctypes.addressof(buf))
    _check(_libc.prctl(_PR_SET_SECCOMP, 2, ctypes.byref(prog), 0, 0), "seccomp")


def _read_all(fd):
    chunks = []
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def _init(job, code_fd, status_w):
    """PID 1 of the program's namespace: starts it, reaps, reports its wait status, ends (and with
    it every process left in the namespace)."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)  # PID 1 with default actions: signals from its namespace are ignored
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            cpu = max(1, int(job["cpu_s"]))
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
            code = _read_all(code_fd)  # the code reaches this process only: never the zygote's memory
            os.close(code_fd)
            _lockdown()
            os.close(status_w)
        except BaseException as e:  # the harness's failure, not the program's: "H" says so
            os.write(2, ("zygote: %s\n" % why(e)).encode())
            os.write(status_w, b"H")
            os._exit(125)
        try:
            _serve(job["entry_point"], code)
        finally:
            os._exit(0)
    _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)  # the program cannot open this process's fds (its status pipe)
    os.close(code_fd)
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


def _start(job, conn, code_fd):
    """The program's PID 1 (its pid here), connected on its fds 0 and 1; its wait status arrives
    on the returned pipe."""
    r, w = os.pipe()
    uid, gid = os.getuid(), os.getgid()
    pid = _clone()
    if pid == 0:
        try:
            os.dup2(conn, 0)
            os.dup2(conn, 1)
            code_fd, w = fcntl.fcntl(code_fd, fcntl.F_DUPFD, 3), fcntl.fcntl(w, fcntl.F_DUPFD, 3)
            lo, hi = sorted((code_fd, w))
            os.closerange(3, lo)  # everything else: the zygote's channel, other programs' fds
            os.closerange(lo + 1, hi)
            os.closerange(hi + 1, 1 << 16)
            _enter(uid, gid, int(job["tmpfs_mb"]))
            _init(job, code_fd, w)
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
    lines = Lines(host, fds=True)
    fds = lines.fds

    def fill():
        if not lines.fill():
            os._exit(0)  # the host is gone

    def line():
        while True:
            text = lines.line()
            if text is not None:
                return text
            fill()

    while True:
        text = line()
        if not text.startswith(b"P "):
            continue  # a "K" for a program already gone
        job = json.loads(text[2:])
        if len(fds) < 2:
            for fd in fds:
                os.close(fd)
            del fds[:]
            send_line(out, "E harness no connection and code with the job")
            continue
        conn, code_fd = fds[-2], fds[-1]
        for fd in fds[:-2]:
            os.close(fd)
        del fds[:]
        try:
            pid, status_r = _start(job, conn, code_fd)
        except OSError as e:
            os.close(conn)
            os.close(code_fd)
            send_line(out, "E harness " + why(e))
            continue
        os.close(conn)
        os.close(code_fd)
        killed = False
        pidfd = os.pidfd_open(pid)
        while True:
            ready, _, _ = select.select([host, pidfd], [], [])
            if pidfd in ready:
                break
            fill()
            while (text := lines.line()) is not None:
                if text.startswith(b"K"):
                    os.kill(pid, signal.SIGKILL)
                    killed = True
        os.close(pidfd)
        _, st = os.waitpid(pid, 0)
        data = os.read(status_r, 64)
        os.close(status_r)
        if data.startswith(b"H"):
            send_line(out, "E harness the program could not be set up (see its stderr)")
        elif len(data) == 4:
            send_line(out, "E " + _describe(struct.unpack("i", data)[0]))
        elif killed:
            send_line(out, "E signal %d" % signal.SIGKILL)
        else:  # its PID 1 ended without a word: it could not set the program up
            send_line(out, "E harness the program's namespace did not start (%s)" % _describe(st))


_zygote()
