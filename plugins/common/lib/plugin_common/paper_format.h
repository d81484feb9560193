// The paper's format gate, shared by every task's paper reward (its train/dataset_loader.py): the
// completion holds exactly one `</think>`, one `<answer>` and one `</answer>` and matches
// `.+</think>\s*<answer>(.+)</answer>\s*$` with DOTALL, `\s` being Python's (Unicode) whitespace.
// Header-only; no dependencies beyond the standard library.
#pragma once

#include <string>

namespace warmup {

// Length of the Python `str.isspace` character at byte i of UTF-8 text (ASCII, \x1c-\x1f, NEL,
// NBSP, the Unicode spaces, line/paragraph separators, ideographic space), or 0.
inline size_t py_space_at(const std::string& s, size_t i) {
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

inline bool py_all_space(const std::string& s, size_t from, size_t to) {
  for (size_t i = from; i < to;) {
    size_t n = py_space_at(s, i);
    if (!n) return false;
    i += n;
  }
  return true;
}

// Non-overlapping occurrences of `sub` in `s`.
inline size_t count_occurrences(const std::string& s, const std::string& sub) {
  size_t n = 0;
  for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
  return n;
}

// True when `s` passes the gate; `answer` then holds the span between <answer> and </answer>,
// else `why` says what failed.
inline bool paper_format(const std::string& s, std::string& answer, std::string& why) {
  if (count_occurrences(s, "</think>") != 1 || count_occurrences(s, "<answer>") != 1 ||
      count_occurrences(s, "</answer>") != 1) {
    why = "needs exactly one </think>, <answer> and </answer>";
    return false;
  }
  size_t t = s.find("</think>"), a = s.find("<answer>"), e = s.find("</answer>");
  if (t < 1 || a < t + 8 || !py_all_space(s, t + 8, a) || e < a + 9 || !py_all_space(s, e + 9, s.size())) {
    why = "not of the form ...</think> <answer>...</answer>";
    return false;
  }
  answer = s.substr(a + 8, e - a - 8);
  return true;
}

// The gate as the first step of a paper reward (`Result` is warmup::RewardResult): `r` starts
// incorrect; when the gate fails it gets `format_error`, the reason and breakdown format 0, and
// false is returned; when it passes, breakdown format 1 and `answer` holds the answer span.
template <class Result>
bool paper_format_gate(const std::string& s, double format_error, Result& r, std::string& answer) {
  r.correct = false;
  std::string why;
  if (!paper_format(s, answer, why)) {
    r.value = format_error;
    r.error = why;
    r.breakdown["format"] = 0.0;
    return false;
  }
  r.breakdown["format"] = 1.0;
  return true;
}

}  // namespace warmup
