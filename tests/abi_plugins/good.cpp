// Test plugin: a well-formed library with two entries (a task and a reward).
#include "warmup/sdk.h"

namespace {

class GoodTask final : public warmup::Task {
 public:
  explicit GoodTask(const warmup::PluginInit& init) {
    warmup::Options o(init);
    n_ = o.get<int64_t>("n", 3);
    o.finish();
  }
  std::vector<std::string> splits() const override { return {"test"}; }
  std::vector<warmup::Example> examples(const std::string&) override {
    std::vector<warmup::Example> out;
    for (int64_t i = 0; i < n_; ++i) out.push_back({"good/" + std::to_string(i), "p", std::to_string(i), {}});
    return out;
  }

 private:
  int64_t n_;
};

class GoodReward final : public warmup::Reward {
 public:
  explicit GoodReward(const warmup::PluginInit&) {}
  warmup::RewardResult score(const warmup::Example& e, const std::string& c) const override {
    warmup::RewardResult r;
    r.value = c == e.reference ? 1.0 : 0.0;
    r.correct = c == e.reference;
    return r;
  }
};

// Answers each example with its reference for the first sample and "wrong" for the others.
class GoodTeacher final : public warmup::Teacher {
 public:
  explicit GoodTeacher(const warmup::PluginInit& init) {
    warmup::Options o(init);
    wrong_text_ = o.get<std::string>("wrong_text", "wrong");
    o.finish();
  }
  std::vector<std::vector<warmup::Completion>> complete(const std::vector<warmup::Example>& ex, int n) override {
    std::vector<std::vector<warmup::Completion>> out;
    for (const auto& e : ex) {
      std::vector<warmup::Completion> cs;
      for (int i = 0; i < n; ++i) cs.push_back({i == 0 ? e.reference : wrong_text_, i == 0 ? "stop" : "length", 3});
      out.push_back(std::move(cs));
    }
    return out;
  }

 private:
  std::string wrong_text_;
};

}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Teacher, GoodTeacher>("good_teacher", "1.2.3", "test teacher"),
              warmup::entry<warmup::Task, GoodTask>("good_task", "1.2.3", "test task"),
              warmup::entry<warmup::Reward, GoodReward>("good_reward", "1.2.3", "test reward"))
