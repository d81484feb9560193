// See launcher.h.
#include "dist/launcher.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <thread>

#include "dist/process_group.h"
#include "store/store.h"
#include "util/errors.h"
#include "util/log.h"

extern char** environ;

namespace warmup {
namespace {

std::atomic<int> g_forward_signal{0};
void on_signal(int sig) { g_forward_signal = sig; }

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    const char* name = sigabbrev_np(sig);
    return "was killed by signal " + std::to_string(sig) + (name ? std::string(" (SIG") + name + ")" : "");
  }
  return "exited with code " + std::to_string(WEXITSTATUS(status));
}

int exit_code_of(int status) { return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status); }

// The run rank 0 recorded in the store ("run": store path and id), marked failed if still running
// (or, with `interrupted_too`, closed as interrupted).
void mark_run_failed(LauncherStore& store, const std::string& why, bool interrupted_too) {
  auto run = store.get("run");
  if (!run) return;
  size_t nl = run->find('\n');
  try {
    Store s(run->substr(0, nl));
    int64_t id = std::stoll(run->substr(nl + 1));
    auto rec = s.run_record(id);
    if (rec && (rec->status == "running" || (interrupted_too && rec->status == "interrupted"))) {
      s.end_run(id, "failed", why);
      log_line(LogLevel::kError, "", "run " + std::to_string(id) + " marked failed");
    }
  } catch (const std::exception& e) {
    log_warn(std::string("could not mark the run failed: ") + e.what());
  }
}

}  // namespace

int launch_ranks(const LaunchOptions& o) {
  if (o.nproc_per_node < 1 || o.nproc_per_node > 1024)
    throw UsageError("--nproc-per-node " + std::to_string(o.nproc_per_node) + ": expected 1 to 1024");
  if (o.nnodes < 1 || o.node_rank < 0 || o.node_rank >= o.nnodes)
    throw UsageError("--node-rank " + std::to_string(o.node_rank) + " with --nnodes " + std::to_string(o.nnodes) +
                     ": expected 0 <= node rank < nodes");
  if (o.nnodes > 1 && o.master_port == 0)
    throw UsageError("--nnodes " + std::to_string(o.nnodes) + " needs --master-port (the same on every node)");
  if (o.master_port < 0 || o.master_port > 65535)
    throw UsageError("--master-port " + std::to_string(o.master_port) + ": expected 0 to 65535");
  if (o.command.empty()) throw UsageError("launch: no command");
  const int world = o.nproc_per_node * o.nnodes;
  const auto timeout = dist_timeout_from_environment();

  // Node 0 hosts the store every rank joins as a client (torchrun's agent store); other nodes'
  // launchers host nothing.
  std::unique_ptr<LauncherStore> store;
  int port = o.master_port;
  if (o.node_rank == 0) {
    store = std::make_unique<LauncherStore>(o.master_port, world, timeout);
    port = store->port();
  }
  std::string threads;
  if (!std::getenv("OMP_NUM_THREADS")) {  // torchrun sets 1; we share the cores out instead
    unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    threads = std::to_string(std::max(1u, cores / unsigned(o.nproc_per_node)));
  }
  log_info("launching " + std::to_string(o.nproc_per_node) + " ranks (world size " + std::to_string(world) +
           ", node " + std::to_string(o.node_rank) + " of " + std::to_string(o.nnodes) + ", store " + o.master_addr +
           ":" + std::to_string(port) + (threads.empty() ? "" : ", OMP_NUM_THREADS " + threads) + ")");

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  struct sigaction old_int {}, old_term {};
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);

  std::map<pid_t, int> ranks;  // pid -> global rank
  std::vector<char*> argv;
  for (const auto& a : o.command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (int local = 0; local < o.nproc_per_node; ++local) {
    int rank = o.node_rank * o.nproc_per_node + local;
    pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
      ::signal(SIGINT, SIG_DFL);
      ::signal(SIGTERM, SIG_DFL);
      // Its own process group: a terminal's Ctrl-C reaches the launcher alone, which forwards it
      // once; and the rank is stopped if the launcher dies.
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() == 1) ::_exit(143);
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(local).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(o.nproc_per_node).c_str(), 1);
      ::setenv("GROUP_RANK", std::to_string(o.node_rank).c_str(), 1);
      ::setenv("MASTER_ADDR", o.master_addr.c_str(), 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      ::setenv("TORCHELASTIC_USE_AGENT_STORE", "True", 1);
      if (!threads.empty()) ::setenv("OMP_NUM_THREADS", threads.c_str(), 1);
      ::execve(argv[0], argv.data(), environ);
      std::fprintf(stderr, "error: cannot run %s: %s\n", argv[0], std::strerror(errno));
      ::_exit(127);
    }
    ranks[pid] = rank;
  }

  int result = 0, forwarded = 0;
  bool failed = false, escalated = false;
  std::string first_failure;
  auto deadline = std::chrono::steady_clock::time_point::max();
  int stage = 0;  // after a failure: 0 wait, 1 SIGTERM sent, 2 SIGKILL sent
  const auto grace = std::chrono::seconds(45);  // a rank's own --grace (30 s) to stop and close its run, and some
  while (!ranks.empty()) {
    if (int sig = g_forward_signal.exchange(0)) {
      forwarded = sig;
      for (const auto& [pid, r] : ranks) ::kill(pid, sig);
    }
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0 && ranks.count(pid)) {
      int rank = ranks[pid];
      ranks.erase(pid);
      bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      // A rank that stopped because of a signal we forwarded was interrupted, not failed.
      bool stopped = forwarded && ((WIFEXITED(status) && WEXITSTATUS(status) == 128 + forwarded) ||
                                   (WIFSIGNALED(status) && WTERMSIG(status) == forwarded));
      if (stopped) {
        if (!result) result = exit_code_of(status);
        continue;
      }
      if (ok) continue;
      std::string why = "rank " + std::to_string(rank) + " (pid " + std::to_string(pid) + ") " + describe_status(status);
      if (store) store->report_failure(rank, why);
      if (!failed) {
        failed = true;
        first_failure = why;
        result = exit_code_of(status);
        log_line(LogLevel::kError, "", why + (ranks.empty() ? "" : "; the other ranks stop at their next collective"));
        // They see a dead peer at once (a closed connection); a rank busy elsewhere (a checkpoint, an
        // evaluation, a CUDA collective that does not notice) is stopped after a minute, or the
        // collective timeout when that is shorter.
        deadline = std::chrono::steady_clock::now() + std::min<std::chrono::milliseconds>(timeout + std::chrono::seconds(5),
                                                                                          std::chrono::seconds(60));
      } else {
        log_line(LogLevel::kWarn, "", why);
      }
      // Rank 0 keeps the run's store: killed, it could not close its run.
      if (rank == 0 && WIFSIGNALED(status) && store) mark_run_failed(*store, why, false);
      continue;
    }
    if (failed && std::chrono::steady_clock::now() > deadline && stage < 2) {
      int sig = stage == 0 ? SIGTERM : SIGKILL;
      for (const auto& [p, r] : ranks) {
        log_warn("rank " + std::to_string(r) + " (pid " + std::to_string(p) + ") still running; sending " +
                 (sig == SIGTERM ? "SIGTERM" : "SIGKILL"));
        ::kill(p, sig);
      }
      ++stage;
      escalated = true;
      deadline = std::chrono::steady_clock::now() + grace;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // Stopped by our SIGTERM because another rank had failed, rank 0 closed its run as interrupted:
  // it failed, for that rank's reason.
  if (escalated && store) mark_run_failed(*store, first_failure, true);
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return result;
}

}  // namespace warmup
