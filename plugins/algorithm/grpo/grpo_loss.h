// GRPO's advantage and loss, with TRL's GRPOTrainer semantics (trl 1.16 `_compute_loss` and
// `_generate_and_score_completions`), on (B, T) tensors where `mask` marks completion tokens.
// Header-only so the parity test runs the same code as the plugin.
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace grpo {

// Advantages of rewards laid out group after group (G completions per prompt): reward - group mean,
// divided by (std + 1e-4) for scale "group" (std within the group) or "batch" (std of all rewards);
// "none" leaves it unscaled (the paper). std is the unbiased (n - 1) one, as torch and TRL use.
// `zero_std` receives, per completion, whether its group's (or the batch's) std is ~0.
// `valid` (bool, one per completion; undefined = all): completions the rewards could not judge
// (Score::errored) are false: they are left out of their group's mean and std, as if the group
// were smaller, and get advantage 0 (and no loss: micro_batches masks them). A group with fewer
// than two judged completions has std 0 (zero_std true), its judged ones advantage 0.
inline torch::Tensor advantages(const torch::Tensor& rewards, int64_t G, const std::string& scale,
                                torch::Tensor* zero_std = nullptr, const torch::Tensor& valid = {}) {
  if (scale != "group" && scale != "batch" && scale != "none")
    throw std::invalid_argument("scale_rewards must be group, batch or none, got '" + scale + "'");
  if (valid.defined() && !valid.all().item<bool>()) {
    auto v = valid.to(rewards.dtype());
    auto vg = v.view({-1, G});
    auto n = vg.sum(1);
    auto mean = ((rewards.view({-1, G}) * vg).sum(1) / n.clamp_min(1)).repeat_interleave(G);
    auto dev = (rewards - mean) * v;
    torch::Tensor std;
    if (scale == "batch") {
      auto nb = v.sum();
      auto bmean = (rewards * v).sum() / nb.clamp_min(1);
      auto bstd = (((rewards - bmean) * v).pow(2).sum() / (nb - 1).clamp_min(1)).sqrt();
      std = (nb > 1).to(rewards.dtype()) * bstd.expand_as(rewards);
    } else {
      auto gstd = (dev.pow(2).view({-1, G}).sum(1) / (n - 1).clamp_min(1)).sqrt();
      std = ((n > 1).to(rewards.dtype()) * gstd).repeat_interleave(G);
    }
    auto adv = dev;
    if (scale != "none") adv = adv / (std + 1e-4);
    if (zero_std) *zero_std = torch::isclose(std, torch::zeros_like(std));
    return adv * v;
  }
  auto grouped = rewards.view({-1, G});
  auto mean = grouped.mean(1).repeat_interleave(G);
  torch::Tensor std;
  if (scale == "batch")
    std = rewards.numel() > 1 ? rewards.std().expand_as(rewards) : torch::zeros_like(rewards);
  else if (scale == "group" || scale == "none")
    std = G > 1 ? grouped.std(1).repeat_interleave(G) : torch::zeros_like(rewards);
  else
    throw std::invalid_argument("scale_rewards must be group, batch or none, got '" + scale + "'");
  auto adv = rewards - mean;
  if (scale != "none") adv = adv / (std + 1e-4);
  if (zero_std) *zero_std = torch::isclose(std, torch::zeros_like(std));
  return adv;
}

struct LossOptions {
  std::string loss_type = "bnpo";  // grpo | bnpo | dr_grpo | dapo
  double epsilon_low = 0.2, epsilon_high = 0.2;
  double beta = 0.0;
  int64_t max_completion_length = 256;  // dr_grpo's constant normaliser
  int64_t accumulation_steps = 1;       // micro-batches per optimizer step
  double num_items_in_batch = 0;        // dapo: completion tokens of the whole step
};

// Sums over the masked tokens (divide by `tokens` for TRL's global masked means).
struct LossStats {
  double kl = 0, entropy = 0, low_clipped = 0, high_clipped = 0, region_clipped = 0, tokens = 0;
};

// Importance sampling against the sampler (truncated/masked IS, "TIS"; Yao et al. 2025, "Your
// efficient RL framework secretly brings you off-policy RL training"; TRL 1.16's
// vllm_importance_sampling_* in GRPOTrainer._generate_and_score_completions, verl's
// rollout_is): the engine samples from a distribution that differs from the trainer's (numerics,
// and here top-k/top-p truncation), so each token's loss is weighted by
// trainer p(token) / sampler q(token).
struct ImportanceSampling {
  std::string mode = "sequence_mask";  // token_truncate | token_mask | sequence_truncate | sequence_mask
  double clip_min = 0.0;               // C_min (TRL: None; ratios are >= 0, so 0 is the same)
  double clip_max = 3.0;               // C_max (inf: none)
};

// Sums over the step's micro-batches, as TRL's metrics over its generation batch.
struct ImportanceStats {
  double ratio_sum = 0, ratio_count = 0, ratio_min = INFINITY, ratio_max = -INFINITY;
  double capped = 0;                      // ratios that truncate changed or mask zeroed
  double diff_sum = 0, diff_count = 0, diff_max = 0;  // |old - sampling| over judged tokens
  double kl_sum = 0;                      // KL(sampler || trainer) per token (k1 estimate), summed
};

// The IS weight (B, T) for token modes or (B, 1) for sequence modes, detached: exp(old - sampling)
// over the mask (NaN sampling log-probs: ratio 1), summed over each sequence first for sequence
// modes, then clipped to [clip_min, clip_max] (truncate) or zeroed outside it (mask). old: the
// trainer's log-probs (B, T) at sampling time; sampling: the engine's (B, T) (the distribution it
// drew from: after top-k/top-p, renormalised); mask (B, T) float. Throws std::invalid_argument for
// an unknown mode. Formulas and metrics: TRL 1.16 grpo_trainer.py.
inline torch::Tensor importance_sampling_ratio(const torch::Tensor& old, const torch::Tensor& sampling,
                                               const torch::Tensor& mask_in, const ImportanceSampling& o,
                                               ImportanceStats* stats = nullptr) {
  torch::NoGradGuard ng;
  const bool seq = o.mode == "sequence_mask" || o.mode == "sequence_truncate";
  const bool truncate = o.mode == "token_truncate" || o.mode == "sequence_truncate";
  if (!seq && !truncate && o.mode != "token_mask")
    throw std::invalid_argument("importance_sampling_mode must be token_truncate, token_mask, sequence_truncate or "
                                "sequence_mask, got '" + o.mode + "'");
  auto mask = mask_in.to(old.scalar_type());
  auto diff = torch::nan_to_num((old - sampling) * mask, 0.0);
  // The log-ratio is held below 80 (exp(80) ~ 5.5e34 fits a float; TRL does not bound it, which
  // only matters past any sensible clip): an infinite ratio would make 0-advantage rows NaN.
  auto raw = torch::exp(torch::clamp_max(seq ? diff.sum(-1, /*keepdim=*/true) : diff, 80.0));
  torch::Tensor ratio;
  if (truncate) {
    ratio = torch::clamp(raw, o.clip_min, o.clip_max);
  } else {
    ratio = raw.masked_fill((raw < o.clip_min).logical_or(raw > o.clip_max), 0.0);
  }
  if (stats) {
    auto flat = seq ? ratio.flatten() : ratio.masked_select(mask.gt(0));
    auto changed = seq ? (ratio != raw).flatten() : (ratio != raw).masked_select(mask.gt(0));
    if (flat.numel() > 0) {
      stats->ratio_sum += flat.sum().item<double>();
      stats->ratio_count += double(flat.numel());
      stats->ratio_min = std::min(stats->ratio_min, flat.min().item<double>());
      stats->ratio_max = std::max(stats->ratio_max, flat.max().item<double>());
      stats->capped += changed.sum().item<double>();
    }
    auto d = (old - sampling).abs();
    auto ok = mask.gt(0).logical_and(torch::isnan(d).logical_not());
    auto dv = d.masked_select(ok);
    if (dv.numel() > 0) {
      stats->diff_sum += dv.sum().item<double>();
      stats->diff_count += double(dv.numel());
      stats->diff_max = std::max(stats->diff_max, dv.max().item<double>());
      // KL(q || p) over tokens drawn from q (the sampler): k1 = log q - log p = sampling - old.
      // Unbiased even where q is p cut to a nucleus (k3 = p/q - 1 - log(p/q) is not: there
      // E_q[p/q] is the kept mass, not 1).
      stats->kl_sum += (sampling - old).masked_select(ok).sum().item<double>();
    }
  }
  return ratio;
}

// The loss of one micro-batch (already divided for gradient accumulation as TRL does).
// logps: current per-token log-probs (differentiable); old: at sampling time (undefined = logps
// detached, i.e. num_iterations == 1); ref: reference model's (needed when beta != 0);
// adv: (B); entropy: (B, T) or undefined (stats only); is_ratio: importance_sampling_ratio's
// weight, (B, T) or (B, 1), or undefined (none): it multiplies the clipped policy term before the
// KL term is added, as in TRL's _compute_loss.
inline torch::Tensor loss(const torch::Tensor& logps, const torch::Tensor& old, const torch::Tensor& ref,
                          const torch::Tensor& adv, const torch::Tensor& mask_in, const torch::Tensor& entropy,
                          const LossOptions& o, LossStats* stats = nullptr, const torch::Tensor& is_ratio = {}) {
  auto mask = mask_in.to(logps.scalar_type());
  auto a = adv.to(logps.scalar_type()).unsqueeze(1);
  auto old_lp = old.defined() ? old : logps.detach();
  auto coef1 = torch::exp(logps - old_lp);
  auto coef2 = torch::clamp(coef1, 1 - o.epsilon_low, 1 + o.epsilon_high);
  auto per_token = -torch::min(coef1 * a, coef2 * a);
  if (is_ratio.defined()) per_token = per_token * is_ratio.to(per_token.scalar_type());
  torch::Tensor kl;
  if (o.beta != 0.0) {
    if (!ref.defined()) throw std::invalid_argument("beta != 0 needs the reference log-probs");
    kl = torch::exp(ref - logps) - (ref - logps) - 1;
    per_token = per_token + o.beta * kl;
  }
  double accum = double(o.accumulation_steps);
  torch::Tensor out;
  if (o.loss_type == "grpo")
    out = ((per_token * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)).mean() / accum;
  else if (o.loss_type == "bnpo")
    out = (per_token * mask).sum() / mask.sum().clamp_min(1.0) / accum;
  else if (o.loss_type == "dr_grpo")
    out = (per_token * mask).sum() / double(per_token.size(0) * o.max_completion_length) / accum;
  else if (o.loss_type == "dapo")
    out = (per_token * mask).sum() / std::max(1.0, o.num_items_in_batch);
  else
    throw std::invalid_argument("loss_type must be grpo, bnpo, dr_grpo or dapo, got '" + o.loss_type + "'");
  if (stats) {
    torch::NoGradGuard ng;
    auto sum = [&](const torch::Tensor& x) { return (x.to(mask.scalar_type()) * mask).sum().item<double>(); };
    auto low = (coef1 < 1 - o.epsilon_low).logical_and(a < 0);
    auto high = (coef1 > 1 + o.epsilon_high).logical_and(a > 0);
    stats->tokens += mask.sum().item<double>();
    stats->low_clipped += sum(low);
    stats->high_clipped += sum(high);
    stats->region_clipped += sum(low.logical_or(high));
    if (kl.defined()) stats->kl += sum(kl.detach());
    if (entropy.defined()) stats->entropy += sum(entropy);
  }
  return out;
}

}  // namespace grpo
