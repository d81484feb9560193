// Building SFT micro-batches: right-padded token ids, next-token targets, and loss weights that
// are non-zero exactly where the target is a completion token. Header-only so the tests use the
// same code as the plugin.
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <vector>

namespace sft {

struct Sequence {
  std::vector<int32_t> prompt;
  std::vector<int32_t> completion;  // EOS included when appended
  // Empty (every completion token is trained on) or completion.size() flags (assistant_only_loss:
  // only tokens flagged 1 are).
  std::vector<uint8_t> mask;
  bool trained(size_t i) const { return mask.empty() || mask[i] != 0; }  // completion token i
  int64_t trained_tokens() const {
    return mask.empty() ? int64_t(completion.size()) : int64_t(std::count(mask.begin(), mask.end(), uint8_t(1)));
  }
};

struct Batch {
  torch::Tensor ids;      // (B, T) int64, right-padded with 0
  torch::Tensor targets;  // (B, T) int64: ids shifted left (position t predicts token t + 1)
  torch::Tensor mask;     // (B, T) int64: 1 on real tokens
  torch::Tensor weights;  // (B, T) fp32: `scale` where targets[b, t] is a trained completion token, else 0
  int64_t completion_tokens = 0;
};

// Rows of sequences, each row its sequences back to back (packing) or one sequence (padding).
// weight_per_token: the loss weight of one completion token (e.g. -1 / (tokens * accumulation)).
// A row with several sequences gets mask ids 1, 2, ... (the Policy's packed-rows convention: each
// attends only to itself, positions restart), and no token predicts across a sequence boundary.
inline Batch make_packed_batch(const std::vector<std::vector<const Sequence*>>& rows, double weight_per_token) {
  int64_t B = int64_t(rows.size()), T = 0;
  bool packed = false;
  for (const auto& row : rows) {
    int64_t len = 0;
    for (const auto* s : row) len += int64_t(s->prompt.size() + s->completion.size());
    T = std::max(T, len);
    packed = packed || row.size() > 1;
  }
  Batch b;
  b.ids = torch::zeros({B, T}, torch::kInt64);
  b.targets = torch::zeros({B, T}, torch::kInt64);
  b.mask = torch::zeros({B, T}, torch::kInt64);
  b.weights = torch::zeros({B, T}, torch::kFloat32);
  auto ids = b.ids.accessor<int64_t, 2>(), tg = b.targets.accessor<int64_t, 2>(), m = b.mask.accessor<int64_t, 2>();
  auto w = b.weights.accessor<float, 2>();
  for (int64_t i = 0; i < B; ++i) {
    int64_t at = 0, doc = 0;
    for (const auto* sp : rows[size_t(i)]) {
      const Sequence& s = *sp;
      ++doc;
      int64_t P = int64_t(s.prompt.size()), L = P + int64_t(s.completion.size());
      for (int64_t t = 0; t < L; ++t) {
        ids[i][at + t] = t < P ? s.prompt[size_t(t)] : s.completion[size_t(t - P)];
        m[i][at + t] = packed ? doc : 1;
      }
      for (int64_t t = 0; t + 1 < L; ++t) {
        tg[i][at + t] = ids[i][at + t + 1];
        if (t + 1 >= P && s.trained(size_t(t + 1 - P))) {  // the token predicted here is trained on
          w[i][at + t] = float(weight_per_token);
          ++b.completion_tokens;
        }
      }
      at += L;
    }
  }
  return b;
}

// One sequence per row, right-padded with 0.
inline Batch make_batch(const std::vector<const Sequence*>& seqs, double weight_per_token) {
  std::vector<std::vector<const Sequence*>> rows;
  for (const auto* s : seqs) rows.push_back({s});
  return make_packed_batch(rows, weight_per_token);
}

// Best-fit decreasing (TRL's "bfd" packing): sequences, longest first, each into the row whose
// free space fits it most tightly, rows at most `capacity` tokens. Returns indices per row.
inline std::vector<std::vector<size_t>> pack_best_fit(const std::vector<Sequence>& seqs, int64_t capacity) {
  std::vector<size_t> order(seqs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  auto len = [&](size_t i) { return int64_t(seqs[i].prompt.size() + seqs[i].completion.size()); };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return len(a) > len(b); });
  std::vector<std::vector<size_t>> rows;
  std::multimap<int64_t, size_t> free;  // free space -> row
  for (size_t i : order) {
    auto it = free.lower_bound(len(i));
    if (it == free.end()) {
      rows.push_back({i});
      free.emplace(capacity - len(i), rows.size() - 1);
    } else {
      size_t r = it->second;
      int64_t left = it->first - len(i);
      free.erase(it);
      rows[r].push_back(i);
      free.emplace(left, r);
    }
  }
  return rows;
}

inline int64_t count_completion_targets(const std::vector<const Sequence*>& seqs) {
  int64_t n = 0;
  for (const auto* s : seqs) n += s->trained_tokens() - (s->prompt.empty() && !s->completion.empty() && s->trained(0) ? 1 : 0);
  return n;
}

}  // namespace sft
