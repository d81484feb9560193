// fused_lm_head.h against the materialised form: log_softmax(h W^T) gathered at the targets, its
// weighted sum, entropy, and the gradients autograd gives through the full (rows, V) logits, for
// chunk sizes that split the rows unevenly.
#include "torch_doctest.h"

#include "fused_lm_head.h"

using namespace warmup;

namespace {

struct Case {
  torch::Tensor h, w, targets, weights;
};

Case make_case(int64_t rows, int64_t H, int64_t V, uint64_t seed) {
  torch::manual_seed(seed);
  return {torch::randn({rows, H}), torch::randn({V, H}) * 0.5, torch::randint(V, {rows}, torch::kInt64),
          torch::randn({rows})};
}

}  // namespace

TEST_CASE("fused_weighted_logprob equals the materialised head: sum, per-row log-probs, entropy, gradients") {
  for (int64_t chunk : {1, 3, 7, 64}) {
    INFO("chunk " << chunk);
    Case c = make_case(10, 16, 37, uint64_t(chunk));
    auto h1 = c.h.clone().requires_grad_(true), w1 = c.w.clone().requires_grad_(true);
    auto logp = torch::log_softmax(torch::matmul(h1, w1.t()), 1);
    auto lp = logp.gather(1, c.targets.unsqueeze(1)).squeeze(1);
    auto ref_sum = (lp * c.weights).sum();
    auto ref_ent = -(logp.exp() * logp).sum(1);
    ref_sum.backward();

    auto h2 = c.h.clone().requires_grad_(true), w2 = c.w.clone().requires_grad_(true);
    auto lp_out = torch::empty({10}), ent_out = torch::empty({10});
    auto sum = kernels::fused_weighted_logprob(h2, w2, c.targets, c.weights, chunk, lp_out, ent_out);
    (sum * 2.0).backward();  // the saved gradient is scaled by the incoming one
    CHECK(sum.item<double>() == doctest::Approx(ref_sum.item<double>()).epsilon(1e-5));
    CHECK(torch::allclose(lp_out, lp.detach(), 1e-5, 1e-5));
    CHECK(torch::allclose(ent_out, ref_ent.detach(), 1e-5, 1e-5));
    CHECK(torch::allclose(h2.grad(), 2.0 * h1.grad(), 1e-4, 1e-5));
    CHECK(torch::allclose(w2.grad(), 2.0 * w1.grad(), 1e-4, 1e-5));
  }
}

TEST_CASE("fused_weighted_logprob without gradients or outputs; chunked_logprob forward and backward") {
  Case c = make_case(9, 8, 21, 7);
  auto none = torch::empty({0});
  auto sum = kernels::fused_weighted_logprob(c.h, c.w, c.targets, c.weights, 4, none, none);
  auto logp = torch::log_softmax(torch::matmul(c.h, c.w.t()), 1).gather(1, c.targets.unsqueeze(1)).squeeze(1);
  CHECK(sum.item<double>() == doctest::Approx((logp * c.weights).sum().item<double>()).epsilon(1e-5));

  auto h1 = c.h.clone().requires_grad_(true), w1 = c.w.clone().requires_grad_(true);
  auto ref = torch::log_softmax(torch::matmul(h1, w1.t()), 1).gather(1, c.targets.unsqueeze(1)).squeeze(1);
  auto g = torch::randn({9});
  ref.backward(g);
  auto h2 = c.h.clone().requires_grad_(true), w2 = c.w.clone().requires_grad_(true);
  auto got = kernels::chunked_logprob(h2, w2, c.targets, 4);
  got.backward(g);
  CHECK(torch::allclose(got.detach(), ref.detach(), 1e-5, 1e-5));
  CHECK(torch::allclose(h2.grad(), h1.grad(), 1e-4, 1e-5));
  CHECK(torch::allclose(w2.grad(), w1.grad(), 1e-4, 1e-5));
}
