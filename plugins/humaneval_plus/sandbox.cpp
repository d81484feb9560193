// sandbox: the parent side of one sandboxed run (bubblewrap's command line or, unsafe-local, a
// temporary directory and clone with the strongest namespaces the machine permits), output
// capture, wall-clock and whole-sample memory kill, reaping, and the slot pool. The child's own
// set-up between clone and execve lives in sandbox_child.cpp.
#include "sandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

#include <nlohmann/json.hpp>

#include "sandbox_child.h"

namespace he {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// unsafe-local containment levels, strongest first; the first one that works is remembered.
enum Level { kRootNs = 0, kUserNs = 1, kNoNs = 2 };
std::atomic<int> g_level{kRootNs};

const char* kStepNames[] = {"", "setsid", "fds", "chdir", "mount", "rlimits", "uid", "prctl", "seccomp", "execve"};

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

// Calls f(pid, proc dir) for each live (not zombie) process of uid.
template <class F>
void for_each_process_of(uid_t uid, F f) {
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
    if (state != 'Z' && state != 'X') f(e.path());
  }
}

int live_processes_of(uid_t uid) {
  int n = 0;
  for_each_process_of(uid, [&](const fs::path&) { ++n; });
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
  if (geteuid() != 0 || level == kUserNs) return -1;
  if (c.uid_base < 0) return c.mode == "bwrap" ? 200000 + slot : -1;  // bwrap: never root inside
  int64_t base = c.uid_base > 0 ? c.uid_base : 200000 + int64_t(getpid() % 100000) * 1024;  // reserve_slots: 1,024 per process
  return base + slot;
}

// Starts `fn(arg)` in a child process the way posix_spawn does: CLONE_VM | CLONE_VFORK on a stack
// of its own, so the host's (large: libtorch) page tables are not copied for a child that only
// sets itself up and calls execve or _exit; the calling thread waits until it did. The child must
// stay async-signal-safe, allocate nothing and use raw syscalls for credentials (child_main,
// kill_all_of). `extra` adds namespace flags. Returns the pid, or -1 with errno.
struct VforkStart {
  int (*fn)(void*);
  void* arg;
  sigset_t mask;  // the calling thread's signal mask, restored in the child
};

int vfork_trampoline(void* p) {
  auto* s = static_cast<VforkStart*>(p);
  // The host's handlers must not run in a child that shares its memory: defaults, then the mask.
  struct sigaction dfl{};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    struct sigaction old{};
    if (sigaction(sig, nullptr, &old) == 0 && old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN)
      sigaction(sig, &dfl, nullptr);
  }
  sigprocmask(SIG_SETMASK, &s->mask, nullptr);
  return s->fn(s->arg);
}

pid_t spawn_vfork(int (*fn)(void*), void* arg, unsigned long extra = 0) {
  constexpr size_t kStack = size_t(256) << 10;
  thread_local std::unique_ptr<char[]> stack(new char[kStack]);
  char* top = stack.get() + kStack;
  top -= reinterpret_cast<uintptr_t>(top) % 64;
  VforkStart start{fn, arg, {}};
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &start.mask);
  pid_t pid = clone(vfork_trampoline, top, int(CLONE_VM | CLONE_VFORK | SIGCHLD | extra), &start);
  int saved = errno;
  pthread_sigmask(SIG_SETMASK, &start.mask, nullptr);
  errno = saved;
  return pid;
}

unsigned long clone_flags(int level) {
  if (level == kRootNs) return CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS;
  if (level == kUserNs) return CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS;
  return 0;
}

int child_entry(void* plan) { child_main(*static_cast<const ChildPlan*>(plan)); }

int killer_entry(void* uid) { kill_all_of(*static_cast<const uid_t*>(uid)); }

std::string isolation_name(int level, int64_t uid) {
  std::string s = level == kRootNs ? "pidns+netns+mntns" : level == kUserNs ? "userns+pidns+netns+mntns" : "seccomp";
  if (uid >= 0) s += "+uid" + std::to_string(uid);
  return s + "+rlimits";
}

bool plain_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

