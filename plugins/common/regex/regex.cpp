// regex: a rule reward from a regular expression (ECMAScript syntax, std::regex). `mode = "match"`
// gives `match` when the pattern occurs in the completion and `no_match` otherwise (format rewards,
// e.g. "<think>.*</think>"); `mode = "count"` gives `per_match` for each non-overlapping occurrence,
// capped at `max`. Never throws on model output.
#include <regex>

#include "warmup/sdk.h"

namespace {

class Regex final : public warmup::Reward {
 public:
  explicit Regex(const warmup::PluginInit& init) {
    warmup::Options o(init);
    pattern_ = o.require<std::string>("pattern");
    mode_ = o.get<std::string>("mode", "match");   // match | count
    match_ = o.get<double>("match", 1.0);
    no_match_ = o.get<double>("no_match", 0.0);
    per_match_ = o.get<double>("per_match", 1.0);
    max_ = o.get<double>("max", 1e30);
    bool icase = o.get<bool>("ignore_case", false);
    if (mode_ != "match" && mode_ != "count") o.fail("mode", "must be match or count");
    try {
      auto flags = std::regex::ECMAScript | (icase ? std::regex::icase : std::regex::ECMAScript);
      re_ = std::regex(pattern_, flags);
    } catch (const std::regex_error& e) {
      o.fail("pattern", std::string("is not a valid regular expression: ") + e.what());
    }
    o.finish();
  }

  warmup::RewardResult score(const warmup::Example&, const std::string& completion) const override {
    warmup::RewardResult r;
    try {
      if (mode_ == "match") {
        bool hit = std::regex_search(completion, re_);
        r.value = hit ? match_ : no_match_;
        if (!hit) r.error = "no match for /" + pattern_ + "/";
      } else {
        auto n = std::distance(std::sregex_iterator(completion.begin(), completion.end(), re_), std::sregex_iterator());
        r.value = std::min(max_, per_match_ * double(n));
        r.breakdown["matches"] = double(n);
      }
    } catch (const std::exception& e) {  // e.g. regex_error(error_complexity): std::regex's limit, not the output's fault
      r.fail_harness(std::string("regex failed: ") + e.what());
    }
    return r;
  }

 private:
  std::string pattern_, mode_;
  double match_, no_match_, per_match_, max_;
  std::regex re_;
};

}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Reward, Regex>("regex", "0.1.0", "rule reward: a regular expression matches (or counts)"))
