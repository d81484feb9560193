// sandbox: runs one untrusted program (a Python interpreter on a script) in its own process with
// its own view of the filesystem, and a pool that runs N of them at a time.
//
// Two modes (SandboxConfig::mode):
//  - "bwrap" (default): bubblewrap (the Debian package `bubblewrap`, the sandbox of Flatpak) builds
//    the program's world: new PID, network, IPC and UTS namespaces; a read-only view of /usr, the
//    /bin-/lib links, ld.so.cache and the interpreter's own prefixes (SandboxConfig::ro_paths), and
//    nothing else of the host (no /root, no $HOME, no /etc/shadow, no store, no run directory, no
//    host sockets); /proc of its own PID namespace; a minimal /dev; private size-limited tmpfs at
//    /tmp (the working directory, holding the job's files read-only), /var/tmp and /dev/shm, all
//    nosuid/nodev and gone when the program ends, also when the host is killed (nothing is
//    written on the host's disk). As root the program then runs as an unprivileged uid (one per
//    slot, via setpriv: no capabilities, no groups), so RLIMIT_NPROC binds and it cannot signal or
//    trace anything of the host; not root, bwrap adds a user namespace.
//  - "unsafe-local": today's own containment without bubblewrap, for machines without it (weaker:
//    the host's filesystem stays readable; see README "Sandbox"). Must be chosen explicitly.
// Both: rlimits (CPU, address space, file size, open files, processes, no core), no_new_privs, a
// seccomp filter (no AF_INET/AF_INET6 sockets, no io_uring), setsid, a clean environment, SIGKILL
// of everything at the wall-clock limit and when the host dies (PR_SET_PDEATHSIG), output caps,
// and a memory limit for the whole sample (the resident memory of all its processes, polled).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace he {

struct SandboxConfig {
  std::string mode = "bwrap";           // "bwrap" | "unsafe-local"
  std::string bwrap = "bwrap";          // the bubblewrap executable (PATH looked up)
  std::string interpreter = "python3";  // program run as `interpreter args...`; PATH looked up
  std::vector<std::string> ro_paths;    // bwrap: extra host paths shown read-only (interpreter prefixes)
  double wall_s = 30.0;                 // wall-clock limit per run, seconds (paper: 30)
  double cpu_s = 30.0;                  // RLIMIT_CPU, seconds
  int64_t memory_mb = 2048;             // RLIMIT_AS per process and resident memory of the whole sample, MiB
  int64_t file_size_mb = 16;            // RLIMIT_FSIZE, MiB
  int64_t open_files = 64;              // RLIMIT_NOFILE
  int64_t processes = 32;               // RLIMIT_NPROC (threads count too)
  int64_t output_bytes = 65536;         // captured stdout and stderr, each, bytes
  int64_t tmpfs_mb = 64;                // size of each private tmpfs (/tmp, /var/tmp, /dev/shm), MiB
  bool namespaces = true;               // unsafe-local: try PID/net/mount (and user) namespaces
  int64_t uid_base = 0;                 // as root: run as uid_base + slot; 0 = derived from pid; -1 = stay root (unsafe-local)
  std::string tmp_root = "/tmp";        // unsafe-local: where the per-run temporary directories are made
};

// What to run: files placed in the working directory (read-only in bwrap mode), the arguments
// after the interpreter, extra environment, and (unsafe-local only) files read back afterwards.
struct SandboxJob {
  std::vector<std::pair<std::string, std::string>> files;
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;
  std::vector<std::string> collect;
  int64_t file_size_mb = 0;  // overrides SandboxConfig::file_size_mb (and the collect cap) if > 0
  bool stdin_socket = false;  // give the program a socket as stdin (Spawned::in) instead of /dev/null
  // With stdin_socket: the program's stdout is that same socket (both directions on one
  // connection, e.g. to hand it to another process); Spawned::out stays closed.
  bool stdout_socket = false;
  // A long-lived trusted helper (the checker): no RLIMIT_CPU, no PR_SET_PDEATHSIG and no bwrap
  // --die-with-parent (both fire when the spawning *thread* ends); it must end by itself when its
  // stdin closes.
  bool long_lived = false;
  // Runs the program (and what it starts) on this one CPU (sched_setaffinity), -1: anywhere. A
  // checker and its candidate on one CPU answer a call in a third of the time (no cross-CPU wake-up).
  int cpu = -1;
  // Not root: let the program create user namespaces of its own (bwrap without --disable-userns;
  // the warm pool's zygote starts each program in new ones). As root they always can.
  bool allow_userns = false;
};

