// The ranks of a multi-process run on torch c10d, behind warmup::Distributed (warmup/distributed.h).
// This header includes no c10d headers: only process_group.cpp does (they are slow to compile and
// need USE_C10D_GLOO / USE_C10D_NCCL defined, and Gloo's headers from Debian's libgloo-dev).
//
// Rendezvous as torch.distributed's env:// (torch/distributed/rendezvous.py): RANK, WORLD_SIZE,
// LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT from the environment; rank 0 hosts the
// TCPStore, unless TORCHELASTIC_USE_AGENT_STORE=True (torchrun, `warmup run --nproc-per-node`),
// where the launcher hosts it and every rank is a client. Backends: ProcessGroupGloo for CPU
// tensors, and ProcessGroupNCCL for CUDA tensors in a CUDA build (torch's "cpu:gloo,cuda:nccl").
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "warmup/distributed.h"

namespace warmup {

struct DistEnv {
  int rank = 0, world_size = 1, local_rank = 0, local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool agent_store = false;  // TORCHELASTIC_USE_AGENT_STORE=True: the launcher hosts the store
  int restart = 0;           // TORCHELASTIC_RESTART_COUNT: this worker group's attempt under torchrun
  // From torchrun's variables; nullopt for a plain run: WORLD_SIZE and RANK both unset, or a world
  // of one that no launcher started (TORCHELASTIC_USE_AGENT_STORE unset).
  // Throws UsageError naming the variable when one is missing or out of range.
  static std::optional<DistEnv> from_environment();
};

// Seconds a collective or the rendezvous may take before the run fails: WARMUP_DIST_TIMEOUT
// (seconds), default 1800 (torch's default process-group timeout, 30 minutes).
std::chrono::milliseconds dist_timeout_from_environment();

class ProcessGroupHost final : public Distributed {
 public:
  // Joins the group: connects to the store (waiting up to `timeout` for the others) and builds the
  // backends. Throws std::runtime_error naming MASTER_ADDR:MASTER_PORT when the rendezvous fails.
  ProcessGroupHost(const DistEnv& env, std::chrono::milliseconds timeout);
  ~ProcessGroupHost() override;

  int rank() const override;
  int world_size() const override;
  int local_rank() const override;
  int local_world_size() const override;
  void all_reduce(torch::Tensor& t, ReduceOp op) override;
  std::vector<torch::Tensor> all_gather(const torch::Tensor& t) override;
  void broadcast(torch::Tensor& t, int root) override;
  void barrier() override;
  std::vector<std::string> all_gather_bytes(std::string_view payload) override;
  std::string broadcast_bytes(std::string_view payload, int root) override;
  std::unique_ptr<Work> all_reduce_async(torch::Tensor& t, ReduceOp op) override;

  // Best effort, never throws: records in the store that this rank failed and why, so the other
  // ranks' errors name it.
  void report_failure(const std::string& message) noexcept;
  // Which ranks are known to have failed: those that reported (report_failure) and, on this
  // machine, those whose process is gone. "" when none is known.
  std::string failed_ranks() noexcept;
  // Sets a key in the store (PrefixStore "warmup/"), e.g. "run" for the launcher. Best effort.
  void set(const std::string& key, const std::string& value) noexcept;
  // Waits for the backends' work and releases them (an explicit shutdown, as
  // destroy_process_group). Idempotent; the destructor calls it.
  void shutdown() noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The TCPStore a launcher hosts for its ranks (torchrun's agent store): listens on `port` (0 = any
// free port) on every address; port() is the one it got.
class LauncherStore {
 public:
  LauncherStore(int port, int world_size, std::chrono::milliseconds timeout);
  ~LauncherStore();
  int port() const;
  // Records that `rank` exited (or was killed) with `why`, for the other ranks' error lines.
  void report_failure(int rank, const std::string& why) noexcept;
  // A key the ranks set (e.g. "run": the store and run id rank 0 writes), or nullopt.
  std::optional<std::string> get(const std::string& key) noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace warmup
