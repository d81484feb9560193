// The SFT loss mask, by hand on a small example: weights sit exactly on positions whose target is
// a completion token.
#include "torch_doctest.h"

#include "sft_batch.h"

TEST_CASE("loss weights cover exactly the completion tokens") {
  sft::Sequence a{{10, 11, 12}, {20, 21, 2}};  // prompt 3 tokens, completion 2 + EOS
  sft::Sequence b{{30}, {40}};
  auto batch = sft::make_batch({&a, &b}, -0.5);
  // a: ids 10 11 12 20 21 2; position t predicts ids[t + 1].
  CHECK(torch::equal(batch.ids[0], torch::tensor({10, 11, 12, 20, 21, 2}, torch::kInt64)));
  CHECK(torch::equal(batch.targets[0].slice(0, 0, 5), torch::tensor({11, 12, 20, 21, 2}, torch::kInt64)));
  CHECK(torch::equal(batch.weights[0], torch::tensor({0.f, 0.f, -0.5f, -0.5f, -0.5f, 0.f})));
  // b: ids 30 40, padded to 6; only position 0 (predicting 40) counts.
  CHECK(torch::equal(batch.ids[1], torch::tensor({30, 40, 0, 0, 0, 0}, torch::kInt64)));
  CHECK(torch::equal(batch.mask[1], torch::tensor({1, 1, 0, 0, 0, 0}, torch::kInt64)));
  CHECK(torch::equal(batch.weights[1], torch::tensor({-0.5f, 0.f, 0.f, 0.f, 0.f, 0.f})));
  CHECK(batch.completion_tokens == 4);
}

TEST_CASE("packed rows: sequence ids in the mask, no loss across a boundary") {
  sft::Sequence a{{10, 11}, {20, 2}}, b{{30}, {40, 41, 2}}, c{{50, 51, 52}, {60, 2}};
  auto batch = sft::make_packed_batch({{&a, &b}, {&c}}, -1.0);
  CHECK(torch::equal(batch.ids[0], torch::tensor({10, 11, 20, 2, 30, 40, 41, 2}, torch::kInt64)));
  CHECK(torch::equal(batch.mask[0], torch::tensor({1, 1, 1, 1, 2, 2, 2, 2}, torch::kInt64)));
  // Position 3 (a's EOS) must not predict b's first token; b's prompt token predicts 40.
  CHECK(torch::equal(batch.weights[0], torch::tensor({0.f, -1.f, -1.f, 0.f, -1.f, -1.f, -1.f, 0.f})));
  CHECK(torch::equal(batch.mask[1], torch::tensor({1, 1, 1, 1, 1, 0, 0, 0}, torch::kInt64)));  // a row of one keeps 1/0
  CHECK(batch.completion_tokens == 7);
}

TEST_CASE("best-fit decreasing packing: every sequence once, rows within capacity, tight fit") {
  std::vector<sft::Sequence> seqs;
  for (int len : {6, 5, 4, 3, 2, 2, 1}) seqs.push_back({std::vector<int32_t>(size_t(len), 1), {}});
  auto rows = sft::pack_best_fit(seqs, 8);
  std::vector<int> seen(seqs.size(), 0);
  int64_t used = 0;
  for (const auto& r : rows) {
    int64_t len = 0;
    for (size_t i : r) ++seen[i], len += int64_t(seqs[i].prompt.size());
    CHECK(len <= 8);
    used += len;
  }
  for (int k : seen) CHECK(k == 1);
  CHECK(used == 23);
  CHECK(rows.size() == 3);  // 23 tokens need at least 3 rows of 8: 6+2, 5+3, 4+2+1 or similar
}
