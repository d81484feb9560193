// `warmup run --nproc-per-node N`: torchrun's job for users without Python. Starts N ranks of this
// executable on this machine with torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE,
// LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT, TORCHELASTIC_USE_AGENT_STORE=True),
// hosts their TCPStore (node 0; torchrun's agent store), forwards SIGINT/SIGTERM to them and waits.
//
// When a rank fails (non-zero exit or a signal) the launcher records it in the store, so the
// other ranks' errors name it, and prints one line naming it; the others stop by themselves at
// their next collective (a closed connection, or the timeout: WARMUP_DIST_TIMEOUT). Ranks still
// alive `timeout + 30 s` later are sent SIGTERM, then SIGKILL 10 s after. When rank 0 is killed
// before it could close its run, the launcher marks the run failed in its store.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace warmup {

struct LaunchOptions {
  int nproc_per_node = 1;
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;               // 0: any free port (one node only)
  std::vector<std::string> command;  // each rank's argv; argv[0] is the executable
};

// Runs the ranks to completion. Returns 0 when all finished, else the first failed rank's exit
// code (128 + signal when it was killed). Throws UsageError for impossible options.
int launch_ranks(const LaunchOptions& options);

}  // namespace warmup