// bubblewrap's command line for one job; data fd i (the job's file i) is kFirstDataFd + i.
std::vector<std::string> bwrap_command(const SandboxConfig& c, const SandboxJob& job, const std::string& bwrap,
                                       const std::string& interpreter, int64_t uid) {
  std::vector<std::string> a{bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                             "--unshare-cgroup-try", "--new-session", "--hostname", "sandbox"};
  // bwrap's parent-death signal fires when the *thread* that started it ends: a long-lived helper
  // (the checker, started by whichever worker thread needed it first) ends with its stdin instead.
  if (!job.long_lived) a.push_back("--die-with-parent");
  if (geteuid() != 0) a.insert(a.end(), {"--unshare-user"});
  if (geteuid() != 0 && !job.allow_userns) a.push_back("--disable-userns");
  a.insert(a.end(), {"--ro-bind", "/usr", "/usr"});
  for (const char* d : {"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}) {
    struct stat st;
    if (lstat(d, &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      std::error_code ec;
      a.insert(a.end(), {"--symlink", fs::read_symlink(d, ec).string(), d});
    } else if (S_ISDIR(st.st_mode)) {
      a.insert(a.end(), {"--ro-bind", d, d});
    }
  }
  a.insert(a.end(), {"--perms", "0755", "--dir", "/etc"});  // else 0700 (root's): the slot uid could not enter
  a.insert(a.end(), {"--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"});
  // Debian's shared libraries reach their chosen implementation through /etc/alternatives
  // (libblas.so.3, liblapack.so.3: /usr/bin/python3's numpy needs them); symlinks only.
  a.insert(a.end(), {"--ro-bind-try", "/etc/alternatives", "/etc/alternatives"});
  // bwrap makes the missing parents of a bind 0700 (root's): the program's uid could not reach
  // the interpreter under them, so they are made 0755 first (empty: only the bind shows).
  std::vector<std::string> parents;
  for (const auto& p : c.ro_paths)
    for (fs::path d = fs::path(p).parent_path(); d.has_relative_path(); d = d.parent_path()) parents.push_back(d.string());
  std::sort(parents.begin(), parents.end());  // a parent sorts before its children
  parents.erase(std::unique(parents.begin(), parents.end()), parents.end());
  // The private /tmp, /var/tmp and /dev/shm first: binds made after them stay visible when the
  // interpreter lives below one of them (a checkout or a virtualenv under /tmp).
  const std::string size = std::to_string(c.tmpfs_mb << 20);
  a.insert(a.end(), {"--proc", "/proc", "--dev", "/dev"});
  for (const char* t : {"/tmp", "/var/tmp", "/dev/shm"}) a.insert(a.end(), {"--perms", "1777", "--size", size, "--tmpfs", t});
  for (const auto& d : parents)
    if (d != "/usr" && d.rfind("/usr/", 0) != 0 && d != "/tmp" && d != "/var/tmp" && d != "/dev/shm" && d != "/dev")
      a.insert(a.end(), {"--perms", "0755", "--dir", d});
  for (const auto& p : c.ro_paths) a.insert(a.end(), {"--ro-bind", p, p});
  for (size_t i = 0; i < job.files.size(); ++i)
    a.insert(a.end(), {"--perms", "0444", "--file", std::to_string(kFirstDataFd + int(i)), "/tmp/" + job.files[i].first});
  a.insert(a.end(), {"--json-status-fd", std::to_string(kFirstDataFd + int(job.files.size())), "--chdir", "/tmp", "--"});
  if (uid >= 0)
    a.insert(a.end(), {"/usr/bin/setpriv", "--reuid", std::to_string(uid), "--regid", std::to_string(uid),
                       "--clear-groups", "--"});
  a.push_back(interpreter);
  a.insert(a.end(), job.args.begin(), job.args.end());
  return a;
}

}  // namespace

void Fd::reset(int v) {
  if (fd >= 0) close(fd);
  fd = v;
}

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

std::vector<std::string> interpreter_paths(const std::string& interpreter) {
  std::string path = resolve_program(interpreter);
  if (path.empty()) throw std::runtime_error("interpreter not found: " + interpreter);
  std::string cmd = "'" + path + "' -I -c 'import sys, os, json; print(json.dumps([sys.prefix, sys.base_prefix, "
                    "sys.exec_prefix, sys.base_exec_prefix, os.path.realpath(sys.executable)] + sys.path))' 2>/dev/null";
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) throw std::runtime_error("cannot run " + path);
  std::string text;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
  if (pclose(f) != 0) throw std::runtime_error(path + " does not run a Python program (-c) successfully");
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_array()) throw std::runtime_error(path + ": unexpected answer to the sys.path query");
  std::vector<std::string> dirs;
  // The interpreter's own path and every directory its symlinks pass through.
  for (std::string p = path; !p.empty();) {
    dirs.push_back(fs::path(p).parent_path().string());
    std::error_code ec;
    if (!fs::is_symlink(p, ec)) break;
    fs::path t = fs::read_symlink(p, ec);
    p = t.is_absolute() ? t.string() : (fs::path(p).parent_path() / t).lexically_normal().string();
  }
  for (const auto& e : j)
    if (e.is_string()) dirs.push_back(e.get<std::string>());
  std::vector<std::string> out;
  for (auto& d : dirs) {
    std::error_code ec;
    if (d.empty() || d[0] != '/' || !fs::is_directory(d, ec)) continue;
    std::string real = fs::weakly_canonical(d, ec).string();
    if (ec || real == "/" || real.rfind("/usr/", 0) == 0 || real == "/usr") continue;
    // A prefix such as /root/.cache/warmup/venv: its bin/ and lib/ are under it.
    out.push_back(real);
    if (real != d && fs::path(d).lexically_normal().string().rfind("/usr/", 0) != 0) out.push_back(fs::path(d).lexically_normal().string());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  std::vector<std::string> minimal;  // drop paths inside an earlier one
  for (const auto& d : out)
    if (minimal.empty() || d.rfind(minimal.back() + "/", 0) != 0) minimal.push_back(d);
  return minimal;
}

