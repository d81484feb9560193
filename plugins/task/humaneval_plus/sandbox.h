// sandbox: runs one untrusted program (a Python interpreter on a script) in its own process, in a
// fresh temporary directory, and a pool that runs N of them at a time.
//
// Containment, strongest first (what a run got is named in SandboxResult::isolation):
//  - PID, network and mount namespaces (clone flags; plus a user namespace when not root): the
//    program is PID 1 of its namespace, so killing it kills every process it started; loopback
//    is down, so no socket reaches anything; /tmp, /var/tmp and /dev/shm are private tmpfs.
//  - without network namespace: a seccomp filter makes socket(AF_INET|AF_INET6) fail (EACCES).
//  - as root: the program runs as an unprivileged uid (one per pool slot) so RLIMIT_NPROC binds
//    and root-owned files ($HOME) are read-only to it; it keeps CAP_DAC_READ_SEARCH (read any
//    file) so an interpreter under /root still starts.
//  - always: rlimits (CPU, address space, file size, open files, processes, no core), setsid,
//    SIGKILL to the process (and its group) at the wall-clock limit, stdout/stderr capped, a
//    clean environment, stdin from /dev/null, the temporary directory removed afterwards.
// It does not restrict reading files, CPU affinity, or syscalls other than socket().
#pragma once

#include <cstdint>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace he {

struct SandboxConfig {
  std::string interpreter = "python3";  // program run as `interpreter args...`; PATH looked up
  double wall_s = 30.0;                 // wall-clock limit per run, seconds (paper: 30)
  double cpu_s = 30.0;                  // RLIMIT_CPU, seconds
  int64_t memory_mb = 2048;             // RLIMIT_AS, MiB
  int64_t file_size_mb = 16;            // RLIMIT_FSIZE, MiB
  int64_t open_files = 64;              // RLIMIT_NOFILE
  int64_t processes = 32;               // RLIMIT_NPROC (threads count too)
  int64_t output_bytes = 65536;         // captured stdout and stderr, each, bytes
  int64_t tmpfs_mb = 64;                // size of the private /tmp, /var/tmp, /dev/shm, MiB
  bool namespaces = true;               // try PID/net/mount (and user) namespaces
  int64_t uid_base = 0;                 // as root: run as uid_base + slot; 0 = derived from pid; -1 = stay root
  std::string tmp_root = "/tmp";        // where the per-run temporary directories are made
};

// What to run: files written into the fresh temporary directory (the working directory), the
// arguments after the interpreter, extra environment, and files read back before removal.
struct SandboxJob {
  std::vector<std::pair<std::string, std::string>> files;
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;
  std::vector<std::string> collect;
  int64_t file_size_mb = 0;  // overrides SandboxConfig::file_size_mb (and the collect cap) if > 0
};

struct SandboxResult {
  int exit_code = -1;      // exit status when the program exited by itself
  int signal = 0;          // terminating signal, 0 if none
  bool timed_out = false;  // killed at the wall-clock limit
  std::string out, err;    // captured (capped) stdout and stderr
  bool truncated = false;  // some output was dropped
  std::map<std::string, std::string> collected;  // job.collect files that existed (capped)
  std::string isolation;   // e.g. "pidns+netns+mntns+uid+rlimits" or "seccomp+rlimits"
  std::string error;       // the sandbox itself failed (setup, exec): not the program's fault
  double seconds = 0.0;    // wall-clock time
  bool exited_ok() const { return error.empty() && !timed_out && signal == 0 && exit_code == 0; }
  std::string describe() const;  // "exit 1", "timeout after 30 s", "killed by signal 9 (SIGKILL)"
};

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
  std::vector<int> free_;  // free slot numbers
};

// One run in slot `slot` (selects the uid when root). Exposed for tests; prefer the pool.
SandboxResult run_sandboxed(const SandboxConfig& config, const SandboxJob& job, int slot);

// Absolute path of `name` (as given if it contains '/', else searched in $PATH); "" if none.
std::string resolve_program(const std::string& name);

}  // namespace he
