// sandbox: the parent side of one sandboxed run (temporary directory, clone with the strongest
// namespaces the machine permits, output capture, wall-clock kill, reaping) and the slot pool.
// The child's own set-up lives in sandbox_child.cpp.
#include "sandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "sandbox_child.h"

namespace he {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Containment levels, strongest first; the first one that works on this machine is remembered.
enum Level { kRootNs = 0, kUserNs = 1, kNoNs = 2 };
std::atomic<int> g_level{kRootNs};

const char* kStepNames[] = {"", "setsid", "fds", "chdir", "mount", "rlimits", "uid", "prctl", "seccomp", "execve"};

struct Fd {  // closes on scope exit
  int fd = -1;
  ~Fd() { reset(); }
  void reset(int v = -1) {
    if (fd >= 0) close(fd);
    fd = v;
  }
};

bool make_pipe(Fd& r, Fd& w) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return false;
  r.reset(p[0]);
  w.reset(p[1]);
  return true;
}

void append_capped(std::string& dst, const char* data, size_t n, size_t cap, bool& truncated) {
  size_t room = dst.size() < cap ? cap - dst.size() : 0;
  if (n > room) truncated = true;
  dst.append(data, std::min(n, room));
}

// Reads what is available; returns false at EOF or error (the fd is then closed).
bool pump(Fd& fd, std::string& dst, size_t cap, bool& truncated) {
  char buf[65536];
  while (true) {
    ssize_t n = read(fd.fd, buf, sizeof buf);
    if (n > 0) {
      append_capped(dst, buf, size_t(n), cap, truncated);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    fd.reset();
    return false;
  }
}

// Processes of uid that are still alive (zombies hold nothing but a table slot; a container's PID 1
// may never reap the ones reparented to it).
int live_processes_of(uid_t uid) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] < '0' || name[0] > '9') continue;
    struct stat st;
    if (stat(e.path().c_str(), &st) != 0 || st.st_uid != uid) continue;
    std::ifstream in(e.path() / "stat");
    std::string line;
    std::getline(in, line);
    size_t paren = line.rfind(')');
    if (paren == std::string::npos || line.size() <= paren + 2) continue;  // gone meanwhile
    char state = line[paren + 2];
    if (state != 'Z' && state != 'X') ++n;
  }
  return n;
}

std::string read_capped(const fs::path& p, size_t cap) {  // regular files only, never a symlink
  Fd fd;
  fd.reset(open(p.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
  struct stat st;
  if (fd.fd < 0 || fstat(fd.fd, &st) < 0 || !S_ISREG(st.st_mode)) return {};
  std::string out;
  bool truncated = false;
  pump(fd, out, cap, truncated);
  return out;
}

int64_t uid_for(const SandboxConfig& c, int slot, int level) {
  if (geteuid() != 0 || c.uid_base < 0 || level == kUserNs) return -1;
  int64_t base = c.uid_base > 0 ? c.uid_base : 200000 + int64_t(getpid() % 100000) * 64;
  return base + slot;
}

pid_t clone_level(int level) {
  unsigned long flags = SIGCHLD;
  if (level == kRootNs) flags |= CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS;
  if (level == kUserNs) flags |= CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS;
  return pid_t(syscall(SYS_clone, flags, nullptr, nullptr, nullptr, nullptr));  // fork-like
}

std::string isolation_name(int level, int64_t uid) {
  std::string s = level == kRootNs ? "pidns+netns+mntns" : level == kUserNs ? "userns+pidns+netns+mntns" : "seccomp";
  if (uid >= 0) s += "+uid" + std::to_string(uid);
  return s + "+rlimits";
}

}  // namespace

std::string resolve_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  for (size_t b = 0; b <= dirs.size();) {
    size_t e = dirs.find(':', b);
    if (e == std::string::npos) e = dirs.size();
    std::string cand = dirs.substr(b, e - b) + "/" + name;
    if (e > b && access(cand.c_str(), X_OK) == 0) return cand;
    b = e + 1;
  }
  return "";
}

