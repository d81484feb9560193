// Reward interface (kind "reward", interface warmup.reward v1): scores one completion of one
// example. Never throws on bad model output: returns a value and an error string instead.
#pragma once

#include <exception>
#include <string>
#include <vector>

#include "types.h"

namespace warmup {

class Reward {
 public:
  static constexpr const char* kKind = "reward";
  static constexpr const char* kInterfaceId = "warmup.reward";
  static constexpr uint32_t kInterfaceVersion = 1;

  virtual ~Reward() = default;
  // Must be safe to call concurrently from several threads on the same object.
  virtual RewardResult score(const Example& example, const std::string& completion) const = 0;
};

// A reward instance of a stage with its weight.
struct WeightedReward {
  std::string name;  // instance name in the experiment, e.g. "exact_match"
  double weight = 1.0;
  const Reward* reward = nullptr;
};

// The weighted sum of a stage's rewards for one completion.
struct Score {
  double total = 0.0;
  std::map<std::string, double> parts;  // "<name>" -> value, "<name>/<part>" -> breakdown
  std::optional<bool> correct;          // all rewards that know correctness agree it is correct
  std::string error;                    // the rewards' error strings joined with "; "
};

inline Score score_all(const std::vector<WeightedReward>& rewards, const Example& example,
                       const std::string& completion) {
  Score s;
  for (const auto& r : rewards) {
    RewardResult res;
    try {
      res = r.reward->score(example, completion);
    } catch (const std::exception& e) {  // a buggy reward must not take the run down
      res.value = 0.0;
      res.error = std::string("reward threw: ") + e.what();
    }
    s.total += r.weight * res.value;
    s.parts[r.name] = res.value;
    for (const auto& [k, v] : res.breakdown) s.parts[r.name + "/" + k] = v;
    if (res.correct) s.correct = s.correct.value_or(true) && *res.correct;
    if (!res.error.empty()) s.error += (s.error.empty() ? "" : "; ") + r.name + ": " + res.error;
  }
  return s;
}

}  // namespace warmup
