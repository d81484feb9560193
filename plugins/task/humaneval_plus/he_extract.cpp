// he_extract: format gate and fenced-code extraction (see he_extract.h for the rules).
#include "he_extract.h"

#include <vector>

namespace he {
namespace {

// Python's str.isspace for the characters that occur in practice, at byte i; its length or 0.
size_t space_at(const std::string& s, size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  if (c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F)) return 1;
  static const char* kSpaces[] = {"\xC2\x85", "\xC2\xA0", "\xE1\x9A\x80", "\xE2\x80\x80", "\xE2\x80\x81",
                                  "\xE2\x80\x82", "\xE2\x80\x83", "\xE2\x80\x84", "\xE2\x80\x85", "\xE2\x80\x86",
                                  "\xE2\x80\x87", "\xE2\x80\x88", "\xE2\x80\x89", "\xE2\x80\x8A", "\xE2\x80\xA8",
                                  "\xE2\x80\xA9", "\xE2\x80\xAF", "\xE2\x81\x9F", "\xE3\x80\x80"};
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

size_t count(const std::string& s, const std::string& sub) {
  size_t n = 0;
  for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
  return n;
}

struct Block {
  std::string info, body;
};

// Fenced blocks in order: an opening ``` with its info string (to the end of its line), the
// body up to the next ```. An unclosed fence is not a block.
std::vector<Block> blocks(const std::string& s) {
  std::vector<Block> out;
  for (size_t at = s.find("```"); at != std::string::npos;) {
    size_t close = s.find("```", at + 3);
    if (close == std::string::npos) break;
    std::string inner = s.substr(at + 3, close - at - 3);
    size_t nl = inner.find('\n');
    std::string info = inner.substr(0, nl == std::string::npos ? inner.size() : nl);
    bool tag = !info.empty() && info.find_first_not_of(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.") == std::string::npos;
    if (info.rfind("python", 0) == 0) out.push_back({"python", inner.substr(6)});  // as ```python(.*?)```
    else out.push_back({tag ? info : "", tag && nl != std::string::npos ? inner.substr(nl + 1) : inner});
    at = s.find("```", close + 3);
  }
  return out;
}

}  // namespace

bool format_ok(const std::string& s, std::string& answer, std::string& why) {
  if (count(s, "</think>") != 1 || count(s, "<answer>") != 1 || count(s, "</answer>") != 1) {
    why = "needs exactly one </think>, <answer> and </answer>";
    return false;
  }
  size_t t = s.find("</think>"), a = s.find("<answer>"), e = s.find("</answer>");
  if (t < 1 || a < t + 8 || !all_space(s, t + 8, a) || e < a + 9 || !all_space(s, e + 9, s.size())) {
    why = "not of the form ...</think> <answer>...</answer>";
    return false;
  }
  answer = s.substr(a + 8, e - a - 8);
  return true;
}

std::string answer_span(const std::string& s) {
  size_t a = s.rfind("<answer>");
  if (a == std::string::npos) return s;
  size_t e = s.find("</answer>", a);
  return s.substr(a + 8, e == std::string::npos ? std::string::npos : e - a - 8);
}

std::string extract_code(const std::string& answer, bool first) {
  auto all = blocks(answer);
  const Block* python = nullptr;
  for (const auto& b : all)
    if (b.info == "python" && (!python || !first)) python = &b;
  if (python) return python->body;
  if (!all.empty()) return first ? all.front().body : all.back().body;
  return answer;
}

}  // namespace he
