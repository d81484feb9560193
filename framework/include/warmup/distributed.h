// Data-parallel training for plugins (ABI 1.9; 1.10 adds all_reduce_async and GradientReducer):
// the ranks of a multi-process run and collectives over them, without c10d headers. The host
// implements it on torch c10d (a TCPStore, then ProcessGroupGloo on CPU tensors, ProcessGroupNCCL
// on CUDA tensors) when the run was started by
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

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "algorithm.h"

namespace warmup {

enum class ReduceOp { kSum, kMax, kMin };

// A collective in flight (Distributed::all_reduce_async, ABI 1.10), as torch.distributed's Work.
class Work {
 public:
  virtual ~Work() = default;
  // Blocks until the collective has completed on this rank. Throws std::runtime_error as the
  // blocking collective would (naming the failed rank; after the run's timeout at the latest).
  virtual void wait() = 0;
};

namespace detail {
struct DoneWork final : Work {
  void wait() override {}
};
}  // namespace detail

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

  // ABI 1.10 (appended; the host implements it on c10d's asynchronous Work). Starts an in-place
  // all-reduce of `t` and returns at once: `t` must be neither read nor written until wait()
  // returns. Collectives, asynchronous or not, are still issued in the same order on every rank.
  // May be called from autograd's threads (GradientReducer's hooks) while the caller's thread is
  // inside backward().
  // The default completes the all-reduce before returning.
  virtual std::unique_ptr<Work> all_reduce_async(torch::Tensor& t, ReduceOp op = ReduceOp::kSum) {
    all_reduce(t, op);
    return std::make_unique<detail::DoneWork>();
  }
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

// Sums the gradients of `params` over all ranks, bucket by bucket, overlapping the all-reduce with
// the backward pass as torch's DistributedDataParallel does (torch/csrc/distributed/c10d/reducer.cpp):
// the parameters are put in buckets in reverse order (about the order backward produces their
// gradients; after the first step, as DDP's rebuild_buckets, in the order rank 0 saw them become
// ready; zero_grad() makes them), the first of about `first_bucket_bytes` so communication starts
// early, the others of about `bucket_bytes` (DDP's bucket_cap_mb, 25 MB), one dtype and device per
// bucket. Each bucket is one
// flat buffer and each parameter's .grad a view into it (DDP's gradient_as_bucket_view): backward
// accumulates in place into the buffer, which is all-reduced in place, so the gradients take no
// more memory than without the reducer. A post hook on each parameter's gradient accumulator
// (autograd's AccumulateGrad node) marks it ready once backward has accumulated its gradient; a
// bucket whose parameters are all ready starts its all-reduce at once, asynchronously
// (Distributed::all_reduce_async), buckets always starting in the same order on every rank. Only
// the backward pass after prepare_for_backward() is watched: call it before the backward of this
// rank's last micro-batch of the step (the earlier ones only accumulate, as under DDP's no_sync()).
// reduce() then starts the buckets still waiting (a parameter without a gradient on this rank,
// e.g. no micro-batch of the step fell to it, contributes zeros, so every rank sends the same
// buckets) and waits for all of them: after it, every rank holds the same gradients, the sum of the
// ranks' own. Clear the gradients with zero_grad() (zeros in place), not the optimizer's
// zero_grad(), which drops the views (the reducer then copies each gradient back into its bucket
// at the next reduction, at the cost of a transient second copy).
//
// Between prepare_for_backward() and reduce() no other collective may be issued: ranks start
// different numbers of buckets during backward, so another collective would be paired with a
// bucket's all-reduce on another rank. A .grad must not be read or written between
// prepare_for_backward() and reduce() (its bucket may be in flight). The first reduce() with hooks
// also broadcasts rank 0's order (every rank calls reduce() at the same point of the step).
//
// Errors: a parameter whose gradient is accumulated twice in the watched backward (two backward
// calls after prepare_for_backward(), or a reentrant one) makes reduce() throw std::logic_error, as
// DDP's "marked ready twice". Collective failures throw as Distributed's do (from backward() when
// a bucket fails to start; the stage is then over: the reducer is not reused). With one rank the
// reducer does nothing (zero_grad() drops the gradients, as the optimizer's); with `overlap` false
// no hook is installed and every bucket is all-reduced in reduce(), after backward. The parameters
// must stay the same tensors for the reducer's lifetime (load weights in place).
class GradientReducer {
 public:
  GradientReducer(Distributed& dist, std::vector<torch::Tensor> params, bool overlap = true,
                  int64_t bucket_bytes = 25 << 20, int64_t first_bucket_bytes = 1 << 20)
      : dist_(dist),
        params_(std::move(params)),
        cap_(std::max<int64_t>(1, bucket_bytes)),
        first_cap_(std::max<int64_t>(1, first_bucket_bytes)) {
    if (dist_.world_size() <= 1) return;
    std::vector<size_t> reverse;
    for (size_t k = params_.size(); k-- > 0;) reverse.push_back(k);
    buckets_ = partition(reverse);
    allocate();
    reset_locked();
    if (!overlap) return;
    for (size_t k = 0; k < params_.size(); ++k) {
      if (!params_[k].requires_grad()) continue;
      auto acc = torch::autograd::impl::grad_accumulator(params_[k]);
      if (!acc) continue;
      uintptr_t key = acc->add_post_hook(std::make_unique<ReadyHook>(this, k));
      hooks_.push_back({acc, key});  // (kept alive: the parameter itself holds it weakly)
    }
  }
  ~GradientReducer() {
    for (auto& [acc, key] : hooks_) acc->del_post_hook(key);
  }
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  int64_t num_buckets() const { return int64_t(buckets_.size()); }

