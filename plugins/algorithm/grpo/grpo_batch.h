// GRPO micro-batches: each rollout (prompt ids + sampled completion ids) becomes one right-padded
// row; `mask` is 1 exactly where the target token is a completion token (0 for truncated
// completions when mask_truncated_completions, and for completions the rewards could not judge:
// Score::errored). Header-only for the tests.
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "warmup/model.h"
#include "warmup/reward.h"

namespace grpo {

struct Rollout {
  size_t prompt;                     // index of its prompt in the step
  std::vector<int32_t> prompt_ids;   // after left truncation
  warmup::TokenCompletion completion;
  warmup::Score score;
  // The engine's log-prob of each completion token under the distribution it drew it from
  // (Policy::last_sampling_logprobs); empty when unknown.
  std::vector<float> sampling_logps;
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
  torch::Tensor sampling; // (B, T) float: the sampler's log-prob of targets[b, t] (NaN where unknown)
  // Packed (padding_free): ids, targets, attn are (R, C) rows holding several sequences each
  // (attn: segment ids 1, 2, ... as Policy takes packed rows, 0 on padding), while `mask` and what
  // the loss sees stay in the (B, T) layout above; gather (B, T) int64 holds, for each (b, t), its
  // flat index into the (R, C) rows (0 where t is past the sequence: mask is 0 there).
  torch::Tensor gather;
};

// Per-token values of the model's rows (R, C) in the loss's (B, T) layout: the identity for
// padded micro-batches, a differentiable gather for packed ones.
inline torch::Tensor unpack(const MicroBatch& mb, const torch::Tensor& rows) {
  if (!mb.gather.defined() || !rows.defined()) return rows;
  auto g = mb.gather.to(rows.device());
  return rows.reshape({-1}).index_select(0, g.reshape({-1})).view(g.sizes());
}

// The inverse for per-token weights (B, T) -> (R, C); positions past a sequence must be 0.
inline torch::Tensor pack(const MicroBatch& mb, const torch::Tensor& per_token) {
  if (!mb.gather.defined()) return per_token;
  auto g = mb.gather.to(per_token.device());
  return torch::zeros({mb.ids.size(0) * mb.ids.size(1)}, per_token.options())
      .index_add_(0, g.reshape({-1}), per_token.reshape({-1}))
      .view(mb.ids.sizes());
}

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
    mb.sampling = torch::full({B, T}, NAN, torch::kFloat32);
    auto ids = mb.ids.accessor<int64_t, 2>(), tg = mb.targets.accessor<int64_t, 2>(), at = mb.attn.accessor<int64_t, 2>();
    auto m = mb.mask.accessor<float, 2>(), sp = mb.sampling.accessor<float, 2>();
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
        if (t + 1 >= P && size_t(t + 1 - P) < r.sampling_logps.size()) sp[b][t] = r.sampling_logps[size_t(t + 1 - P)];
      }
    }
    out.push_back(std::move(mb));
  }
  return out;
}

// As micro_batches, the same rollouts in each micro-batch (so every loss_type normalises over the
// same tokens), but each micro-batch's sequences packed into rows of the longest one's length
// (first-fit decreasing) instead of one padded row each: the forward pass skips the padding
// (TRL's padding_free; Policy's packed rows, ABI 1.3).
inline std::vector<MicroBatch> packed_micro_batches(const std::vector<Rollout>& rolls, int64_t size, bool mask_truncated) {
  std::vector<MicroBatch> out = micro_batches(rolls, size, mask_truncated);
  size_t first = 0;
  for (MicroBatch& mb : out) {
    const int64_t B = mb.ids.size(0), T = mb.ids.size(1);
    std::vector<int64_t> len(static_cast<size_t>(B)), order(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b)
      len[size_t(b)] = int64_t(rolls[first + size_t(b)].prompt_ids.size() + rolls[first + size_t(b)].completion.ids.size());
    first += size_t(B);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return len[size_t(a)] > len[size_t(b)]; });
    const int64_t C = std::max<int64_t>(1, *std::max_element(len.begin(), len.end()));
    std::vector<int64_t> used;                  // tokens used per row
    std::vector<std::pair<int64_t, int64_t>> at(static_cast<size_t>(B));  // sequence -> (row, offset)
    for (int64_t b : order) {
      size_t r = 0;
      while (r < used.size() && used[r] + len[size_t(b)] > C) ++r;
      if (r == used.size()) used.push_back(0);
      at[size_t(b)] = {int64_t(r), used[r]};
      used[r] += len[size_t(b)];
    }
    const int64_t R = int64_t(used.size());
    auto ids = torch::zeros({R, C}, torch::kInt64), tg = torch::zeros({R, C}, torch::kInt64);
    auto attn = torch::zeros({R, C}, torch::kInt64), gather = torch::zeros({B, T}, torch::kInt64);
    auto pi = ids.accessor<int64_t, 2>(), pt = tg.accessor<int64_t, 2>(), pa = attn.accessor<int64_t, 2>();
    auto ui = mb.ids.accessor<int64_t, 2>(), ut = mb.targets.accessor<int64_t, 2>();
    auto g = gather.accessor<int64_t, 2>();
    std::vector<int64_t> segments(size_t(R), 0);
    for (int64_t b = 0; b < B; ++b) {
      auto [r, off] = at[size_t(b)];
      int64_t seg = ++segments[size_t(r)];
      for (int64_t t = 0; t < len[size_t(b)]; ++t) {
        pi[r][off + t] = ui[b][t];
        pt[r][off + t] = ut[b][t];
        pa[r][off + t] = seg;
        g[b][t] = r * C + off + t;
      }
    }
    mb.ids = ids, mb.targets = tg, mb.attn = attn, mb.gather = gather;
  }
  return out;
}

}  // namespace grpo
