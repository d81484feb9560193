// Pieces every training algorithm needs, so plugins share them instead of copying: learning-rate
// schedules (Hugging Face's names), an epoch-shuffled data order that any step can recompute
// (exact resume), and checkpoints of weights + optimizer + step under the stage's checkpoint
// directory. Header-only; requires LibTorch like model.h.
#pragma once

#include <cmath>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <ATen/autocast_mode.h>
#include <nlohmann/json.hpp>

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

// <checkpoint_dir>/step-N/{model/, optimizer.pt, state.json}; `latest` names the newest and is
// written last, so a crash mid-save leaves the previous checkpoint in charge. The metrics and
// samples buffered up to `step` are written to the store before `latest` moves: a resume from this
// checkpoint does not re-run those steps, so they must not be lost with the process.
template <class Optimizer>
void save_checkpoint(StageContext& ctx, Policy& policy, Optimizer& opt, int64_t step) {
  std::filesystem::path dir = ctx.checkpoint_dir() / ("step-" + std::to_string(step));
  policy.save(dir / "model");
  torch::save(opt, (dir / "optimizer.pt").string());
  std::ofstream(dir / "state.json") << nlohmann::json{{"step", step}}.dump() << "\n";
  ctx.flush();
  std::filesystem::path latest = ctx.checkpoint_dir() / "latest", tmp = ctx.checkpoint_dir() / "latest.tmp";
  std::ofstream(tmp) << dir.filename().string() << "\n";
  std::filesystem::rename(tmp, latest);
  ctx.log(LogLevel::kInfo, "checkpoint " + dir.string());
}

// A training step whose loss or gradient norm is NaN or infinite stops training: its gradients are
// dropped before the optimizer sees them, the weights and optimizer after `done` good steps are
// saved as a checkpoint (to resume from or inspect) unless `save` is false (the state is not that
// of a whole step), and the stage fails with the step and the values.
inline bool finite_step(double loss, double grad_norm) { return std::isfinite(loss) && std::isfinite(grad_norm); }

template <class Optimizer>
[[noreturn]] void stop_on_nonfinite(StageContext& ctx, Policy& policy, Optimizer& opt, int64_t done, double loss,
                                    double grad_norm, bool save = true) {
  opt.zero_grad();
  std::string msg = "step " + std::to_string(done + 1) + ": the loss is " + detail::format_double(loss) +
                    " and the gradient norm " + detail::format_double(grad_norm) +
                    " (not finite): training stopped before the optimizer step; ";
  if (save) {
    save_checkpoint(ctx, policy, opt, done);
    msg += "the weights and optimizer after step " + std::to_string(done) + " are saved in " +
           (ctx.checkpoint_dir() / ("step-" + std::to_string(done))).string();
  } else {
    msg += "no checkpoint written (the step was partly applied); the latest is in " + ctx.checkpoint_dir().string();
  }
  throw std::runtime_error(msg);
}

// The stage's trained weights as its output: <run_dir>/<stage>/model (a Hugging Face directory),
// handed to the next stage and registered as the artifact "model".
inline void save_output_model(StageContext& ctx, Policy& policy) {
  std::filesystem::path out = ctx.run_dir() / ctx.stage_name() / "model";
  policy.save(out);
  ctx.set_output_model(out);
  ctx.artifact(out, "model");
}

// Loads the latest checkpoint (weights, optimizer) and returns its step, or 0 without one; drops
// what an interrupted attempt recorded after that step (StageContext::discard_after).
template <class Optimizer>
int64_t restore_checkpoint(StageContext& ctx, Policy& policy, Optimizer& opt) {
  std::ifstream in(ctx.checkpoint_dir() / "latest");
  std::string name;
  if (!(in >> name)) {
    ctx.log(LogLevel::kInfo, "no checkpoint to resume from: starting at step 0");
    ctx.discard_after(0);
    return 0;
  }
  std::filesystem::path dir = ctx.checkpoint_dir() / name;
  policy.load_weights(dir / "model");
  torch::load(opt, (dir / "optimizer.pt").string());
  std::ifstream st(dir / "state.json");
  int64_t step = nlohmann::json::parse(st).at("step").get<int64_t>();
  ctx.log(LogLevel::kInfo, "resuming from " + dir.string() + " at step " + std::to_string(step));
  ctx.discard_after(step);
  return step;
}

}  // namespace warmup
