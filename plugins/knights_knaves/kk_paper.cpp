// kk_paper: the paper's Knights & Knaves reward (its train/dataset_loader.py): format gate -2
// (exactly one </think>, <answer>, </answer>, and `.+</think>\s*<answer>(.+)</answer>\s*$`);
// then each answer line gives name = 2nd space-separated word, role = last word (lower-cased);
// a name not in the gold or a role without "knight"/"knave" -1; all equal to the gold +2; else
// -0.5. The reference is the gold `solution_text_format`.
#include <map>

#include "plugin_common/paper_format.h"
#include "kk_rewards.h"
#include "warmup/sdk.h"

namespace {

std::string strip(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && warmup::py_space_at(s, b)) b += warmup::py_space_at(s, b);
  while (e > b) {  // trailing: step back over one character at a time
    size_t k = e - 1;
    while (k > b && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
    if (!warmup::py_space_at(s, k) || k + warmup::py_space_at(s, k) != e) break;
    e = k;
  }
  return s.substr(b, e - b);
}

std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// {name: role} from lines "(1) Zoey is a knight" (the paper's preprocess).
std::map<std::string, std::string> parse_lines(const std::string& text) {
  std::map<std::string, std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t nl = text.find('\n', start);
    std::string line = text.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    start = nl == std::string::npos ? text.size() + 1 : nl + 1;
    if (line.empty()) continue;
    std::string st = strip(line);
    std::vector<std::string> sp;  // str.split(" "): single spaces, empty fields kept
    size_t p = 0;
    while (true) {
      size_t q = st.find(' ', p);
      sp.push_back(st.substr(p, q == std::string::npos ? std::string::npos : q - p));
      if (q == std::string::npos) break;
      p = q + 1;
    }
    if (sp.size() < 2) continue;
    out[lower(sp[1])] = lower(sp.back());
  }
  return out;
}

class KkPaper final : public warmup::Reward {
 public:
  explicit KkPaper(const warmup::PluginInit& init) {
    warmup::Options o(init);
    format_error_ = o.get<double>("format_error", -2.0);    // format gate failed
    parse_error_ = o.get<double>("parse_error", -1.0);      // unknown name or role
    correct_ = o.get<double>("correct", 2.0);               // every identity right
    wrong_ = o.get<double>("wrong", -0.5);                   // parsed but not all right
    o.finish();
  }

  warmup::RewardResult score(const warmup::Example& ex, const std::string& s) const override {
    warmup::RewardResult r;
    std::string span;
    if (!warmup::paper_format_gate(s, format_error_, r, span)) return r;
    auto fail = [&](double v, const std::string& why) {
      r.value = v;
      r.error = why;
      return r;
    };
    r.extracted_answer = strip(span);
    auto out = parse_lines(*r.extracted_answer);
    auto gold = parse_lines(ex.reference);
    for (const auto& [name, role] : out)
      if (!gold.count(name)) return fail(parse_error_, "a name in the answer is not in the puzzle");
    for (const auto& [name, role] : out)
      if (role.find("knight") == std::string::npos && role.find("knave") == std::string::npos)
        return fail(parse_error_, "a role is neither knight nor knave");
    bool ok = out == gold;
    r.value = ok ? correct_ : wrong_;
    r.correct = ok;
    return r;
  }

 private:
  double format_error_, parse_error_, correct_, wrong_;
};

}  // namespace

warmup_plugin_entry kk_paper_entry() {
  return warmup::entry<warmup::Reward, KkPaper>("kk_paper", "0.1.0", "Knights & Knaves reward of the paper (-2/-1/+2/-0.5)");
}
