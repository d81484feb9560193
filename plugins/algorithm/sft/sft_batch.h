// Building SFT micro-batches: right-padded token ids, next-token targets, and loss weights that
// are non-zero exactly where the target is a completion token. Header-only so the tests use the
// same code as the plugin.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace sft {

struct Sequence {
  std::vector<int32_t> prompt;
  std::vector<int32_t> completion;  // EOS included when appended
};

struct Batch {
  torch::Tensor ids;      // (B, T) int64, right-padded with 0
  torch::Tensor targets;  // (B, T) int64: ids shifted left (position t predicts token t + 1)
  torch::Tensor mask;     // (B, T) int64: 1 on real tokens
  torch::Tensor weights;  // (B, T) fp32: `scale` where targets[b, t] is a completion token, else 0
  int64_t completion_tokens = 0;
};

// weight_per_token: the loss weight of one completion token (e.g. -1 / (tokens * accumulation)).
inline Batch make_batch(const std::vector<const Sequence*>& seqs, double weight_per_token) {
  int64_t B = int64_t(seqs.size()), T = 0;
  for (const auto* s : seqs) T = std::max<int64_t>(T, int64_t(s->prompt.size() + s->completion.size()));
  Batch b;
  b.ids = torch::zeros({B, T}, torch::kInt64);
  b.targets = torch::zeros({B, T}, torch::kInt64);
  b.mask = torch::zeros({B, T}, torch::kInt64);
  b.weights = torch::zeros({B, T}, torch::kFloat32);
  auto ids = b.ids.accessor<int64_t, 2>(), tg = b.targets.accessor<int64_t, 2>(), m = b.mask.accessor<int64_t, 2>();
  auto w = b.weights.accessor<float, 2>();
  for (int64_t i = 0; i < B; ++i) {
    const Sequence& s = *seqs[size_t(i)];
    int64_t P = int64_t(s.prompt.size()), L = P + int64_t(s.completion.size());
    for (int64_t t = 0; t < L; ++t) {
      ids[i][t] = t < P ? s.prompt[size_t(t)] : s.completion[size_t(t - P)];
      m[i][t] = 1;
    }
    for (int64_t t = 0; t + 1 < L; ++t) {
      tg[i][t] = ids[i][t + 1];
      if (t + 1 >= P) {  // the token predicted here belongs to the completion
        w[i][t] = float(weight_per_token);
        ++b.completion_tokens;
      }
    }
  }
  return b;
}

inline int64_t count_completion_targets(const std::vector<const Sequence*>& seqs) {
  int64_t n = 0;
  for (const auto* s : seqs) n += int64_t(s->completion.size()) - (s->prompt.empty() ? 1 : 0);
  return n;
}

}  // namespace sft
