// Pieces every training algorithm needs, so plugins share them instead of copying: learning-rate
// schedules (Hugging Face's names), an epoch-shuffled data order that any step can recompute
// (exact resume), and checkpoints of weights + optimizer + step under the stage's checkpoint
// directory. Header-only; requires LibTorch like model.h.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <random>
#include <string>
#include <vector>

#include <ATen/autocast_mode.h>
#include <nlohmann/json.hpp>

#include "distributed.h"
#include "durable_io.h"
#include "model.h"
#include "options.h"

namespace warmup {

// Bounds shared by the training algorithms' options (Hugging Face TrainingArguments names).
// A stage never takes more than kMaxSteps optimizer steps (epochs x steps per epoch is checked
// against it once the data are known), and the optimizer's numbers stay where AdamW is defined.
inline constexpr int64_t kMaxSteps = 1'000'000'000;
inline constexpr double kMaxEpochs = 1e6;
inline Bounds learning_rate_bounds() { return above(0).at_most(1); }
inline Bounds adam_beta_bounds() { return at_least(0).below(1); }
inline Bounds adam_epsilon_bounds() { return above(0).at_most(1); }  // divides the update
inline Bounds epochs_bounds() { return above(0).at_most(kMaxEpochs); }
inline Bounds steps_bounds() { return at_least(0).at_most(kMaxSteps); }

// TRL's `logging_steps` (transformers TrainingArguments): a training algorithm logs its step line
// every N optimizer steps, and always at the first and the last. Default 10, as there.
inline int64_t logging_steps_option(Options& o) {
  return o.get<int64_t>("logging_steps", 10, at_least(1).at_most(kMaxSteps));
}
inline bool log_this_step(int64_t step, int64_t total, int64_t logging_steps) {
  return step == 1 || step == total || step % logging_steps == 0;
}

// TRL options that have no meaning here, refused with what to use instead (ConfigError at the key).
inline void refuse_trl_only_options(Options& o) {
  if (o.has("use_vllm"))
    o.fail("use_vllm", "warmup generates with its own engine in the same process (paged KV cache, continuous "
                       "batching, prefix caching; no vLLM server to start): remove use_vllm");
  if (o.has("report_to"))
    o.fail("report_to", "every metric, sample and parameter goes to the run store (SQLite): read them with "
                        "`warmup runs show|table|export`; remove report_to");
}

// How the gradients of a data-parallel run are all-reduced (GradientReducer): `ddp_bucket_cap_mb`
// (transformers TrainingArguments; DDP's bucket_cap_mb, default 25 MB per bucket) and
// `overlap_comm` (DeepSpeed's zero_optimization.overlap_comm; default true: each bucket is
// all-reduced while backward computes the rest; false: after it). Only matter with several ranks.
struct DataParallelOptions {
  bool overlap_comm = true;
  int64_t bucket_bytes = 25 << 20;
};
inline DataParallelOptions data_parallel_options(Options& o) {
  DataParallelOptions d;
  d.overlap_comm = o.get<bool>("overlap_comm", true);
  d.bucket_bytes = int64_t(o.get<double>("ddp_bucket_cap_mb", 25, above(0).at_most(1 << 20)) * double(1 << 20));
  return d;
}
inline GradientReducer make_gradient_reducer(Distributed& dist, std::vector<torch::Tensor> params,
                                             const DataParallelOptions& d) {
  // (the reducer makes every cap at least one byte)
  return GradientReducer(dist, std::move(params), d.overlap_comm, d.bucket_bytes, std::min<int64_t>(1 << 20, d.bucket_bytes));
}

// TRL's ModelConfig LoRA options (trl/trainer/model_config.py; PEFT's LoraConfig): `use_peft`
// (default false: full-parameter training), `lora_r` 16, `lora_alpha` 32, `lora_dropout` 0.05,
// `lora_target_modules` (a list of module names, "all-linear", or one string: a regular expression
// fully matching the module's name, as PEFT reads a string; default q_proj and v_proj, PEFT's for
// Qwen2/Llama/Qwen3), `use_rslora` false. nullopt when use_peft is false (the other keys are then
// refused: they would do nothing).
inline std::optional<LoraOptions> lora_options(Options& o) {
  bool on = o.get<bool>("use_peft", false);
  const char* keys[] = {"lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "use_rslora"};
  if (!on) {
    for (const char* k : keys)
      if (o.has(k)) o.fail(k, "needs use_peft = true (LoRA is off: training is full-parameter)");
    return std::nullopt;
  }
  LoraOptions l;
  l.r = o.get<int64_t>("lora_r", 16, at_least(1).at_most(1 << 16));
  l.alpha = o.get<double>("lora_alpha", 32.0, above(0).at_most(1e6));
  l.dropout = o.get<double>("lora_dropout", 0.05, at_least(0).below(1));
  l.use_rslora = o.get<bool>("use_rslora", false);
  if (o.has("lora_target_modules")) {
    std::vector<std::string> names;
    try {
      names = o.get<std::vector<std::string>>("lora_target_modules", {});
    } catch (const ConfigError&) {
      names = {o.get<std::string>("lora_target_modules", "")};
      // One string: PEFT's regular expression (re.fullmatch on the module's name), unless it is
      // PEFT's all-linear shorthand; ["all-linear"] means the same.
      if (names[0] != "all-linear") l.target_regex = names[0], names.clear();
    }
    if (names.empty() && l.target_regex.empty()) o.fail("lora_target_modules", "must name at least one module");
    for (const auto& n : names)
      if (n.empty()) o.fail("lora_target_modules", "has an empty name");
    l.target_modules = names;
  }
  return l;
}

// The parameters an optimizer should step: those that require gradients (with LoRA, the adapters).
inline std::vector<torch::Tensor> trainable_parameters(Policy& policy) {
  std::vector<torch::Tensor> out;
  for (auto& p : policy.module().parameters())
    if (p.requires_grad()) out.push_back(p);
  return out;
}

// Seeds torch's default generators (what dropout, e.g. lora_dropout, draws from) from the stage's
// seed and the 0-based step: a resumed run draws the same masks at step s as an uninterrupted one.
inline void seed_step(int64_t seed, int64_t step) {
  torch::manual_seed(uint64_t(seed) * 0x9E3779B97F4A7C15ULL + uint64_t(step) * 1000003ULL + 1);
}

// "ETA 3m10s" from the time so far and the share done; "" before the first step.
inline std::string eta_text(double elapsed_s, int64_t done, int64_t total) {
  if (done <= 0 || total <= done) return done >= total && done > 0 ? "done" : "";
  double left = elapsed_s / double(done) * double(total - done);
  char buf[32];
  if (left >= 3600) std::snprintf(buf, sizeof buf, "ETA %dh%02dm", int(left / 3600), int(left / 60) % 60);
  else if (left >= 60) std::snprintf(buf, sizeof buf, "ETA %dm%02ds", int(left / 60), int(left) % 60);
  else std::snprintf(buf, sizeof buf, "ETA %.0fs", left);
  return buf;
}
// At least 16 bytes per token of a batch (ids and targets as int64): what bounds lengths and rows.
inline constexpr long double kMinBytesPerToken = 16;

// Optimizer steps of a stage: `max_steps` when > 0, else ceil(epochs x steps_per_epoch), refused
// (ConfigError naming the product and the bound) when over kMaxSteps.
inline int64_t total_steps(const std::string& algorithm, double epochs, int64_t steps_per_epoch, int64_t max_steps) {
  if (max_steps > 0) return max_steps;
  long double t = std::ceil(static_cast<long double>(epochs) * static_cast<long double>(steps_per_epoch));
  if (!(t <= static_cast<long double>(kMaxSteps)))
    throw ConfigError(algorithm + ": num_train_epochs " + detail::format_double(epochs) + " x " +
                      std::to_string(steps_per_epoch) + " steps per epoch is " + detail::format_double(double(t)) +
                      " steps, more than the " + std::to_string(kMaxSteps) + " a stage may take");
  return std::max<int64_t>(1, static_cast<int64_t>(t));
}

// bf16 mixed precision as torch.autocast (the Hugging Face Trainer's `bf16 = true`): inside the
// scope, matmuls and other autocast-eligible ops of `device` run in bfloat16 while weights,
// gradients and optimizer state keep their own dtype (float32). No-op when `enabled` is false.
class Autocast {
 public:
  Autocast(torch::Device device, bool enabled) : type_(device.type()), enabled_(enabled) {
    if (!enabled_) return;
    was_ = at::autocast::is_autocast_enabled(type_);
    dtype_ = at::autocast::get_autocast_dtype(type_);
    at::autocast::set_autocast_dtype(type_, at::kBFloat16);
    at::autocast::set_autocast_enabled(type_, true);
    at::autocast::increment_nesting();
  }
  ~Autocast() {
    if (!enabled_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(type_, was_);
    at::autocast::set_autocast_dtype(type_, dtype_);
  }
  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;

 private:
  c10::DeviceType type_;
  bool enabled_, was_ = false;
  at::ScalarType dtype_ = at::kBFloat16;
};

// constant | constant_with_warmup | linear | cosine (the last two decay to 0 after warmup).
struct LrSchedule {
  std::string type = "constant_with_warmup";
  double lr = 1e-6;
  int64_t warmup_steps = 0;

  static bool known(const std::string& t) {
    return t == "constant" || t == "constant_with_warmup" || t == "linear" || t == "cosine";
  }
  // Learning rate of 0-based `step` out of `total`.
  double at(int64_t step, int64_t total) const {
    if (type == "constant") return lr;
    if (step < warmup_steps) return lr * double(step + 1) / double(std::max<int64_t>(1, warmup_steps));
    if (type == "constant_with_warmup") return lr;
    double progress = double(step - warmup_steps) / double(std::max<int64_t>(1, total - warmup_steps));
    if (type == "linear") return lr * std::max(0.0, 1.0 - progress);
    return lr * 0.5 * (1.0 + std::cos(M_PI * progress));  // cosine
  }
  template <class Optimizer>
  void apply(Optimizer& opt, double value) const {
    for (auto& g : opt.param_groups()) g.options().set_lr(value);
  }
};

// Item k (over all epochs) of n items in epoch-shuffled order; each epoch has its own seeded
// permutation, so step s of a resumed run sees exactly what step s of an uninterrupted run saw.
class EpochOrder {
 public:
  EpochOrder(int64_t n, uint64_t seed) : n_(n), seed_(seed) {}
  int64_t operator()(int64_t k) {
    int64_t epoch = k / n_;
    if (epoch != epoch_) {
      order_.resize(size_t(n_));
      for (int64_t i = 0; i < n_; ++i) order_[size_t(i)] = i;
      std::mt19937_64 rng(seed_ * 7919ULL + uint64_t(epoch));
      std::shuffle(order_.begin(), order_.end(), rng);
      epoch_ = epoch;
    }
    return order_[size_t(k % n_)];
  }

 private:
  int64_t n_;
  uint64_t seed_;
  int64_t epoch_ = -1;
  std::vector<int64_t> order_;
};

// <checkpoint_dir>/step-N/{model/, optimizer.pt, state.json, manifest.json}; `latest` names the
// newest. Every file is written, flushed and fsynced (durable::write_file_durable; the model's
// files by the host's writers, then fsynced here), then manifest.json (each file's relative path
// -> size and sha256) is written last in the step folder, then `latest`, so `latest` only ever
// names a checkpoint that verifies, and a failed or interrupted save leaves the previous checkpoint
// in charge (a failed write throws naming the file: the stage fails). The metrics and samples
// buffered up to `step` are written to the store before `latest` moves: a resume from this
// checkpoint does not re-run those steps, so they must not be lost with the process.
namespace detail {

// Regular files under `dir`, relative, sorted; manifest.json and leftover *.tmp files excluded.
inline std::vector<std::string> checkpoint_files(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::string rel = std::filesystem::relative(e.path(), dir).generic_string();
    if (rel == "manifest.json" || (rel.size() > 4 && rel.compare(rel.size() - 4, 4, ".tmp") == 0)) continue;
    out.push_back(rel);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Empty when <dir>/manifest.json exists and every file it lists has its size and sha256 (and its
// step is the folder's); otherwise why not.
inline std::string verify_checkpoint(const std::filesystem::path& dir, int64_t* step = nullptr) {
  std::ifstream in(dir / "manifest.json");
  if (!in) return (dir / "manifest.json").string() + " is missing (the save did not complete)";
  nlohmann::json m = nlohmann::json::parse(in, nullptr, false);
  if (m.is_discarded() || !m.is_object() || !m.contains("files") || !m["files"].is_object() || m["files"].empty() ||
      !m.contains("step") || !m["step"].is_number_integer())
    return (dir / "manifest.json").string() + " is not a checkpoint manifest";
  for (const auto& [rel, want] : m["files"].items()) {
    std::filesystem::path f = dir / rel;
    std::error_code ec;
    if (!std::filesystem::is_regular_file(f, ec)) return f.string() + " is missing";
    uint64_t size = 0;
    std::string hash;
    try {
      hash = durable::sha256_file(f, &size);
    } catch (const std::exception& e) {
      return e.what();
    }
    if (!want.is_object() || want.value("size", uint64_t(0)) != size || want.value("sha256", std::string()) != hash)
      return f.string() + " has " + std::to_string(size) + " bytes and sha256 " + hash.substr(0, 12) +
             ", the manifest says " + want.dump();
  }
  if (dir.filename().string() != "step-" + std::to_string(m["step"].get<int64_t>()))
    return (dir / "manifest.json").string() + " is for step " + std::to_string(m["step"].get<int64_t>());
  if (step) *step = m["step"].get<int64_t>();
  return "";
}

}  // namespace detail

//
// In a multi-process run only rank 0 writes (the others return at once): the weights are the same
// on every rank, and with ZeRO-1 the caller gathers the optimizer state to rank 0 first
// (Zero1::gather_state). `state` adds keys to state.json (e.g. the rows per step, checked on resume).
template <class Optimizer>
void save_checkpoint(StageContext& ctx, Policy& policy, Optimizer& opt, int64_t step,
                     const nlohmann::json& state = nlohmann::json::object()) {
  if (distributed(ctx).rank() != 0) return;
  std::filesystem::path root = ctx.checkpoint_dir();
  std::filesystem::path dir = root / ("step-" + std::to_string(step));
  std::filesystem::create_directories(dir);
  durable::fsync_path(root);  // (a manifest left by an earlier save of this step verifies only if the files match it)
  policy.save(dir / "model");
  {
    std::ostringstream os;
    torch::save(opt, os);
    durable::write_file_durable(dir / "optimizer.pt", os.str());
  }
  nlohmann::json st = state.is_object() ? state : nlohmann::json::object();
  st["step"] = step;
  durable::write_file_durable(dir / "state.json", st.dump() + "\n");
  nlohmann::json files = nlohmann::json::object();
  for (const std::string& rel : detail::checkpoint_files(dir)) {
    uint64_t size = 0;
    durable::fsync_path(dir / rel);
    std::string hash = durable::sha256_file(dir / rel, &size);
    files[rel] = {{"size", size}, {"sha256", hash}};
  }
  durable::fsync_path(dir / "model");
  durable::write_file_durable(dir / "manifest.json", nlohmann::json{{"step", step}, {"files", files}}.dump(1) + "\n");
  durable::fsync_path(root);
  ctx.flush();
  durable::write_file_durable(root / "latest", dir.filename().string() + "\n");
  ctx.log(LogLevel::kInfo, "checkpoint " + dir.string());
}

// ZeRO stage 1 (Rajbhandari et al. 2020, arXiv:1910.02054; DeepSpeed's zero_optimization.stage 1)
// over data-parallel ranks: each rank keeps AdamW state for a 1/N share of the parameters and
// steps only those; the updated parameters are then broadcast from their owner. The gradients are
// all-reduced in full before (every rank clips with the same global norm). With one AdamW over all
// parameters: the other ranks' gradients are dropped before opt.step(), so AdamW neither creates
// nor updates their state (torch's AdamW skips parameters without a gradient). Parameters are
// shared out largest first to the least-loaded rank (ties by index), so the shares are balanced.
// Disabled (or one rank): every method but state_bytes is a no-op.
class Zero1 {
 public:
  Zero1(Distributed& dist, std::vector<torch::Tensor> params, bool enabled)
      : dist_(dist), params_(std::move(params)), on_(enabled && dist.world_size() > 1), owner_(params_.size(), 0) {
    if (!on_) return;
    std::vector<size_t> order(params_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return params_[a].numel() > params_[b].numel(); });
    std::vector<int64_t> load(size_t(dist.world_size()), 0);
    for (size_t i : order) {
      int r = int(std::min_element(load.begin(), load.end()) - load.begin());
      owner_[i] = r;
      load[size_t(r)] += params_[i].numel();
    }
  }
  bool enabled() const { return on_; }
  bool mine(size_t i) const { return owner_[i] == dist_.rank(); }

  // Before opt.step(): drops the gradients of the parameters another rank owns.
  void drop_foreign_grads() {
    if (!on_) return;
    for (size_t i = 0; i < params_.size(); ++i)
      if (!mine(i)) params_[i].mutable_grad() = torch::Tensor();
  }
  // After opt.step(): every parameter from its owner, one flattened broadcast per rank.
  void broadcast_params() {
    if (!on_) return;
    torch::NoGradGuard ng;
    for (int r = 0; r < dist_.world_size(); ++r) {
      std::vector<torch::Tensor> mine_r;
      for (size_t i = 0; i < params_.size(); ++i)
        if (owner_[i] == r) mine_r.push_back(params_[i]);
      if (mine_r.empty()) continue;
      std::vector<torch::Tensor> flat;
      for (auto& p : mine_r) flat.push_back(p.detach().reshape({-1}));
      torch::Tensor buf = torch::cat(flat);
      dist_.broadcast(buf, r);
      int64_t at = 0;
      for (auto& p : mine_r) {
        p.detach().copy_(buf.narrow(0, at, p.numel()).view_as(p));
        at += p.numel();
      }
    }
  }
  // Before save_checkpoint: rank 0 receives every other rank's AdamW state (exp_avg, exp_avg_sq,
  // step), so it saves the whole optimizer; drop_foreign_state(opt) after the save frees it again.
  void gather_state(torch::optim::AdamW& opt) {
    if (!on_) return;
    for (size_t i = 0; i < params_.size(); ++i) {
      if (owner_[i] == 0) continue;
      void* key = params_[i].unsafeGetTensorImpl();
      // Zeros and step 0 where the owner has no state yet (no step taken): rank 0 then adds none.
      torch::Tensor avg = torch::zeros_like(params_[i]), sq = torch::zeros_like(params_[i]);
      torch::Tensor step = torch::zeros({1}, torch::kFloat64);
      if (auto it = opt.state().find(key); mine(i) && it != opt.state().end()) {
        auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
        avg.copy_(s.exp_avg()), sq.copy_(s.exp_avg_sq());
        step.fill_(double(s.step()));
      }
      dist_.broadcast(avg, owner_[i]);
      dist_.broadcast(sq, owner_[i]);
      dist_.broadcast(step, owner_[i]);
      if (dist_.rank() == 0 && step.item<double>() > 0) {
        auto s = std::make_unique<torch::optim::AdamWParamState>();
        s->exp_avg(avg);
        s->exp_avg_sq(sq);
        s->step(int64_t(step.item<double>()));
        opt.state()[key] = std::move(s);
      }
    }
  }
  // After a save on rank 0, or after loading a whole optimizer: keeps only this rank's state.
  void drop_foreign_state(torch::optim::AdamW& opt) {
    if (!on_) return;
    for (size_t i = 0; i < params_.size(); ++i)
      if (!mine(i)) opt.state().erase(params_[i].unsafeGetTensorImpl());
  }
  // Bytes of optimizer state this rank holds.
  static int64_t state_bytes(torch::optim::AdamW& opt) {
    int64_t n = 0;
    for (auto& [key, st] : opt.state()) {
      auto& s = static_cast<torch::optim::AdamWParamState&>(*st);
      for (const torch::Tensor& t : {s.exp_avg(), s.exp_avg_sq(), s.max_exp_avg_sq()})
        if (t.defined()) n += t.numel() * int64_t(t.element_size());
    }
    return n;
  }

 private:
  Distributed& dist_;
  std::vector<torch::Tensor> params_;
  bool on_;
  std::vector<int> owner_;
};

// A training step whose loss or gradient norm is NaN or infinite stops training: its gradients are
// dropped before the optimizer sees them, the weights and optimizer after `done` good steps are
// saved as a checkpoint (to resume from or inspect) unless `save` is false (the state is not that
// of a whole step), and the stage fails with the step and the values.
inline bool finite_step(double loss, double grad_norm) { return std::isfinite(loss) && std::isfinite(grad_norm); }

template <class Optimizer>
[[noreturn]] void stop_on_nonfinite(StageContext& ctx, Policy& policy, Optimizer& opt, int64_t done, double loss,
                                    double grad_norm, bool save = true,
                                    const nlohmann::json& state = nlohmann::json::object()) {
  opt.zero_grad();
  std::string msg = "step " + std::to_string(done + 1) + ": the loss is " + detail::format_double(loss) +
                    " and the gradient norm " + detail::format_double(grad_norm) +
                    " (not finite): training stopped before the optimizer step; ";
  if (save) {
    save_checkpoint(ctx, policy, opt, done, state);
    msg += "the weights and optimizer after step " + std::to_string(done) + " are saved in " +
           (ctx.checkpoint_dir() / ("step-" + std::to_string(done))).string();
  } else {
    msg += "no checkpoint written (the step was partly applied); the latest is in " + ctx.checkpoint_dir().string();
  }
  throw std::runtime_error(msg);
}

// The stage's trained weights as its output: <run_dir>/<stage>/model (a Hugging Face directory),
// handed to the next stage and registered as the artifact "model".
// In a multi-process run rank 0 writes it and every rank waits for it (the next stage loads it).
inline void save_output_model(StageContext& ctx, Policy& policy) {
  std::filesystem::path out = ctx.run_dir() / ctx.stage_name() / "model";
  Distributed& dist = distributed(ctx);
  if (dist.rank() == 0) {
    policy.save(out);
    ctx.artifact(out, "model");
  }
  ctx.set_output_model(out);
  dist.barrier();
}

// Loads the newest checkpoint that verifies (weights, optimizer) and returns its step, or 0
// without one; drops what an interrupted attempt recorded after that step
// (StageContext::discard_after). `latest` is tried first; when it is missing, empty or names a
// checkpoint whose manifest does not verify, the step-N folders are tried newest first and the
// first whose manifest verifies is taken (logged with why `latest` was not). A folder without a
// manifest (written before manifests existed) is trusted only when `latest` names it.
// `state` (optional) receives the checkpoint's state.json ({} when starting at step 0). Every rank
// of a multi-process run loads the same checkpoint (the run folder is shared).
template <class Optimizer>
int64_t restore_checkpoint(StageContext& ctx, Policy& policy, Optimizer& opt, nlohmann::json* state = nullptr) {
  if (state) *state = nlohmann::json::object();
  std::filesystem::path root = ctx.checkpoint_dir();
  std::string name, why;
  {
    std::ifstream in(root / "latest");
    if (!(in >> name)) why = (root / "latest").string() + (in.is_open() ? " is empty" : " is missing");
  }
  std::filesystem::path dir;
  int64_t step = -1;
  if (!name.empty()) {
    std::error_code ec;
    std::filesystem::path named = root / name;
    if (name.find('/') != std::string::npos || name.rfind("step-", 0) != 0 || !std::filesystem::is_directory(named, ec)) {
      why = (root / "latest").string() + " names '" + name + "', not a checkpoint folder";
    } else if (!std::filesystem::exists(named / "manifest.json")) {
      dir = named;  // a checkpoint from before manifests: `latest` moved only after it was written
    } else if (std::string bad = detail::verify_checkpoint(named, &step); bad.empty()) {
      dir = named;
    } else {
      why = bad;
    }
  }
  if (dir.empty()) {
    std::vector<std::pair<int64_t, std::filesystem::path>> found;
    std::error_code ec;
    if (std::filesystem::is_directory(root, ec))
      for (const auto& e : std::filesystem::directory_iterator(root)) {
        std::string f = e.path().filename().string();
        if (!e.is_directory() || f.rfind("step-", 0) != 0 || f.size() == 5 ||
            f.find_first_not_of("0123456789", 5) != std::string::npos || f.size() > 20)
          continue;
        found.emplace_back(std::stoll(f.substr(5)), e.path());
      }
    std::sort(found.rbegin(), found.rend());
    for (const auto& [n, d] : found) {
      std::string bad = detail::verify_checkpoint(d, &step);
      if (bad.empty()) {
        dir = d;
        break;
      }
      ctx.log(LogLevel::kWarn, "checkpoint " + d.string() + " skipped: " + bad);
    }
    if (dir.empty()) {
      if (std::filesystem::exists(root / "latest") || !found.empty())
        ctx.log(LogLevel::kWarn, "no checkpoint verifies (" + why + "): starting at step 0");
      else
        ctx.log(LogLevel::kInfo, "no checkpoint to resume from: starting at step 0");
      ctx.discard_after(0);
      return 0;
    }
    if (!why.empty()) ctx.log(LogLevel::kWarn, why + "; resuming from " + dir.string() + ", the newest that verifies");
  }
  policy.load_weights(dir / "model");
  torch::load(opt, (dir / "optimizer.pt").string());
  std::ifstream st(dir / "state.json");
  nlohmann::json sj = nlohmann::json::parse(st);
  step = sj.at("step").get<int64_t>();
  if (state) *state = sj;
  ctx.log(LogLevel::kInfo, "resuming from " + dir.string() + " at step " + std::to_string(step));
  ctx.discard_after(step);
  return step;
}

}  // namespace warmup
