// Data-parallel training for plugins (ABI 1.9): the ranks of a multi-process run and collectives
// over them, without c10d headers. The host implements it on torch c10d (a TCPStore, then
// ProcessGroupGloo on CPU tensors, ProcessGroupNCCL on CUDA tensors) when the run was started by
// `torchrun` or `warmup run --nproc-per-node N`; otherwise it is one rank and every collective
// returns its input. Get it with warmup::distributed(ctx).
//
// Every rank runs every stage with the same config. Collectives must be called by all ranks in
// the same order with tensors of the same shape and dtype (as torch.distributed requires). Rank 0
// alone writes the store and the checkpoints: the host drops other ranks' metrics, samples,
// artifacts and datasets, so an algorithm reduces what it reports (a loss, a token count) before
// calling ctx.metric. A collective that does not complete within the run's timeout (a rank died
// or hangs) throws std::runtime_error naming the collective and, where known, the failed rank.
#pragma once

#include <torch/torch.h>

#include <string>
#include <string_view>
#include <vector>

#include "algorithm.h"

namespace warmup {

enum class ReduceOp { kSum, kMax, kMin };

class Distributed {
 public:
  static constexpr const char* kServiceName = "distributed";
  virtual ~Distributed() = default;

  virtual int rank() const = 0;              // RANK: 0 .. world_size - 1
  virtual int world_size() const = 0;        // WORLD_SIZE
  virtual int local_rank() const = 0;        // LOCAL_RANK: this rank's index on its machine (its GPU)
  virtual int local_world_size() const = 0;  // LOCAL_WORLD_SIZE

  // In place over all ranks. `t`: any shape, contiguous, on the CPU or this rank's GPU.
  virtual void all_reduce(torch::Tensor& t, ReduceOp op = ReduceOp::kSum) = 0;
  // Each rank's `t` (same shape and dtype on every rank), indexed by rank.
  virtual std::vector<torch::Tensor> all_gather(const torch::Tensor& t) = 0;
  // `t` becomes rank `root`'s `t` (same shape and dtype on every rank).
  virtual void broadcast(torch::Tensor& t, int root = 0) = 0;
  virtual void barrier() = 0;
  // Small byte payloads (any length, may differ between ranks): every rank's, indexed by rank.
  virtual std::vector<std::string> all_gather_bytes(std::string_view payload) = 0;
  // Rank `root`'s payload on every rank (other ranks' `payload` is ignored).
  virtual std::string broadcast_bytes(std::string_view payload, int root = 0) = 0;
};

// One process: rank 0 of 1, every collective the identity.
class SingleProcess final : public Distributed {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  int local_rank() const override { return 0; }
  int local_world_size() const override { return 1; }
  void all_reduce(torch::Tensor&, ReduceOp) override {}
  std::vector<torch::Tensor> all_gather(const torch::Tensor& t) override { return {t.clone()}; }
  void broadcast(torch::Tensor&, int) override {}
  void barrier() override {}
  std::vector<std::string> all_gather_bytes(std::string_view p) override { return {std::string(p)}; }
  std::string broadcast_bytes(std::string_view p, int) override { return std::string(p); }
};

// The run's ranks, or one process when the host offers none (a host before ABI 1.9, a plain run).
inline Distributed& distributed(StageContext& ctx) {
  static SingleProcess single;
  void* p = ctx.service(Distributed::kServiceName);
  return p ? *static_cast<Distributed*>(p) : single;
}

// Sums the gradients of `params` over all ranks in buckets of about `bucket_bytes` (each bucket
// flattened into one tensor per dtype and device, all-reduced, copied back): after it, every
// rank holds the same gradients, the sum of the ranks' own. A parameter without a gradient on this
// rank (no micro-batch of the step fell to it) takes zeros first, so every rank sends the same
// buckets. A no-op on one rank.
inline void all_reduce_gradients(Distributed& dist, const std::vector<torch::Tensor>& params,
                                 int64_t bucket_bytes = 25 << 20) {
  if (dist.world_size() <= 1) return;
  std::vector<torch::Tensor> bucket;
  int64_t bytes = 0;
  auto flush = [&] {
    if (bucket.empty()) return;
    std::vector<torch::Tensor> flat;
    for (auto& g : bucket) flat.push_back(g.reshape({-1}));
    torch::Tensor buf = torch::cat(flat);
    dist.all_reduce(buf, ReduceOp::kSum);
    int64_t at = 0;
    for (auto& g : bucket) {
      int64_t n = g.numel();
      g.copy_(buf.narrow(0, at, n).view_as(g));
      at += n;
    }
    bucket.clear();
    bytes = 0;
  };
  for (const auto& p : params) {
    torch::Tensor g = p.grad();
    if (!g.defined()) {
      const_cast<torch::Tensor&>(p).mutable_grad() = torch::zeros_like(p);
      g = p.grad();
    }
    if (!bucket.empty() && (g.scalar_type() != bucket.front().scalar_type() || g.device() != bucket.front().device()))
      flush();
    bucket.push_back(g);
    bytes += g.numel() * int64_t(g.element_size());
    if (bytes >= bucket_bytes) flush();
  }
  flush();
}

// Sums a few doubles over all ranks in one all-reduce (float64 on the CPU).
inline std::vector<double> all_reduce_sum(Distributed& dist, std::vector<double> values) {
  if (dist.world_size() <= 1 || values.empty()) return values;
  torch::Tensor t = torch::tensor(values, torch::kFloat64);
  dist.all_reduce(t, ReduceOp::kSum);
  auto a = t.accessor<double, 1>();
  for (size_t i = 0; i < values.size(); ++i) values[i] = a[int64_t(i)];
  return values;
}

}  // namespace warmup