std::vector<pid_t> pids_of(uid_t uid) {
  std::vector<pid_t> out;
  for_each_process_of(uid, [&](const fs::path& dir) { out.push_back(pid_t(std::stol(dir.filename().string()))); });
  return out;
}

int64_t resident_bytes_of(uid_t uid, pid_t except) {
  static const int64_t page = sysconf(_SC_PAGESIZE);
  int64_t total = 0;
  const std::string skip = std::to_string(except);
  for_each_process_of(uid, [&](const fs::path& dir) {
    if (dir.filename().string() == skip) return;
    std::ifstream in(dir / "statm");
    int64_t size = 0, resident = 0;
    if (in >> size >> resident) total += resident * page;
  });
  return total;
}

std::string SandboxResult::describe() const {
  if (!error.empty()) return "sandbox error: " + error;
  if (timed_out) return "timeout (wall-clock limit, " + std::to_string(int(seconds + 0.5)) + " s)";
  if (memory_exceeded) return "killed: memory limit of the whole sample";
  if (signal == SIGXCPU) return "killed: CPU time limit (SIGXCPU)";
  if (signal == SIGXFSZ) return "killed: file size limit (SIGXFSZ)";
  if (signal) return "killed by signal " + std::to_string(signal) + (signal == SIGKILL ? " (SIGKILL)" : "");
  return "exit " + std::to_string(exit_code);
}

// ---- Spawned

bool Spawned::exited() {  // leaves the zombie (its pgid stays valid for kill_all's killpg)
  if (reaped) return true;
  siginfo_t info{};
  return waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
}

