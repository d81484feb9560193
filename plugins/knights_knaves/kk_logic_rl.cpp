// kk_logic_rl: Logic-RL's Knights & Knaves reward (verl reward_score/kk.py): format +1 when
// <think>, </think>, <answer>, </answer> each occur once and in order, else -1; then answer +2
// when every expected person's role matches, -1.5 when parsed but wrong, -2 when the answer
// cannot be parsed (the count of "knight"+"knave" mentions must equal the number of people and
// each name must appear as "<name> is a knight|knave") or the format is invalid. When the prompt
// ends with "<think>" (both K&K templates do, the paper's followed by whitespace), the completion is scored as "<think>" + completion,
// as Logic-RL scores the text after the assistant marker.
#include <map>
#include <regex>

#include "kk_rewards.h"
#include "warmup/sdk.h"

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

size_t count(const std::string& s, const std::string& sub) {
  size_t n = 0;
  for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
  return n;
}

std::string regex_escape(const std::string& s) {
  static const std::regex special(R"([.^$|()\[\]{}*+?\\])");
  return std::regex_replace(s, special, R"(\$&)");
}

// Gold {name: role} in file order, from "(1) Zoey is a knight" lines.
std::vector<std::pair<std::string, std::string>> parse_gold(const std::string& text) {
  static const std::regex line_re(R"(\b([A-Za-z]+)\b.*?\b(knight|knave)\b)", std::regex::icase);
  std::vector<std::pair<std::string, std::string>> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    std::string line = text.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    start = nl == std::string::npos ? text.size() : nl + 1;
    std::smatch m;
    if (std::regex_search(line, m, line_re)) out.emplace_back(m[1].str(), lower(m[2].str()));
  }
  return out;
}

class KkLogicRl final : public warmup::Reward {
 public:
  explicit KkLogicRl(const warmup::PluginInit& init) {
    warmup::Options o(init);
    format_reward_ = o.get<double>("format_reward", 1.0);  // +/- for the tag structure
    correct_ = o.get<double>("correct", 2.0);
    wrong_ = o.get<double>("wrong", -1.5);
    unparseable_ = o.get<double>("unparseable", -2.0);
    o.finish();
  }

  warmup::RewardResult score(const warmup::Example& ex, const std::string& completion) const override {
    warmup::RewardResult r;
    r.correct = false;
    const std::string think = "<think>";
    size_t last = ex.prompt.find_last_not_of(" \t\r\n");  // the paper's prompt ends "<think>\n    "
    std::string trimmed = last == std::string::npos ? std::string() : ex.prompt.substr(0, last + 1);
    bool prompted = trimmed.size() >= think.size() && trimmed.compare(trimmed.size() - think.size(), think.size(), think) == 0;
    std::string s = prompted ? think + completion : completion;
    bool format_ok = count(s, "<think>") == 1 && count(s, "</think>") == 1 && count(s, "<answer>") == 1 &&
                     count(s, "</answer>") == 1;
    if (format_ok) {
      size_t a = s.find("<think>"), b = s.find("</think>"), c = s.find("<answer>"), d = s.find("</answer>");
      format_ok = a < b && b < c && c < d;
    }
    double format = format_ok ? format_reward_ : -std::abs(format_reward_);
    r.breakdown["format"] = format;
    // The last <answer>...</answer> (non-greedy, DOTALL), stripped.
    std::string answer;
    size_t close = s.rfind("</answer>");
    if (close != std::string::npos) {
      size_t open = s.rfind("<answer>", close);
      if (open != std::string::npos) answer = s.substr(open + 8, close - open - 8);
    }
    auto trim = [](std::string x) {
      size_t b = x.find_first_not_of(" \t\r\n"), e = x.find_last_not_of(" \t\r\n");
      return b == std::string::npos ? std::string() : x.substr(b, e - b + 1);
    };
    answer = trim(answer);
    if (close != std::string::npos) r.extracted_answer = answer;
    double answer_score = unparseable_;
    if (format_ok && !answer.empty()) {
      auto gold = parse_gold(ex.reference);
      std::string la = lower(answer);
      bool parsed = count(la, "knight") + count(la, "knave") == gold.size();
      std::map<std::string, std::string> pred;
      for (size_t i = 0; parsed && i < gold.size(); ++i) {
        std::regex re("\\b" + regex_escape(gold[i].first) + "\\b\\s+is\\s+a\\s+\\b(knight|knave)\\b", std::regex::icase);
        std::smatch m;
        if (std::regex_search(answer, m, re)) pred[gold[i].first] = lower(m[1].str());
        else parsed = false;
      }
      if (parsed) {
        bool ok = true;
        for (const auto& [name, role] : gold) ok = ok && pred[name] == role;
        answer_score = ok ? correct_ : wrong_;
        r.correct = ok;
      } else {
        r.error = "answer does not name every person as a knight or knave exactly once";
      }
    } else {
      r.error = format_ok ? "empty answer" : "tags missing, repeated or out of order";
    }
    r.breakdown["answer"] = answer_score;
    r.value = format + answer_score;
    return r;
  }

 private:
  double format_reward_, correct_, wrong_, unparseable_;
};

}  // namespace

warmup_plugin_entry kk_logic_rl_entry() {
  return warmup::entry<warmup::Reward, KkLogicRl>("kk_logic_rl", "0.1.0", "Logic-RL's Knights & Knaves reward (format +-1, answer +2/-1.5/-2)");
}
