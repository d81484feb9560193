// The MMLU-Pro rewards: the paper's RL reward (format gate, then the letter from the answer span)
// and plain accuracy (letter from the whole completion, official seeded random guess when none).
#pragma once

#include "mmlu_extract.h"
#include "warmup/sdk.h"

namespace mmlu {

// Paper (train/dataset_loader.py reward_mmlu): exactly one </think>, <answer>, </answer> and
// `.+</think>\s*<answer>(.+)</answer>\s*$` (DOTALL), else -2; then the chain on the stripped
// answer span: the gold letter +2, anything else (no letter included) -0.5. No random guess.
class PaperReward final : public warmup::Reward {
 public:
  explicit PaperReward(const warmup::PluginInit& init);
  warmup::RewardResult score(const warmup::Example& ex, const std::string& completion) const override;

 private:
  double format_error_, correct_, wrong_;
  Chain chain_;
  bool paren_again_;
};

// Accuracy: the chain on the whole completion (no format requirement); no letter -> the official
// guess `random.seed(guess_seed); random.randint(0, n_options - 1)` (CPython's generator), which
// counts if it hits the gold.
class AccuracyReward final : public warmup::Reward {
 public:
  explicit AccuracyReward(const warmup::PluginInit& init);
  warmup::RewardResult score(const warmup::Example& ex, const std::string& completion) const override;

 private:
  double correct_, wrong_;
  Chain chain_;
  bool paren_again_, guess_, per_example_;
  int64_t guess_seed_;
};

// "paper" | "official" -> Chain; anything else -> nullopt.
std::optional<Chain> parse_chain(const std::string& name);

}  // namespace mmlu