void Spawned::kill_all() {
  if (pid > 0 && !reaped) {
    kill(pid, SIGKILL);    // bwrap (its PID namespace dies with it) or PID 1 of our namespace
    killpg(pid, SIGKILL);  // unsafe-local without namespaces: its process group
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    reaped = true, status = st;
  }
  if (uid >= 0) {
    // Processes of the slot's uid die by uid (unsafe-local without a PID namespace) and, in any
    // mode, this waits (bounded) until none is alive: the slot's next job reuses the uid and its
    // RLIMIT_NPROC, and "nothing left behind" must hold when we return. A process forked during
    // one round is alive afterwards and gets the next.
    auto until = Clock::now() + std::chrono::seconds(2);
    while (live_processes_of(uid_t(uid)) > 0 && Clock::now() < until) {
      uid_t target = uid_t(uid);
      pid_t killer = spawn_vfork(killer_entry, &target);
      if (killer > 0) waitpid(killer, nullptr, 0);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    uid = -1;
  }
}

Spawned::~Spawned() {
  kill_all();
  if (!tmpdir.empty()) {
    std::error_code ec;
    fs::remove_all(tmpdir, ec);
  }
}

std::unique_ptr<Spawned> spawn_sandboxed(const SandboxConfig& c, const SandboxJob& job, int slot, std::string& error) {
  auto sp = std::make_unique<Spawned>();
  const bool bw = c.mode == "bwrap";
  if (!bw && c.mode != "unsafe-local") return error = "unknown sandbox mode '" + c.mode + "'", nullptr;
  std::string path = resolve_program(c.interpreter);
  if (path.empty()) return error = "interpreter not found: " + c.interpreter, nullptr;
  std::string bwrap = bw ? resolve_program(c.bwrap) : "";
  if (bw && bwrap.empty())
    return error = "bubblewrap (" + c.bwrap + ") not found: install the Debian package 'bubblewrap', or set "
                   "sandbox = \"unsafe-local\" to run code without it",
           nullptr;
  if (bw && int(job.files.size()) + 1 > kMaxDataFds) return error = "too many job files", nullptr;
  for (const auto& f : job.files)
    if (!plain_name(f.first)) return error = "job file name must be a plain name: " + f.first, nullptr;
  std::string workdir = "/tmp";
  if (!bw) {
    std::string tmpl = c.tmp_root + "/warmup-sbx-XXXXXX";
    if (!mkdtemp(tmpl.data())) return error = "mkdtemp in " + c.tmp_root + ": " + std::strerror(errno), nullptr;
    sp->tmpdir = workdir = tmpl;
    for (const auto& [name, text] : job.files) std::ofstream(fs::path(workdir) / name, std::ios::binary) << text;
  }
  // The job's files as memfds (bwrap copies them into the sandbox's /tmp) and bwrap's status pipe.
  std::vector<Fd> data(bw ? job.files.size() + 1 : 0);
  Fd& status_r = sp->bwrap_status;
  if (bw) {
    for (size_t i = 0; i < job.files.size(); ++i) {
      data[i].reset(int(syscall(SYS_memfd_create, "warmup-sbx-file", MFD_CLOEXEC)));
      const std::string& text = job.files[i].second;
      size_t done = 0;
      while (data[i].fd >= 0 && done < text.size()) {
        ssize_t n = write(data[i].fd, text.data() + done, text.size() - done);
        if (n <= 0) return error = std::string("memfd write: ") + std::strerror(errno), nullptr;
        done += size_t(n);
      }
      if (data[i].fd < 0 || lseek(data[i].fd, 0, SEEK_SET) != 0) return error = std::string("memfd: ") + std::strerror(errno), nullptr;
    }
    if (!make_pipe(status_r, data.back())) return error = std::string("pipe: ") + std::strerror(errno), nullptr;
  }
  std::vector<int> data_fds;
  for (auto& d : data) data_fds.push_back(d.fd);
  // argv / envp, prepared before clone (the child must not allocate).
  std::vector<std::string> env{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + workdir, "TMPDIR=/tmp",
                               "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1", "PYTHONHASHSEED=0",
                               "OPENBLAS_NUM_THREADS=1", "OMP_NUM_THREADS=1", "MKL_NUM_THREADS=1"};
  for (const auto& [k, v] : job.env) env.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string tmpfs_opts = "size=" + std::to_string(c.tmpfs_mb) + "m,mode=1777";
  int64_t file_mb = job.file_size_mb > 0 ? job.file_size_mb : c.file_size_mb;

  Fd devnull, in_child, out_w, err_w, rep_r, rep_w;
  if (job.stdin_socket) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return error = std::string("socketpair: ") + std::strerror(errno), nullptr;
    sp->in.reset(sv[0]);
    in_child.reset(sv[1]);
  } else {
    in_child.reset(open("/dev/null", O_RDONLY | O_CLOEXEC));
  }
  int level = bw ? kNoNs : c.namespaces ? g_level.load() : kNoNs;
  for (; level <= kNoNs; ++level) {
    int64_t uid = uid_for(c, slot, bw ? kNoNs : level);
    if (!bw && uid >= 0 && chown(workdir.c_str(), uid_t(uid), gid_t(uid)) < 0)
      return error = std::string("chown: ") + std::strerror(errno), nullptr;
    const bool out_socket = job.stdin_socket && job.stdout_socket;
    if ((!out_socket && !make_pipe(sp->out, out_w)) || !make_pipe(sp->err, err_w) || !make_pipe(rep_r, rep_w))
      return error = std::string("pipe: ") + std::strerror(errno), nullptr;
    std::vector<std::string> args = bw ? bwrap_command(c, job, bwrap, path, uid) : std::vector<std::string>{path};
    if (!bw) args.insert(args.end(), job.args.begin(), job.args.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ChildPlan p;
    p.path = bw ? bwrap.c_str() : path.c_str(), p.argv = argv.data(), p.envp = envp.data(), p.workdir = workdir.c_str();
    p.tmpfs_options = tmpfs_opts.c_str();
    p.stdin_fd = in_child.fd, p.out_fd = out_socket ? in_child.fd : out_w.fd, p.err_fd = err_w.fd, p.report_fd = rep_w.fd;
    p.bwrap = bw, p.data_fds = data_fds.data(), p.n_data_fds = int(data_fds.size());
    p.private_tmp = !bw && level != kNoNs, p.seccomp = bw || level == kNoNs, p.uid = uid;
    std::string parent = fs::path(workdir).parent_path().string();
    auto under = [&](const char* d) { return workdir.rfind(std::string(d) + "/", 0) == 0; };
    p.rebind_workdir = p.private_tmp && (under("/tmp") || under("/var/tmp") || under("/dev/shm"));
    p.memory_bytes = rlim_t(c.memory_mb) << 20, p.file_size_bytes = rlim_t(file_mb) << 20;
    p.open_files = rlim_t(c.open_files), p.processes = rlim_t(c.processes);
    p.cpu_seconds = rlim_t(std::max(1.0, c.cpu_s)), p.long_lived = job.long_lived, p.cpu = job.cpu;
    pid_t pid = spawn_vfork(child_entry, &p, clone_flags(bw ? kNoNs : level));
    out_w.reset(), err_w.reset(), rep_w.reset();
    if (pid < 0) {
      if (level < kNoNs) continue;  // namespaces not permitted here: next level
      return error = std::string("clone: ") + std::strerror(errno), nullptr;
    }
    int rep[2] = {0, 0};
    ssize_t n = read(rep_r.fd, rep, sizeof rep);  // EOF (0) once execve succeeded
    if (n <= 0) {
      sp->pid = pid, sp->uid = uid;
      sp->isolation = bw ? "bwrap+pidns+netns+ipcns+tmpfs" + std::string(uid >= 0 ? "+uid" + std::to_string(uid) : "+userns") +
                               "+seccomp+rlimits"
                         : isolation_name(level, uid);
      break;
    }
    waitpid(pid, nullptr, 0);
    if (rep[0] == kStepMount && level < kNoNs) continue;  // mounts refused: weaker level
    return error = std::string(kStepNames[rep[0] % 10]) + ": " + std::strerror(rep[1]), nullptr;
  }
  if (!bw && c.namespaces && level != g_level.load()) g_level.store(level);
  data.clear();  // the child holds its own copies
  if (sp->out.fd >= 0) fcntl(sp->out.fd, F_SETFL, O_NONBLOCK);
  fcntl(sp->err.fd, F_SETFL, O_NONBLOCK);
  sp->pidfd.reset(int(syscall(SYS_pidfd_open, sp->pid, 0)));
  if (bw) {
    // bwrap writes {"child-pid": N} once the sandbox is set up; without it, bwrap itself failed.
    std::string status;
    char buf[512];
    for (ssize_t n; (n = read(status_r.fd, buf, sizeof buf)) > 0;) {
      status.append(buf, size_t(n));
      if (status.find("child-pid") != std::string::npos) break;
    }
    if (status.find("child-pid") == std::string::npos) {
      std::string err;
      bool truncated = false;
      sp->kill_all();
      fcntl(sp->err.fd, F_SETFL, 0);
      pump(sp->err, err, 4096, truncated);
      while (!err.empty() && err.back() == '\n') err.pop_back();
      return error = "bubblewrap could not set up the sandbox: " + (err.empty() ? std::string("no status") : err) +
                     " (set sandbox = \"unsafe-local\" to run code without it)",
             nullptr;
    }
  }
  return sp;
}

SandboxResult run_sandboxed(const SandboxConfig& c, const SandboxJob& job, int slot) {
  SandboxResult res;
  auto t0 = Clock::now();
  std::string error;
  auto sp = spawn_sandboxed(c, job, slot, error);
  if (!sp) return res.error = error, res;
  res.isolation = sp->isolation;
  auto deadline = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(c.wall_s));
  size_t cap = size_t(c.output_bytes);
  const int64_t memory_cap = c.memory_mb << 20;
  while (!sp->exited()) {
    auto now = Clock::now();
    if (now >= deadline) {
      res.timed_out = true;
      break;
    }
    int ms = int(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count()) + 1;
    struct pollfd fds[3] = {{sp->out.fd, POLLIN, 0}, {sp->err.fd, POLLIN, 0}, {sp->pidfd.fd, POLLIN, 0}};
    poll(fds, 3, std::min(ms, sp->uid >= 0 ? 20 : sp->pidfd.fd >= 0 ? ms : 20));  // negative fds are ignored
    if (sp->out.fd >= 0) pump(sp->out, res.out, cap, res.truncated);
    if (sp->err.fd >= 0) pump(sp->err, res.err, cap, res.truncated);
    if (sp->uid >= 0 && resident_bytes_of(uid_t(sp->uid)) > memory_cap) {
      res.memory_exceeded = true;
      break;
    }
  }
  sp->kill_all();
  if (sp->out.fd >= 0) pump(sp->out, res.out, cap, res.truncated);
  if (sp->err.fd >= 0) pump(sp->err, res.err, cap, res.truncated);
  if (!res.timed_out && !res.memory_exceeded) {
    if (WIFEXITED(sp->status)) res.exit_code = WEXITSTATUS(sp->status);
    if (WIFSIGNALED(sp->status)) res.signal = WTERMSIG(sp->status);
  }
  int64_t file_mb = job.file_size_mb > 0 ? job.file_size_mb : c.file_size_mb;
  for (const auto& name : job.collect) {
    if (sp->tmpdir.empty() || !plain_name(name)) continue;  // plain names in the directory only
    std::string text = read_capped(fs::path(sp->tmpdir) / name, size_t(file_mb) << 20);
    if (!text.empty()) res.collected[name] = std::move(text);
  }
  res.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return res;
}

// ---- pool

int cpu_for_slot(int slot) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
  std::vector<int> cpus;
  for (int i = 0; i < CPU_SETSIZE; ++i)
    if (CPU_ISSET(i, &set)) cpus.push_back(i);
  return cpus.empty() ? -1 : cpus[size_t(slot) % cpus.size()];
}

int reserve_slots(int n) {
  static std::atomic<int> next{0};
  int start = next.load();
  while (!next.compare_exchange_weak(start, start + n > 1024 ? n : start + n)) {
  }
  return start + n > 1024 ? 0 : start;
}

SandboxPool::SandboxPool(SandboxConfig config, int workers)
    : config_(std::move(config)), workers_(std::max(1, workers)), first_slot_(reserve_slots(workers_)) {
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
  SandboxResult r = run_sandboxed(config_, job, first_slot_ + slot);
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
