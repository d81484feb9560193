// eval_metrics: see eval_metrics.h.
#include "eval_metrics.h"

#include <cmath>

namespace evalm {

double pass_at_k(int64_t n, int64_t c, int64_t k) {
  if (k <= 0 || k > n) return std::nan("");
  if (n - c < k) return 1.0;
  double miss = 1.0;  // C(n-c, k) / C(n, k) = prod_{i = n-c+1}^{n} (1 - k / i)
  for (int64_t i = n - c + 1; i <= n; ++i) miss *= 1.0 - double(k) / double(i);
  return 1.0 - miss;
}

double sample_std(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  double mean = 0;
  for (double x : v) mean += x;
  mean /= double(v.size());
  double ss = 0;
  for (double x : v) ss += (x - mean) * (x - mean);
  return std::sqrt(ss / double(v.size() - 1));
}

void Tally::add(size_t j, const warmup::Score& s, int64_t tokens, bool parts) {
  ++count_;
  if (tokens >= 0) ++tokens_known_, tokens_sum_ += double(tokens);
  if (s.errored) {
    ++errors_;
    return;
  }
  reward_sum_ += s.total;
  if (parts)
    for (const auto& [k, v] : s.parts) part_sums_[k] += v;
  if (!s.correct) return;
  if (j >= run_known_.size()) run_known_.resize(j + 1, 0), run_correct_.resize(j + 1, 0);
  ++run_known_[j], ++cur_known_;
  if (*s.correct) ++run_correct_[j], ++cur_correct_;
}

void Tally::end_example() {
  examples_.emplace_back(cur_known_, cur_correct_);
  cur_known_ = cur_correct_ = 0;
}

std::map<std::string, double> Tally::summary(const std::vector<int64_t>& pass_at_k_list) const {
  std::map<std::string, double> m;
  m["count"] = double(count_);
  m["errors"] = double(errors_);
  m["error_rate"] = count_ ? double(errors_) / double(count_) : 0.0;
  int64_t judged = count_ - errors_;
  m["reward_mean"] = judged ? reward_sum_ / double(judged) : std::nan("");
  for (const auto& [k, v] : part_sums_) m[k + "_mean"] = v / double(judged);
  if (tokens_known_) m["response_tokens_mean"] = tokens_sum_ / double(tokens_known_);
  int64_t known = 0, correct = 0;
  std::vector<double> runs;
  for (size_t j = 0; j < run_known_.size(); ++j) {
    known += run_known_[j], correct += run_correct_[j];
    if (run_known_[j]) runs.push_back(double(run_correct_[j]) / double(run_known_[j]));
  }
  if (!known) return m;
  m["accuracy"] = double(correct) / double(known);
  double mean = 0;
  for (double a : runs) mean += a;
  m["accuracy_mean"] = mean / double(runs.size());
  m["accuracy_std"] = sample_std(runs);
  for (int64_t k : pass_at_k_list) {
    double sum = 0;
    int64_t used = 0;
    for (const auto& [n, c] : examples_)
      if (n >= k && k > 0) sum += pass_at_k(n, c, k), ++used;
    if (used) m["pass@" + std::to_string(k)] = sum / double(used);
  }
  return m;
}

}  // namespace evalm