  // Watch the next backward pass: its gradients are all-reduced as they are accumulated.
  void prepare_for_backward() {
    std::lock_guard<std::mutex> lock(mu_);
    armed_ = !hooks_.empty();
    if (!rebuilt_) seen_.clear();
  }

  // Starts what is left and waits for every bucket (see the class).
  void reduce() {
    if (dist_.world_size() <= 1) return;
    std::vector<std::unique_ptr<Work>> works;
    bool twice = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      armed_ = false;
      for (; next_ < buckets_.size(); ++next_) launch_locked(next_);
      works = std::move(works_);
      twice = twice_;
      reset_locked();
    }
    for (auto& w : works) w->wait();
    if (twice)
      throw std::logic_error("GradientReducer: a parameter's gradient was accumulated twice in the backward pass being "
                             "reduced (call prepare_for_backward() right before the step's last backward on this rank)");
    if (!rebuilt_ && !hooks_.empty()) rebuild_from_rank0();
  }

  // Zero gradients for the next step, in place in the buckets (every .grad defined, zero); with one
  // rank, every .grad dropped (the optimizer's zero_grad(), set_to_none).
  void zero_grad() {
    torch::NoGradGuard ng;
    if (dist_.world_size() <= 1) {
      for (auto& p : params_) p.mutable_grad() = torch::Tensor();
      return;
    }
    if (!rebuild_.empty()) {  // the new buckets, now that the gradients are no longer needed
      for (auto& p : params_) p.mutable_grad() = torch::Tensor();
      flats_.clear();
      views_.clear();  // (the old buffers are freed before the new ones are made)
      buckets_ = std::move(rebuild_);
      rebuild_.clear();
      allocate();
      std::lock_guard<std::mutex> lock(mu_);
      reset_locked();
      return;
    }
    for (auto& f : flats_) f.zero_();
    for (size_t k = 0; k < params_.size(); ++k) params_[k].mutable_grad() = views_[k];
  }

