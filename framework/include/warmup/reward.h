// Reward interface (kind "reward", interface warmup.reward v1): scores one completion of one
// example. Never throws on bad model output: returns a value and an error string instead.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <string>
#include <thread>
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
  // Some reward could not judge the completion (RewardStatus::kError): `correct` is then null,
  // `total` means nothing (it is 0), `error` holds the cause. Never a wrong answer.
  bool errored = false;
  std::optional<std::string> extracted_answer;  // the first reward's (in stage order) that has one
};

inline Score score_all(const std::vector<WeightedReward>& rewards, const Example& example,
                       const std::string& completion) {
  Score s;
  for (const auto& r : rewards) {
    RewardResult res;
    try {
      res = r.reward->score(example, completion);
    } catch (const std::exception& e) {  // a buggy reward must not take the run down; not the model's fault
      res = RewardResult{};
      res.fail_harness(std::string("reward threw: ") + e.what());
    }
    if (!s.extracted_answer && res.extracted_answer) s.extracted_answer = res.extracted_answer;
    if (!res.error.empty()) s.error += (s.error.empty() ? "" : "; ") + r.name + ": " + res.error;
    if (res.errored()) {
      s.errored = true;
      continue;
    }
    s.total += r.weight * res.value;
    s.parts[r.name] = res.value;
    for (const auto& [k, v] : res.breakdown) s.parts[r.name + "/" + k] = v;
    if (res.correct) s.correct = s.correct.value_or(true) && *res.correct;
  }
  if (s.errored) s.total = 0.0, s.correct.reset();
  return s;
}

// The one parallel scorer (evaluate, grpo and `warmup score` all use it; their option is
// `reward_workers`): out[k] = score_all(rewards, example(k), text(k)) for k in [0, n), on
// `workers` threads (the calling thread is one; at most n). Rewards are thread-safe (reward.h).
// Items are taken in order from a shared counter; once `stop` (optional) returns true no new item
// starts and the remaining out[k] stay Score{}. Returns the number of items scored.
inline size_t score_parallel(const std::vector<WeightedReward>& rewards, size_t n,
                             const std::function<const Example&(size_t)>& example,
                             const std::function<const std::string&(size_t)>& text, std::vector<Score>& out,
                             int64_t workers, const std::function<bool()>& stop = {}) {
  out.resize(std::max(out.size(), n));
  std::atomic<size_t> next{0}, done{0};
  auto work = [&] {
    for (size_t k; !(stop && stop()) && (k = next++) < n;) {
      out[k] = score_all(rewards, example(k), text(k));
      ++done;
    }
  };
  std::vector<std::thread> pool;
  for (int64_t w = 1; w < std::min<int64_t>(std::max<int64_t>(1, workers), int64_t(n)); ++w) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  return done;
}

// Plugins built with ABI minor < 4 return the RewardResult of minor 3 (no status, no
// extracted_answer). The host calls such a reward through this adapter (PluginRegistry::create
// does it), so their results are read with the layout they were built with.
namespace abi3 {
struct RewardResult {
  double value = 0.0;
  std::map<std::string, double> breakdown;
  std::optional<bool> correct;
  std::string error;
};
class Reward {
 public:
  virtual ~Reward() = default;
  virtual RewardResult score(const Example& example, const std::string& completion) const = 0;
};
}  // namespace abi3

class LegacyRewardAdapter final : public Reward {
 public:
  // `object` is what the old plugin's create returned (a Reward* of its own build).
  LegacyRewardAdapter(void* object, void (*destroy)(void*)) : object_(object), destroy_(destroy) {}
  ~LegacyRewardAdapter() override { destroy_(object_); }
  LegacyRewardAdapter(const LegacyRewardAdapter&) = delete;
  LegacyRewardAdapter& operator=(const LegacyRewardAdapter&) = delete;
  RewardResult score(const Example& example, const std::string& completion) const override {
    abi3::RewardResult old = static_cast<const abi3::Reward*>(object_)->score(example, completion);
    RewardResult r;
    r.value = old.value, r.breakdown = std::move(old.breakdown), r.correct = old.correct, r.error = std::move(old.error);
    return r;
  }

 private:
  void* object_;
  void (*destroy_)(void*);
};

}  // namespace warmup
