// The MATH rewards registered by the `math` library (implemented in math_rewards.cpp).
#pragma once

#include "warmup/sdk.h"

namespace mathr {

class MathPaper final : public warmup::Reward {
 public:
  explicit MathPaper(const warmup::PluginInit& init);
  warmup::RewardResult score(const warmup::Example& ex, const std::string& completion) const override;

 private:
  double format_error_, no_boxed_, correct_, wrong_, timeout_s_;
};

class MathAccuracy final : public warmup::Reward {
 public:
  explicit MathAccuracy(const warmup::PluginInit& init);
  warmup::RewardResult score(const warmup::Example& ex, const std::string& completion) const override;

 private:
  double correct_, wrong_, timeout_s_;
};

}  // namespace mathr

#define MATH_REWARD_ENTRIES                                                                             \
  warmup::entry<warmup::Reward, mathr::MathPaper>("math_paper", "0.1.0",                               \
                                                  "MATH reward of the paper (-2 format/-1 no box/+2/-0.5)"), \
      warmup::entry<warmup::Reward, mathr::MathAccuracy>("math_accuracy", "0.1.0",                     \
                                                         "MATH accuracy with the C++ Math-Verify (1/0)")