std::string SandboxResult::describe() const {
  if (!error.empty()) return "sandbox error: " + error;
  if (timed_out) return "timeout (wall-clock limit, " + std::to_string(int(seconds + 0.5)) + " s)";
  if (signal == SIGXCPU) return "killed: CPU time limit (SIGXCPU)";
  if (signal == SIGXFSZ) return "killed: file size limit (SIGXFSZ)";
  if (signal) return "killed by signal " + std::to_string(signal) + (signal == SIGKILL ? " (SIGKILL)" : "");
  return "exit " + std::to_string(exit_code);
}

SandboxResult run_sandboxed(const SandboxConfig& c, const SandboxJob& job, int slot) {
  SandboxResult res;
  auto t0 = Clock::now();
  std::string path = resolve_program(c.interpreter);
  if (path.empty()) return res.error = "interpreter not found: " + c.interpreter, res;
  std::string tmpl = c.tmp_root + "/warmup-sbx-XXXXXX";
  if (!mkdtemp(tmpl.data())) return res.error = "mkdtemp in " + c.tmp_root + ": " + std::strerror(errno), res;
  fs::path dir = tmpl;
  struct Cleanup {  // the temporary directory goes whatever happens
    fs::path d;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(d, ec);
    }
  } cleanup{dir};
  for (const auto& [name, text] : job.files) {
    std::ofstream(dir / name, std::ios::binary) << text;
  }
  // argv / envp, prepared before clone (the child must not allocate).
  std::vector<std::string> args{path};
  args.insert(args.end(), job.args.begin(), job.args.end());
  std::vector<std::string> env{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + dir.string(), "TMPDIR=/tmp",
                               "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1", "PYTHONHASHSEED=0",
                               "OPENBLAS_NUM_THREADS=1", "OMP_NUM_THREADS=1", "MKL_NUM_THREADS=1"};
  for (const auto& [k, v] : job.env) env.push_back(k + "=" + v);
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  for (auto& e : env) envp.push_back(e.data());
  argv.push_back(nullptr);
  envp.push_back(nullptr);
  std::string tmpfs_opts = "size=" + std::to_string(c.tmpfs_mb) + "m,mode=1777";
  std::string workdir = dir.string();
  int64_t file_mb = job.file_size_mb > 0 ? job.file_size_mb : c.file_size_mb;

  Fd devnull, out_r, out_w, err_r, err_w, rep_r, rep_w;
  devnull.reset(open("/dev/null", O_RDONLY | O_CLOEXEC));
  pid_t pid = -1;
  int level = c.namespaces ? g_level.load() : kNoNs;
  int64_t uid = -1;
  for (; level <= kNoNs; ++level) {
    uid = uid_for(c, slot, level);
    if (uid >= 0 && chown(workdir.c_str(), uid_t(uid), gid_t(uid)) < 0)
      return res.error = std::string("chown: ") + std::strerror(errno), res;
    if (!make_pipe(out_r, out_w) || !make_pipe(err_r, err_w) || !make_pipe(rep_r, rep_w))
      return res.error = std::string("pipe: ") + std::strerror(errno), res;
    ChildPlan p;
    p.path = path.c_str(), p.argv = argv.data(), p.envp = envp.data(), p.workdir = workdir.c_str();
    p.tmpfs_options = tmpfs_opts.c_str();
    p.stdin_fd = devnull.fd, p.out_fd = out_w.fd, p.err_fd = err_w.fd, p.report_fd = rep_w.fd;
    p.private_tmp = level != kNoNs, p.seccomp = level == kNoNs, p.uid = uid;
    std::string parent = dir.parent_path().string();
    p.rebind_workdir = p.private_tmp && (parent == "/tmp" || parent == "/var/tmp" || parent == "/dev/shm");
    p.memory_bytes = rlim_t(c.memory_mb) << 20, p.file_size_bytes = rlim_t(file_mb) << 20;
    p.open_files = rlim_t(c.open_files), p.processes = rlim_t(c.processes);
    p.cpu_seconds = rlim_t(std::max(1.0, c.cpu_s));
    pid = clone_level(level);
    if (pid == 0) child_main(p);
    out_w.reset(), err_w.reset(), rep_w.reset();
    if (pid < 0) {
      if (level < kNoNs) continue;  // namespaces not permitted here: next level
      return res.error = std::string("clone: ") + std::strerror(errno), res;
    }
    int rep[2] = {0, 0};
    ssize_t n = read(rep_r.fd, rep, sizeof rep);  // EOF (0) once execve succeeded
    if (n <= 0) break;
    waitpid(pid, nullptr, 0);
    pid = -1;
    if (rep[0] == kStepMount && level < kNoNs) continue;  // mounts refused: weaker level
    return res.error = std::string(kStepNames[rep[0] % 10]) + ": " + std::strerror(rep[1]), res;
  }
  if (c.namespaces && level != g_level.load()) g_level.store(level);
  res.isolation = isolation_name(level, uid);

  // Capture output until the program exits or the wall-clock limit passes.
  fcntl(out_r.fd, F_SETFL, O_NONBLOCK), fcntl(err_r.fd, F_SETFL, O_NONBLOCK);
  Fd pidfd;
  pidfd.reset(int(syscall(SYS_pidfd_open, pid, 0)));
  auto deadline = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(c.wall_s));
  size_t cap = size_t(c.output_bytes);
  auto exited = [&] {
    siginfo_t info{};
    return waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
  };
  while (!exited()) {
    auto now = Clock::now();
    if (now >= deadline) {
      res.timed_out = true;
      break;
    }
    int ms = int(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count()) + 1;
    struct pollfd fds[3] = {{out_r.fd, POLLIN, 0}, {err_r.fd, POLLIN, 0}, {pidfd.fd, POLLIN, 0}};
    poll(fds, 3, pidfd.fd >= 0 ? ms : std::min(ms, 20));  // negative fds are ignored by poll
    if (out_r.fd >= 0) pump(out_r, res.out, cap, res.truncated);
    if (err_r.fd >= 0) pump(err_r, res.err, cap, res.truncated);
  }
  kill(pid, SIGKILL);    // PID 1 of its namespace: the kernel kills every process in it
  killpg(pid, SIGKILL);  // without namespaces: its process group (the zombie keeps the pgid)
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (level == kNoNs && uid >= 0) {
    // No PID namespace: processes that left the group die by uid. kill() only queues SIGKILL, so
    // this waits (bounded) until none is alive: the slot's next job reuses the uid and its
    // RLIMIT_NPROC, and "nothing left behind" must hold when run() returns.
    // A process forked during one round is alive afterwards and gets the next.
    auto until = Clock::now() + std::chrono::seconds(2);
    while (true) {
      pid_t killer = pid_t(syscall(SYS_clone, SIGCHLD, nullptr, nullptr, nullptr, nullptr));
      if (killer == 0) kill_all_of(uid_t(uid));
      if (killer > 0) waitpid(killer, nullptr, 0);
      if (live_processes_of(uid_t(uid)) == 0 || Clock::now() >= until) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  if (out_r.fd >= 0) pump(out_r, res.out, cap, res.truncated);
  if (err_r.fd >= 0) pump(err_r, res.err, cap, res.truncated);
  if (!res.timed_out) {
    if (WIFEXITED(status)) res.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) res.signal = WTERMSIG(status);
  }
  for (const auto& name : job.collect) {
    if (fs::path(name).filename() != name) continue;  // plain names in the directory only
    std::string text = read_capped(dir / name, size_t(file_mb) << 20);
    if (!text.empty()) res.collected[name] = std::move(text);
  }
  res.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return res;
}

// ---- pool

SandboxPool::SandboxPool(SandboxConfig config, int workers) : config_(std::move(config)), workers_(std::max(1, workers)) {
  for (int i = workers_ - 1; i >= 0; --i) free_.push_back(i);
}

SandboxResult SandboxPool::run(const SandboxJob& job) {
  int slot;
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !free_.empty(); });
    slot = free_.back();
    free_.pop_back();
  }
  SandboxResult r = run_sandboxed(config_, job, slot);
  {
    std::lock_guard lock(mu_);
    free_.push_back(slot);
  }
  cv_.notify_one();
  return r;
}

std::vector<SandboxResult> SandboxPool::run_all(const std::vector<SandboxJob>& jobs) {
  std::vector<SandboxResult> out(jobs.size());
  std::atomic<size_t> next{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < workers_ && size_t(w) < jobs.size(); ++w)
    threads.emplace_back([&] {
      for (size_t i; (i = next++) < jobs.size();) out[i] = run(jobs[i]);
    });
  for (auto& t : threads) t.join();
  return out;
}

}  // namespace he
