// eval_metrics: the paper's evaluation statistics over scored completions, free of plugin
// plumbing so they can be unit-tested. A Tally collects the n completions of each example (sample
// index j of every example forms "run" j) and summarises them as metric name -> value:
//   count                                   all completions
//   errors, error_rate                      completions the verifier could not judge (Score::errored:
//                                           its interpreter, sandbox or time budget failed), and their
//                                           fraction of count. They are not wrong answers: they are
//                                           left out of every mean below (accuracy over judged
//                                           completions; the stage fails past max_error_rate)
//   reward_mean, <reward part>_mean         over the judged completions
//   accuracy                                fraction correct over completions whose correctness is known
//   accuracy_mean, accuracy_std             mean and sample standard deviation (n - 1) of the per-run
//                                           accuracies; std is 0 with a single run
//   response_tokens_mean                    mean completion length in tokens (where known)
//   pass@k                                  unbiased estimator 1 - C(n-c, k) / C(n, k) averaged over examples
// Does not decide what is scored or stored (evaluate.cpp does).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "warmup/reward.h"

namespace evalm {

// 1 - C(n - c, k) / C(n, k): the probability that at least one of k of the n samples, c of them
// correct, is correct (Chen et al. 2021, computed as a product for stability). Needs k <= n.
double pass_at_k(int64_t n, int64_t c, int64_t k);

// Sample standard deviation (n - 1 in the denominator); 0 for fewer than two values.
double sample_std(const std::vector<double>& v);

class Tally {
 public:
  explicit Tally(size_t runs) : run_correct_(runs, 0), run_known_(runs, 0) {}

  // One scored completion: sample index `j` of the current example, its length in tokens (-1:
  // unknown). `parts` adds the per-reward means (only for the whole task, not for groups).
  void add(size_t j, const warmup::Score& s, int64_t tokens, bool parts = true);
  // Closes the current example (its correct count feeds pass@k).
  void end_example();

  // The metrics above; pass@k only for k <= the samples of an example (examples with fewer known
  // verdicts than k are left out).
  std::map<std::string, double> summary(const std::vector<int64_t>& pass_at_k = {}) const;
  int64_t count() const { return count_; }
  int64_t errors() const { return errors_; }

 private:
  std::vector<int64_t> run_correct_, run_known_;  // per sample index
  std::vector<std::pair<int64_t, int64_t>> examples_;  // (known, correct) per closed example
  int64_t cur_known_ = 0, cur_correct_ = 0;
  int64_t count_ = 0, errors_ = 0, tokens_known_ = 0;
  double reward_sum_ = 0, tokens_sum_ = 0;
  std::map<std::string, double> part_sums_;
};

}  // namespace evalm
