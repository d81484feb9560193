// exact_match: 1 when the extracted answer equals the reference, else 0. Extraction is "full"
// (the whole completion), "last_number" (last integer/decimal in the text) or "answer_tag"
// (content of the last <answer>...</answer>). Never throws on model output.
#include <algorithm>
#include <cctype>
#include <regex>

#include "warmup/sdk.h"

namespace {

std::string trim(std::string s) {
  auto ws = [](unsigned char c) { return std::isspace(c); };
  s.erase(s.begin(), std::find_if_not(s.begin(), s.end(), ws));
  s.erase(std::find_if_not(s.rbegin(), s.rend(), ws).base(), s.end());
  return s;
}

class ExactMatch final : public warmup::Reward {
 public:
  explicit ExactMatch(const warmup::PluginInit& init) {
    warmup::Options o(init);
    extract_ = o.get<std::string>("extract", "full");        // full | last_number | answer_tag
    case_sensitive_ = o.get<bool>("case_sensitive", false);  // compare letters exactly
    strip_ = o.get<bool>("strip", true);                     // trim surrounding whitespace
    correct_value_ = o.get<double>("correct", 1.0);          // reward when it matches
    wrong_value_ = o.get<double>("wrong", 0.0);              // reward otherwise
    if (extract_ != "full" && extract_ != "last_number" && extract_ != "answer_tag")
      o.fail("extract", "must be full, last_number or answer_tag");
    o.finish();
  }

  warmup::RewardResult score(const warmup::Example& example,
                             const std::string& completion) const override {
    warmup::RewardResult r;
    std::optional<std::string> got = extract(completion);
    if (!got) {
      r.value = wrong_value_;
      r.correct = false;
      r.error = extract_ == "last_number" ? "no number in completion" : "no <answer> tag in completion";
      return r;
    }
    r.extracted_answer = *got;
    bool ok = normalize(*got) == normalize(example.reference);
    r.value = ok ? correct_value_ : wrong_value_;
    r.correct = ok;
    r.breakdown["match"] = ok ? 1.0 : 0.0;
    return r;
  }

 private:
  std::optional<std::string> extract(const std::string& text) const {
    if (extract_ == "full") return text;
    if (extract_ == "answer_tag") {
      size_t open = text.rfind("<answer>");
      if (open == std::string::npos) return std::nullopt;
      size_t close = text.find("</answer>", open);
      if (close == std::string::npos) return std::nullopt;
      return text.substr(open + 8, close - open - 8);
    }
    static const std::regex kNumber(R"(-?\d+(?:\.\d+)?)");
    std::optional<std::string> last;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), kNumber); it != std::sregex_iterator(); ++it)
      last = it->str();
    return last;
  }

  std::string normalize(std::string s) const {
    if (strip_) s = trim(std::move(s));
    if (!case_sensitive_) std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s;
  }

  std::string extract_;
  bool case_sensitive_, strip_;
  double correct_value_, wrong_value_;
};

}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Reward, ExactMatch>(
    "exact_match", "0.1.0", "1 if the (extracted) answer equals the reference, else 0"))
