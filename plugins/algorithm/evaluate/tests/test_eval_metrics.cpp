// The evaluation statistics against hand-computed values: pass@k against exact binomial ratios,
// per-run accuracy mean and sample std on a small table of verdicts, groups without parts.
#include <doctest/doctest.h>

#include <cmath>

#include "eval_metrics.h"

namespace {

warmup::Score verdict(std::optional<bool> correct, double total = 0.0) {
  warmup::Score s;
  s.total = total;
  s.correct = correct;
  s.parts["r"] = total;
  return s;
}

}  // namespace

TEST_CASE("pass@k equals 1 - C(n-c,k)/C(n,k)") {
  CHECK(evalm::pass_at_k(4, 1, 2) == doctest::Approx(1.0 - 3.0 / 6.0));      // C(3,2)/C(4,2)
  CHECK(evalm::pass_at_k(10, 3, 5) == doctest::Approx(1.0 - 21.0 / 252.0));  // C(7,5)/C(10,5)
  CHECK(evalm::pass_at_k(4, 0, 1) == 0.0);
  CHECK(evalm::pass_at_k(4, 3, 2) == 1.0);  // n - c < k: every draw of 2 holds a correct one
  CHECK(evalm::pass_at_k(4, 2, 1) == doctest::Approx(0.5));
  CHECK(std::isnan(evalm::pass_at_k(2, 1, 3)));
}

TEST_CASE("accuracy per sample index: mean and sample std over the runs") {
  // 3 examples x 4 samples; verdicts by (example, sample):
  //   e0: 1 1 0 1   e1: 1 0 0 1   e2: 0 0 0 1
  // runs: j0 = 2/3, j1 = 1/3, j2 = 0, j3 = 1 -> mean 0.5, sample std sqrt(5/27) = 0.430331
  int table[3][4] = {{1, 1, 0, 1}, {1, 0, 0, 1}, {0, 0, 0, 1}};
  evalm::Tally t(4);
  for (auto& row : table) {
    for (size_t j = 0; j < 4; ++j) t.add(j, verdict(row[j] == 1, row[j] ? 2.0 : -0.5), 10 + int64_t(j));
    t.end_example();
  }
  auto m = t.summary({1, 2, 4});
  CHECK(m["count"] == 12);
  CHECK(m["accuracy"] == doctest::Approx(6.0 / 12.0));
  CHECK(m["accuracy_mean"] == doctest::Approx(0.5));
  CHECK(m["accuracy_std"] == doctest::Approx(std::sqrt(5.0 / 27.0)));
  CHECK(m["response_tokens_mean"] == doctest::Approx(11.5));
  CHECK(m["reward_mean"] == doctest::Approx((6 * 2.0 - 6 * 0.5) / 12.0));
  CHECK(m["r_mean"] == doctest::Approx(m["reward_mean"]));
  // pass@1 = mean c/n = (3/4 + 2/4 + 1/4) / 3; pass@2: 1 - C(n-c,2)/C(4,2) per example
  CHECK(m["pass@1"] == doctest::Approx(0.5));
  CHECK(m["pass@2"] == doctest::Approx((1.0 + (1 - 1.0 / 6) + (1 - 3.0 / 6)) / 3.0));
  CHECK(m["pass@4"] == doctest::Approx(1.0));
}

TEST_CASE("a single run has std 0; unknown correctness gives no accuracy; unknown tokens no length") {
  evalm::Tally one(1);
  one.add(0, verdict(true), -1);
  one.end_example();
  one.add(0, verdict(false), -1);
  one.end_example();
  auto m = one.summary({1});
  CHECK(m["accuracy_mean"] == doctest::Approx(0.5));
  CHECK(m["accuracy_std"] == 0.0);
  CHECK(!m.count("response_tokens_mean"));

  evalm::Tally none(2);
  none.add(0, verdict(std::nullopt, 1.0), 5, false);
  none.add(1, verdict(std::nullopt, 3.0), 7, false);
  none.end_example();
  auto n = none.summary({1});
  CHECK(n["reward_mean"] == doctest::Approx(2.0));
  CHECK(!n.count("accuracy"));
  CHECK(!n.count("accuracy_mean"));
  CHECK(!n.count("pass@1"));
  CHECK(!n.count("r_mean"));  // parts off (groups)
}

TEST_CASE("completions the verifier could not judge are counted apart, not as wrong") {
  // 2 examples x 2 samples: e0: right, error; e1: wrong, right. Judged: 3, correct 2.
  evalm::Tally t(2);
  warmup::Score err;
  err.errored = true, err.error = "r: interpreter lacks numpy";
  t.add(0, verdict(true, 1.0), 5), t.add(1, err, 7), t.end_example();
  t.add(0, verdict(false, 0.0), 5), t.add(1, verdict(true, 1.0), 5), t.end_example();
  auto m = t.summary({1});
  CHECK(m["count"] == 4);
  CHECK(m["errors"] == 1);
  CHECK(m["error_rate"] == doctest::Approx(0.25));
  CHECK(m["accuracy"] == doctest::Approx(2.0 / 3.0));  // not 2/4
  CHECK(m["accuracy_mean"] == doctest::Approx((0.5 + 1.0) / 2));  // run 1 has one judged completion
  CHECK(m["reward_mean"] == doctest::Approx(2.0 / 3.0));
  CHECK(m["r_mean"] == doctest::Approx(2.0 / 3.0));
  CHECK(m["response_tokens_mean"] == doctest::Approx(22.0 / 4));  // lengths are the model's: all count
  CHECK(m["pass@1"] == doctest::Approx((1.0 + 0.5) / 2));  // e0: its one judged sample right; e1: 1 of 2
}
