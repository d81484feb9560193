// sandbox_child: the plan the parent prepares for the sandboxed child (plain data, no
// allocation needed in the child) and the child's entry point. Internal to sandbox.cpp.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>

namespace he {

// Steps reported (with errno) through the report pipe when the child fails before execve.
enum ChildStep : int {
  kStepSession = 1,
  kStepFds,
  kStepChdir,
  kStepMount,
  kStepLimits,
  kStepUid,
  kStepPrctl,
  kStepSeccomp,
  kStepExec,
};

struct ChildPlan {
  const char* path = nullptr;       // interpreter, absolute
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  const char* workdir = nullptr;
  const char* tmpfs_options = nullptr;
  int stdin_fd = -1, out_fd = -1, err_fd = -1, report_fd = -1;
  bool private_tmp = false;  // in a mount namespace: tmpfs over /tmp, /var/tmp, /dev/shm
  bool rebind_workdir = false;  // workdir lies in one of those: bind it back at its path
  bool seccomp = false;      // deny AF_INET/AF_INET6 sockets
  int64_t uid = -1;          // switch to this uid (root only); -1 = keep
  rlim_t memory_bytes = 0, file_size_bytes = 0, open_files = 0, processes = 0, cpu_seconds = 0;
  bool long_lived = false;  // no RLIMIT_CPU, no PR_SET_PDEATHSIG (SandboxJob::long_lived)
  int cpu = -1;             // sched_setaffinity to this CPU (SandboxJob::cpu), -1: none
  // bwrap mode: no chdir, mounts or uid change here (bubblewrap and setpriv do them after execve);
  // data_fds (the job's files, read by `bwrap --file`) are moved to fds 10, 11, ... kept across execve.
  bool bwrap = false;
  const int* data_fds = nullptr;
  int n_data_fds = 0;
};

constexpr int kFirstDataFd = 10;
constexpr int kMaxDataFds = 16;

[[noreturn]] void child_main(const ChildPlan& plan);
// In a forked child of root: becomes `uid` and SIGKILLs every other process of it.
[[noreturn]] void kill_all_of(uid_t uid);

}  // namespace he
