// kk_paper: the paper's Knights & Knaves reward (its train/dataset_loader.py): format gate -2
// (exactly one </think>, <answer>, </answer>, and `.+</think>\s*<answer>(.+)</answer>\s*$`);
// then each answer line gives name = 2nd space-separated word, role = last word (lower-cased);
// a name not in the gold or a role without "knight"/"knave" -1; all equal to the gold +2; else
// -0.5. The reference is the gold `solution_text_format`.
#include <map>

#include "warmup/sdk.h"

namespace {

// Python's str.isspace for the characters that occur in practice (ASCII, NEL, NBSP, Unicode
// spaces, line/paragraph separators, ideographic space), at byte position i; returns its length.
size_t space_at(const std::string& s, size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  if (c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F)) return 1;
  static const char* kSpaces[] = {"\xC2\x85", "\xC2\xA0", "\xE1\x9A\x80", "\xE2\x80\x80", "\xE2\x80\x81", "\xE2\x80\x82",
                                  "\xE2\x80\x83", "\xE2\x80\x84", "\xE2\x80\x85", "\xE2\x80\x86", "\xE2\x80\x87",
                                  "\xE2\x80\x88", "\xE2\x80\x89", "\xE2\x80\x8A", "\xE2\x80\xA8", "\xE2\x80\xA9",
                                  "\xE2\x80\xAF", "\xE2\x81\x9F", "\xE3\x80\x80"};
  for (const char* sp : kSpaces) {
    size_t n = std::char_traits<char>::length(sp);
    if (s.compare(i, n, sp) == 0) return n;
  }
  return 0;
}

bool all_space(const std::string& s, size_t from, size_t to) {
  for (size_t i = from; i < to;) {
    size_t n = space_at(s, i);
    if (!n) return false;
    i += n;
  }
  return true;
}

std::string strip(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && space_at(s, b)) b += space_at(s, b);
  while (e > b) {  // trailing: step back over one character at a time
    size_t k = e - 1;
    while (k > b && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
    if (!space_at(s, k) || k + space_at(s, k) != e) break;
    e = k;
  }
  return s.substr(b, e - b);
}

size_t count(const std::string& s, const std::string& sub) {
  size_t n = 0;
  for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
  return n;
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
    r.correct = false;
    auto fail = [&](double v, const char* why) {
      r.value = v;
      r.error = why;
      r.breakdown["format"] = v == format_error_ ? 0.0 : 1.0;
      return r;
    };
    if (count(s, "</think>") != 1 || count(s, "<answer>") != 1 || count(s, "</answer>") != 1)
      return fail(format_error_, "needs exactly one </think>, <answer> and </answer>");
    size_t t = s.find("</think>"), a = s.find("<answer>"), e = s.find("</answer>");
    // .+</think>\s*<answer>(.+)</answer>\s*$ with DOTALL
    if (t < 1 || a < t + 8 || !all_space(s, t + 8, a) || e < a + 9 || !all_space(s, e + 9, s.size()))
      return fail(format_error_, "not of the form ...</think> <answer>...</answer>");
    auto out = parse_lines(strip(s.substr(a + 8, e - a - 8)));
    auto gold = parse_lines(ex.reference);
    for (const auto& [name, role] : out)
      if (!gold.count(name)) return fail(parse_error_, "a name in the answer is not in the puzzle");
    for (const auto& [name, role] : out)
      if (role.find("knight") == std::string::npos && role.find("knave") == std::string::npos)
        return fail(parse_error_, "a role is neither knight nor knave");
    r.breakdown["format"] = 1.0;
    bool ok = out == gold;
    r.value = ok ? correct_ : wrong_;
    r.correct = ok;
    return r;
  }

 private:
  double format_error_, parse_error_, correct_, wrong_;
};

}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Reward, KkPaper>("kk_paper", "0.1.0",
                                                     "Knights & Knaves reward of the paper (-2/-1/+2/-0.5)"))