struct SandboxResult {
  int exit_code = -1;      // exit status when the program exited by itself
  int signal = 0;          // terminating signal, 0 if none
  bool timed_out = false;  // killed at the wall-clock limit
  bool memory_exceeded = false;  // killed: the whole sample's resident memory passed memory_mb
  std::string out, err;    // captured (capped) stdout and stderr
  bool truncated = false;  // some output was dropped
  std::map<std::string, std::string> collected;  // job.collect files that existed (capped; unsafe-local)
  std::string isolation;   // e.g. "bwrap+pidns+netns+uid200000+rlimits" or "seccomp+rlimits"
  std::string error;       // the sandbox itself failed (setup, exec): not the program's fault
  double seconds = 0.0;    // wall-clock time
  bool exited_ok() const { return error.empty() && !timed_out && !memory_exceeded && signal == 0 && exit_code == 0; }
  std::string describe() const;  // "exit 1", "timeout after 30 s", "killed by signal 9 (SIGKILL)"
};

// A file descriptor closed on scope exit.
struct Fd {
  int fd = -1;
  Fd() = default;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  void reset(int v = -1);
};

// A started sandboxed program (spawn_sandboxed): its pipes, pid and uid. The destructor kills
// everything it started and waits (bounded) until no process of its uid is left.
struct Spawned {
  pid_t pid = -1;
  int64_t uid = -1;
  Fd in;          // stdin socket (job.stdin_socket), else closed; also its stdout with job.stdout_socket
  Fd out, err;    // stdout, stderr (non-blocking)
  Fd pidfd;       // readable once the program exited (-1 if pidfd_open is missing)
  Fd bwrap_status;  // bwrap's --json-status-fd, kept open (bwrap writes its exit code there at the end)
  std::string isolation;
  std::string tmpdir;  // unsafe-local: the host directory, removed by the destructor
  bool reaped = false;
  int status = 0;      // wait status once reaped
  bool exited();       // true once the program ended (reaps it)
  void kill_all();     // SIGKILL to everything it started, reap, wait for its uid to be empty
  ~Spawned();
};

// Starts one job in slot `slot` (selects the uid when root). On failure returns null and sets
// `error` (a sandbox failure: bwrap missing, clone refused...).
std::unique_ptr<Spawned> spawn_sandboxed(const SandboxConfig& config, const SandboxJob& job, int slot, std::string& error);

// One run to completion in slot `slot` (spawn, capture until exit or the wall-clock limit, kill).
SandboxResult run_sandboxed(const SandboxConfig& config, const SandboxJob& job, int slot);

class SandboxPool {
 public:
  SandboxPool(SandboxConfig config, int workers);
  // Runs one job in a free slot (blocks until one is free). Safe to call from many threads.
  SandboxResult run(const SandboxJob& job);
  // Runs all jobs, `workers` at a time; results in job order.
  std::vector<SandboxResult> run_all(const std::vector<SandboxJob>& jobs);
  const SandboxConfig& config() const { return config_; }
  int workers() const { return workers_; }

 private:
  SandboxConfig config_;
  int workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int> free_;  // free slot numbers (offsets from first_slot_)
  int first_slot_;
};

// The first of `n` slot numbers no other pool or checker of this process uses (so their uids
// differ: a cleanup by uid never touches another's program). Blocks are reused after 1,024 slots.
int reserve_slots(int n);

// The CPU a worker slot's processes share: the host's allowed CPUs in turn (-1 if unknown).
int cpu_for_slot(int slot);

// Absolute path of `name` (as given if it contains '/', else searched in $PATH); "" if none.
std::string resolve_program(const std::string& name);

// The host directories an interpreter needs to start (its prefixes and sys.path entries that
// exist, outside /usr), asked of the interpreter itself (run once, outside the sandbox: it is the
// configured, trusted interpreter). Throws std::runtime_error if it does not run.
std::vector<std::string> interpreter_paths(const std::string& interpreter);

// Resident memory (bytes) of every live process of `uid` but `except` (a warm pool's zygote).
int64_t resident_bytes_of(uid_t uid, pid_t except = -1);

// The host pids of the live processes of `uid`.
std::vector<pid_t> pids_of(uid_t uid);

}  // namespace he
