// GRPO micro-batches: each rollout (prompt ids + sampled completion ids) becomes one right-padded
// row; `mask` is 1 exactly where the target token is a completion token (0 for truncated
// completions when mask_truncated_completions, and for completions the rewards could not judge:
// Score::errored). Header-only for the tests.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "warmup/model.h"
#include "warmup/reward.h"

namespace grpo {

struct Rollout {
  size_t prompt;                     // index of its prompt in the step
  std::vector<int32_t> prompt_ids;   // after left truncation
  warmup::TokenCompletion completion;
  warmup::Score score;
};

// DAPO's soft overlong punishment (Yu et al. 2025, "DAPO", Eq. 13; verl's
// reward_model.overlong_buffer {len, penalty_factor}; TRL's get_soft_overlong_punishment, which is
// this with factor 1): 0 for a completion of up to max_len - buffer tokens, then falling linearly
// to -factor at max_len tokens, -factor beyond. buffer 0: no penalty. Added to the total reward
// (grpo's overlong_buffer_length, overlong_penalty_factor).
inline double overlong_penalty(int64_t length, int64_t max_len, int64_t buffer, double factor) {
  if (buffer <= 0 || length <= max_len - buffer) return 0.0;
  if (length > max_len) return -factor;
  return double((max_len - buffer) - length) / double(buffer) * factor;
}

// DAPO's dynamic sampling criterion: a group is informative when its judged completions (not
// Score::errored) do not all have the same total reward; fewer than two judged: not informative.
// `group` = the G rollouts of one prompt.
inline bool informative_group(const std::vector<Rollout>& rolls, size_t first, size_t G) {
  bool seen = false;
  double r0 = 0;
  for (size_t r = first; r < first + G; ++r) {
    if (rolls[r].score.errored) continue;
    if (!seen) seen = true, r0 = rolls[r].score.total;
    else if (rolls[r].score.total != r0) return true;
  }
  return false;
}

struct MicroBatch {
  torch::Tensor rows;     // (B) int64: indices of the rollouts (into the step's advantages)
  torch::Tensor ids;      // (B, T) int64
  torch::Tensor targets;  // (B, T) int64: ids shifted left
  torch::Tensor attn;     // (B, T) int64: 1 on real tokens
  torch::Tensor mask;     // (B, T) float: 1 where targets[b, t] is a (kept) completion token
};

inline std::vector<MicroBatch> micro_batches(const std::vector<Rollout>& rolls, int64_t size, bool mask_truncated) {
  std::vector<MicroBatch> out;
  for (size_t first = 0; first < rolls.size(); first += size_t(size)) {
    size_t last = std::min(rolls.size(), first + size_t(size));
    int64_t B = int64_t(last - first), T = 1;
    for (size_t r = first; r < last; ++r)
      T = std::max<int64_t>(T, int64_t(rolls[r].prompt_ids.size() + rolls[r].completion.ids.size()));
    MicroBatch mb;
    mb.rows = torch::arange(int64_t(first), int64_t(last), torch::kInt64);
    mb.ids = torch::zeros({B, T}, torch::kInt64);
    mb.targets = torch::zeros({B, T}, torch::kInt64);
    mb.attn = torch::zeros({B, T}, torch::kInt64);
    mb.mask = torch::zeros({B, T}, torch::kFloat32);
    auto ids = mb.ids.accessor<int64_t, 2>(), tg = mb.targets.accessor<int64_t, 2>(), at = mb.attn.accessor<int64_t, 2>();
    auto m = mb.mask.accessor<float, 2>();
    for (int64_t b = 0; b < B; ++b) {
      const Rollout& r = rolls[first + size_t(b)];
      int64_t P = int64_t(r.prompt_ids.size()), L = P + int64_t(r.completion.ids.size());
      // Completions the rewards could not judge never train (their reward is not the model's).
      bool keep = !(mask_truncated && r.completion.finish_reason == "length") && !r.score.errored;
      for (int64_t t = 0; t < L; ++t) {
        ids[b][t] = t < P ? r.prompt_ids[size_t(t)] : r.completion.ids[size_t(t - P)];
        at[b][t] = 1;
      }
      for (int64_t t = 0; t + 1 < L; ++t) {
        tg[b][t] = ids[b][t + 1];
        if (t + 1 >= P && keep) m[b][t] = 1.0f;
      }
    }
    out.push_back(std::move(mb));
  }
  return out;
}

}  // namespace grpo
