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

TEST_CASE("assistant masks: only flagged completion tokens carry weight, and only they are counted") {
  // A conversation: user turn (prompt 10 11), assistant 20 21 (trained), user 30 (not), assistant 40 2 (trained).
  sft::Sequence a{{10, 11}, {20, 21, 30, 40, 2}, {1, 1, 0, 1, 1}};
  sft::Sequence b{{}, {50, 51, 52}, {1, 0, 1}};  // no prompt: token 0 is never a target
  auto batch = sft::make_batch({&a, &b}, -1.0);
  // a: ids 10 11 20 21 30 40 2; position t predicts ids[t + 1]; 30 is predicted at t = 3: no weight.
  CHECK(torch::equal(batch.weights[0], torch::tensor({0.f, -1.f, -1.f, 0.f, -1.f, -1.f, 0.f})));
  CHECK(torch::equal(batch.weights[1], torch::tensor({0.f, -1.f, 0.f, 0.f, 0.f, 0.f, 0.f})));
  CHECK(batch.completion_tokens == 5);
  CHECK(sft::count_completion_targets({&a}) == 4);
  CHECK(sft::count_completion_targets({&b}) == 1);  // 50 is never predicted, 51 is not trained
  CHECK(a.trained_tokens() == 4);
  sft::Sequence none{{10}, {20, 21}, {0, 0}};
  CHECK(sft::count_completion_targets({&none}) == 0);
  // The same tokens without a mask: every completion token.
  sft::Sequence plain{{10, 11}, {20, 21, 30, 40, 2}};
  CHECK(sft::count_completion_targets({&plain}) == 5);
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