 private:
  struct ReadyHook final : torch::autograd::FunctionPostHook {
    ReadyHook(GradientReducer* r, size_t k) : r_(r), k_(k) {}
    torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                              const torch::autograd::variable_list&) override {
      r_->mark_ready(k_);
      return outputs;
    }
    GradientReducer* r_;
    size_t k_;
  };

  // Buckets over the parameters in `order`: a new one at a dtype or device change or once the
  // current holds its share of bytes.
  std::vector<std::vector<size_t>> partition(const std::vector<size_t>& order) const {
    std::vector<std::vector<size_t>> buckets;
    int64_t bytes = 0, cap = first_cap_;
    for (size_t k : order) {
      const torch::Tensor& p = params_[k];
      if (buckets.empty() || bytes >= cap || p.scalar_type() != params_[buckets.back().front()].scalar_type() ||
          p.device() != params_[buckets.back().front()].device()) {
        if (!buckets.empty()) cap = cap_;
        buckets.emplace_back();
        bytes = 0;
      }
      buckets.back().push_back(k);
      bytes += p.numel() * int64_t(p.element_size());
    }
    return buckets;
  }

  // The buffers of buckets_ and each parameter's view; the gradients there already are copied in.
  void allocate() {
    torch::NoGradGuard ng;
    flats_.clear();
    bucket_of_.assign(params_.size(), 0);
    views_.assign(params_.size(), torch::Tensor());
    for (size_t b = 0; b < buckets_.size(); ++b) {
      int64_t n = 0;
      for (size_t k : buckets_[b]) n += params_[k].numel();
      flats_.push_back(torch::zeros({n}, params_[buckets_[b].front()].options().requires_grad(false)));
      int64_t at = 0;
      for (size_t k : buckets_[b]) {
        bucket_of_[k] = b;
        views_[k] = flats_[b].narrow(0, at, params_[k].numel()).view(params_[k].sizes());
        at += params_[k].numel();
      }
      bind(b);
    }
  }

  // After the first reduction with hooks, as DDP's rebuild_buckets: the buckets again, in the
  // order rank 0 saw the gradients become ready (then those it never saw, in reverse order), so
  // that a bucket no longer waits for a parameter whose gradient comes late in the backward pass
  // (a layer's input norm, registered early in its layer, is ready after the layer's projections).
  // Rank 0's order is broadcast, so every rank decides the same. The new buckets are made by the
  // next zero_grad(), when the gradients are no longer needed (no second copy of them); when they
  // hold the same parameters as now, nothing changes.
  void rebuild_from_rank0() {
    std::string mine;
    if (dist_.rank() == 0)
      for (size_t k : seen_) {
        uint32_t v = uint32_t(k);
        mine.append(reinterpret_cast<const char*>(&v), sizeof v);
      }
    seen_.clear();
    const std::string got = dist_.broadcast_bytes(mine, 0);
    if (got.empty()) return;  // rank 0 had no micro-batch: at the next reduction
    rebuilt_ = true;
    seen_.shrink_to_fit();
    std::vector<size_t> order;
    std::vector<bool> in(params_.size(), false);
    for (size_t i = 0; i + sizeof(uint32_t) <= got.size(); i += sizeof(uint32_t)) {
      uint32_t v;
      std::memcpy(&v, got.data() + i, sizeof v);
      if (v < params_.size() && !in[v]) order.push_back(v), in[v] = true;
    }
    for (size_t k = params_.size(); k-- > 0;)
      if (!in[k]) order.push_back(k);
    auto next = partition(order);
    auto sorted = [](std::vector<std::vector<size_t>> bs) {
      for (auto& b : bs) std::sort(b.begin(), b.end());
      return bs;
    };
    if (sorted(next) != sorted(buckets_)) rebuild_ = std::move(next);
  }

  // On the autograd thread, after parameter k's gradient was accumulated into .grad.
  void mark_ready(size_t k) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!armed_) return;
    if (ready_[k]) {  // harmless until its bucket has started: it reads the gradient then
      if (bucket_of_[k] < next_) twice_ = true;
      return;
    }
    ready_[k] = true;
    if (!rebuilt_) seen_.push_back(k);
    if (--pending_[bucket_of_[k]] > 0) return;
    for (; next_ < buckets_.size() && pending_[next_] == 0; ++next_) launch_locked(next_);
  }

  // Every gradient of bucket b in the bucket: a view already (accumulated in place), zeros where
  // there is none, copied in where the optimizer replaced it.
  void bind(size_t b) {
    torch::NoGradGuard ng;
    for (size_t k : buckets_[b]) {
      torch::Tensor g = params_[k].grad();
      if (g.defined() && g.data_ptr() == views_[k].data_ptr() && g.sizes() == views_[k].sizes() &&
          g.strides() == views_[k].strides())
        continue;
      if (g.defined())
        views_[k].copy_(g);
      else
        views_[k].zero_();
      params_[k].mutable_grad() = views_[k];
    }
  }

  void launch_locked(size_t b) {
    bind(b);
    works_[b] = dist_.all_reduce_async(flats_[b], ReduceOp::kSum);
  }

  void reset_locked() {
    ready_.assign(params_.size(), false);
    pending_.assign(buckets_.size(), 0);
    for (size_t b = 0; b < buckets_.size(); ++b) pending_[b] = buckets_[b].size();
    works_.clear();
    works_.resize(buckets_.size());
    next_ = 0;
    armed_ = false;
    twice_ = false;
  }

  Distributed& dist_;
  std::vector<torch::Tensor> params_;
  int64_t cap_, first_cap_;                   // bucket bytes: the others', the first bucket's
  bool rebuilt_ = false;                      // rebuild_from_rank0 has had rank 0's order
  std::vector<size_t> seen_;                  // before it: the order parameters became ready
  std::vector<std::vector<size_t>> buckets_;  // parameter indices: reverse order, then rank 0's ready order
  std::vector<std::vector<size_t>> rebuild_;  // the buckets the next zero_grad() makes, if any
  std::vector<size_t> bucket_of_;
  std::vector<torch::Tensor> flats_;  // per bucket: its gradients, flat
  std::vector<torch::Tensor> views_;  // per parameter: its slice of its bucket, shaped as it
  std::vector<std::pair<std::shared_ptr<torch::autograd::Node>, uintptr_t>> hooks_;
  std::mutex mu_;
  bool armed_ = false, twice_ = false;
  std::vector<bool> ready_;
  std::vector<size_t> pending_;  // per bucket: parameters not yet ready
  size_t next_ = 0;              // the next bucket to start (buckets start in order)
  std::vector<std::unique_ptr<Work>> works_;
};

// The same sums without overlap: all-reduces the gradients of `params` in buckets after backward
// (GradientReducer with overlap off). A no-op on one rank.
inline void all_reduce_gradients(Distributed& dist, const std::vector<torch::Tensor>& params,
                                 int64_t bucket_bytes = 25 << 20) {
  if (dist.world_size() <= 1) return;
  GradientReducer(dist, params, false, bucket_bytes, bucket_bytes).reduce();
}

// This rank's contiguous block [lo, hi) of `n` items (rank r of W: n*r/W .. n*(r+1)/W; a block may
// be empty), as evaluation and GRPO split their prompts. The engine seeds prompt i of a call with
// seed + 1000 i (SampleOptions::seed), so a block sampled with shard_seed(seed, lo) gets the seeds
// its prompts have in one process: the samples do not depend on the number of ranks.
struct Shard {
  size_t lo = 0, hi = 0;
};
inline Shard contiguous_shard(size_t n, const Distributed& dist) {
  const size_t W = size_t(dist.world_size()), R = size_t(dist.rank());
  return {n * R / W, n * (R + 1) / W};
}
inline uint64_t shard_seed(uint64_t seed, size_t lo) { return seed + 1000 * uint64_t(lo); }

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
