// he_extract: format gate and fenced-code extraction (see he_extract.h for the rules).
#include "he_extract.h"

#include <vector>

#include "plugin_common/paper_format.h"  // header-only, standard library only

namespace he {
namespace {

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
  return warmup::paper_format(s, answer, why);
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
