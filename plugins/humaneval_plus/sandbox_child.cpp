// sandbox_child: what the sandboxed process does between clone() and execve() (sandbox.h says
// why). Runs in the child of a possibly multi-threaded host, so only async-signal-safe calls,
// no allocation: everything is prepared by the parent in a ChildPlan.
#include "sandbox_child.h"

#include <fcntl.h>
#include <sched.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstddef>
#include <initializer_list>

namespace he {
namespace {

#if defined(__x86_64__)
constexpr uint32_t kNativeArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kNativeArch = AUDIT_ARCH_AARCH64;
#else
#error "seccomp filter: unsupported architecture"
#endif

// socket(AF_INET|AF_INET6, ...) and io_uring_setup fail with EACCES; other architectures and
// x32 syscall numbers kill the process; everything else is allowed.
int install_socket_filter() {
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kNativeArch, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 4, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 4),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_INET, 1, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_INET6, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EACCES),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {static_cast<unsigned short>(sizeof(f) / sizeof(f[0])), f};
  return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
}

// Switches to `uid` keeping only CAP_DAC_READ_SEARCH (also across execve, as an ambient cap).
// Raw syscalls: glibc's wrappers would try to change the credentials of every thread of the
// (cloned, single-threaded in fact) parent image and wait for them forever.
int drop_to(uid_t uid) {
  if (syscall(SYS_setgroups, 0, nullptr) < 0 || syscall(SYS_setresgid, uid, uid, uid) < 0) return -1;
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0 || syscall(SYS_setresuid, uid, uid, uid) < 0) return -1;
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2] = {};
  data[0].effective = data[0].permitted = data[0].inheritable = 1u << CAP_DAC_READ_SEARCH;
  if (syscall(SYS_capset, &hdr, data) < 0) return -1;
  return prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_DAC_READ_SEARCH, 0, 0);
}

int limit(int resource, rlim_t value) {
  struct rlimit r = {value, value};
  return setrlimit(resource, &r);
}

}  // namespace

[[noreturn]] void child_main(const ChildPlan& p) {
  int report = p.report_fd;
  auto die = [&](int step) {
    int e[2] = {step, errno};
    ssize_t n = write(report, e, sizeof e);
    (void)n;
    _exit(127);
  };
  if (setsid() < 0) die(kStepSession);
  // The data fds out of the way first: the dups below may land on their numbers (e.g. 3).
  if (p.n_data_fds > kMaxDataFds) die(kStepFds);
  int moved[kMaxDataFds];
  for (int i = 0; i < p.n_data_fds; ++i)
    if ((moved[i] = fcntl(p.data_fds[i], F_DUPFD_CLOEXEC, 64)) < 0) die(kStepFds);
  if (dup2(p.stdin_fd, 0) < 0 || dup2(p.out_fd, 1) < 0 || dup2(p.err_fd, 2) < 0) die(kStepFds);
  if (report != 3) {
    if (dup3(report, 3, O_CLOEXEC) < 0) die(kStepFds);
    report = 3;
  }
  for (int i = 0; i < p.n_data_fds; ++i)
    if (dup2(moved[i], kFirstDataFd + i) < 0) die(kStepFds);  // dup2 clears FD_CLOEXEC
  syscall(SYS_close_range, 4u, unsigned(kFirstDataFd - 1), 0u);  // other sandboxes' pipes, the host's files
  syscall(SYS_close_range, unsigned(kFirstDataFd + p.n_data_fds), ~0u, 0u);
  if (!p.bwrap && chdir(p.workdir) < 0) die(kStepChdir);
  if (p.private_tmp && !p.bwrap) {  // the cwd keeps the real directory; /tmp etc. become empty tmpfs
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) die(kStepMount);
    for (const char* dir : {"/tmp", "/var/tmp", "/dev/shm"})
      if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, p.tmpfs_options) < 0 && errno != ENOENT)
        die(kStepMount);
    // The working directory is under a now-shadowed /tmp: show it at the same path again.
    if (p.rebind_workdir) {
      // mkdir -p in the new tmpfs (the workdir may lie several levels below /tmp).
      char path[4096];
      size_t n = 0;
      while (p.workdir[n] && n + 1 < sizeof path) path[n] = p.workdir[n], ++n;
      path[n] = 0;
      for (size_t i = 1; i <= n; ++i) {
        if (path[i] != '/' && path[i] != 0) continue;
        char c = path[i];
        path[i] = 0;
        if (mkdir(path, 0755) < 0 && errno != EEXIST) die(kStepMount);
        path[i] = c;
      }
      if (mount(".", p.workdir, nullptr, MS_BIND, nullptr) < 0 || chdir(p.workdir) < 0) die(kStepMount);
    }
  }
  if (p.cpu >= 0 && p.cpu < CPU_SETSIZE) {  // best effort: a CPU taken away meanwhile leaves it unpinned
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(p.cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
  }
  if (limit(RLIMIT_CORE, 0) < 0 || limit(RLIMIT_AS, p.memory_bytes) < 0 ||
      limit(RLIMIT_FSIZE, p.file_size_bytes) < 0 || limit(RLIMIT_NOFILE, p.open_files) < 0 ||
      limit(RLIMIT_NPROC, p.processes) < 0)
    die(kStepLimits);
  struct rlimit cpu = {p.cpu_seconds, p.cpu_seconds + 1};  // SIGXCPU, then SIGKILL
  if (!p.long_lived && setrlimit(RLIMIT_CPU, &cpu) < 0) die(kStepLimits);
  if (!p.bwrap && p.uid >= 0 && drop_to(static_cast<uid_t>(p.uid)) < 0) die(kStepUid);
  if (!p.long_lived && prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) die(kStepPrctl);  // after the uid change
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die(kStepPrctl);
  if (p.seccomp && install_socket_filter() < 0) die(kStepSeccomp);
  execve(p.path, p.argv, p.envp);
  die(kStepExec);
  _exit(127);  // not reached
}

}  // namespace he

namespace he {

void kill_all_of(uid_t uid) {
  if (syscall(SYS_setresuid, uid, uid, uid) == 0) kill(-1, SIGKILL);  // every process of uid but this one
  _exit(0);
}

}  // namespace he
