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
