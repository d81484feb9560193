// Extraction chains on PCRE2 (JIT), written to match exactly like Python 3 `re` on str:
// - `\s` is spelled out as the set of str.isspace() (Python's re uses Py_UNICODE_ISSPACE), since
//   PCRE2's \s differs (it lacks \x1c-\x1f and \x85);
// - `\b` uses PCRE2_UCP: word characters are \p{L}, \p{N} and "_" (PCRE2 10.42), as Python's
//   str.isalnum() or "_" (letters Lu/Ll/Lt/Lm/Lo and numbers Nd/Nl/No);
// - `.` without DOTALL excludes only "\n" (newline convention LF set explicitly), as in Python;
// - search semantics (leftmost match, greedy/lazy backtracking) are the same in both engines.
// The official last-letter tier `\b[A-J]\b(?!.*\b[A-J]\b)` (DOTALL) is run as "the last match of
// \b[A-J]\b": a later standalone letter can never start right after a matched letter (that would
// need a word boundary between two letters), so the negative lookahead rejects exactly the
// matches that are followed by another one. Same result, linear instead of quadratic time.
#include "mmlu_extract.h"

#include "plugin_common/regex.h"

#include <array>
#include <memory>
#include <stdexcept>
#include <vector>

namespace mmlu {
namespace {

// Python's str.isspace() as a PCRE2 character class (no brackets).
const std::string kPySpace =
    R"(\t\n\x{0b}\x{0c}\r\x{1c}-\x{1f} \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000})";
const std::string kS = "[" + kPySpace + "]";

using warmup::common::Regex;

// Group `group` of the first match at or after `from`, as [begin, end) offsets; false if none.
bool search(const Regex& re, const std::string& s, size_t from, int group, size_t& b, size_t& e) {
  return re.search_group(s, from, size_t(group), b, e);
}

// Length of the valid UTF-8 sequence at s[i] (strict: no overlongs, surrogates or > U+10FFFF), 0 if invalid.
size_t utf8_len(const std::string& s, size_t i) {
  auto u = [&](size_t k) { return k < s.size() ? static_cast<unsigned char>(s[k]) : 0u; };
  unsigned c = u(i);
  if (c < 0x80) return 1;
  auto cont = [&](size_t k, unsigned lo = 0x80, unsigned hi = 0xBF) { return u(k) >= lo && u(k) <= hi; };
  if (c >= 0xC2 && c <= 0xDF) return cont(i + 1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    return cont(i + 1, lo, hi) && cont(i + 2) ? 3 : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    return cont(i + 1, lo, hi) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  }
  return 0;
}

// Null when `s` is valid UTF-8; else a copy with each invalid byte replaced by U+FFFD.
std::unique_ptr<std::string> repaired_utf8(const std::string& s) {
  std::unique_ptr<std::string> out;
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_len(s, i);
    if (n == 0 && !out) out = std::make_unique<std::string>(s.substr(0, i));
    if (out) *out += n ? s.substr(i, n) : std::string("\xEF\xBF\xBD");
    i += n ? n : 1;
  }
  return out;
}

struct Patterns {
  Regex boxed{R"(\\boxed\{(?:\\text\{)?)" + kS + "*([A-J])" + kS + R"(*(?:\})?\})"};
  Regex answer_tag{"<answer>" + kS + R"(*([A-J])(\.)" + kS + "*(.*?))?" + kS + "*</answer>"};
  Regex answer_is{R"(answer is \(?([A-J])\)?)"};
  Regex answer_colon_paren{".*[aA]nswer:" + kS + R"(*\(?([A-J])\)?)"};
  Regex answer_colon_plain{".*[aA]nswer:" + kS + "*([A-J])"};
  Regex letter{R"(\b[A-J]\b)"};
};

const Patterns& patterns() {
  static const Patterns p;
  return p;
}

Extraction last_letter(const std::string& s, int tier) {
  const Regex& re = patterns().letter;
  size_t b = 0, e = 0, from = 0;
  Extraction x;
  while (from <= s.size() && search(re, s, from, 0, b, e)) {
    x = {s[b], tier, "last_letter"};
    from = e;
  }
  return x;
}

Extraction run(Chain chain, const std::string& s, bool paren_again) {
  const Patterns& p = patterns();
  size_t b = 0, e = 0;
  if (chain == Chain::kPaper) {
    if (search(p.boxed, s, 0, 1, b, e)) return {s[b], 1, "boxed"};
    if (search(p.answer_tag, s, 0, 1, b, e)) return {s[b], 2, "answer_tag"};
    return last_letter(s, 3);
  }
  if (search(p.answer_is, s, 0, 1, b, e)) return {s[b], 1, "answer_is"};
  if (search(paren_again ? p.answer_colon_paren : p.answer_colon_plain, s, 0, 1, b, e)) return {s[b], 2, "answer_colon"};
  return last_letter(s, 3);
}

}  // namespace

Extraction extract(Chain chain, const std::string& text, bool paren_again) {
  auto repaired = repaired_utf8(text);
  return run(chain, repaired ? *repaired : text, paren_again);
}

size_t py_space_at(const std::string& s, size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  if (c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F)) return 1;
  static const std::array<const char*, 19> kSpaces = {
      "\xC2\x85", "\xC2\xA0", "\xE1\x9A\x80", "\xE2\x80\x80", "\xE2\x80\x81", "\xE2\x80\x82", "\xE2\x80\x83",
      "\xE2\x80\x84", "\xE2\x80\x85", "\xE2\x80\x86", "\xE2\x80\x87", "\xE2\x80\x88", "\xE2\x80\x89",
      "\xE2\x80\x8A", "\xE2\x80\xA8", "\xE2\x80\xA9", "\xE2\x80\xAF", "\xE2\x81\x9F", "\xE3\x80\x80"};
  for (const char* sp : kSpaces) {
    size_t n = std::char_traits<char>::length(sp);
    if (s.compare(i, n, sp) == 0) return n;
  }
  return 0;
}

std::string py_strip(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && py_space_at(s, b)) b += py_space_at(s, b);
  while (e > b) {  // step back one character at a time
    size_t k = e - 1;
    while (k > b && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
    if (!py_space_at(s, k) || k + py_space_at(s, k) != e) break;
    e = k;
  }
  return s.substr(b, e - b);
}

// ---- CPython's random: MT19937 with init_by_array, getrandbits, _randbelow
namespace {
struct Mt19937 {
  std::array<uint32_t, 624> mt{};
  int mti = 625;
  void init_genrand(uint32_t s) {
    mt[0] = s;
    for (mti = 1; mti < 624; ++mti) mt[mti] = 1812433253U * (mt[mti - 1] ^ (mt[mti - 1] >> 30)) + uint32_t(mti);
  }
  void init_by_array(const std::vector<uint32_t>& key) {
    init_genrand(19650218U);
    size_t i = 1, j = 0, k = std::max<size_t>(624, key.size());
    for (; k; --k) {
      mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) * 1664525U)) + key[j] + uint32_t(j);
      if (++i >= 624) mt[0] = mt[623], i = 1;
      if (++j >= key.size()) j = 0;
    }
    for (k = 623; k; --k) {
      mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) * 1566083941U)) - uint32_t(i);
      if (++i >= 624) mt[0] = mt[623], i = 1;
    }
    mt[0] = 0x80000000U;
    mti = 624;
  }
  uint32_t next() {
    if (mti >= 624) {
      for (int kk = 0; kk < 624; ++kk) {
        uint32_t y = (mt[kk] & 0x80000000U) | (mt[(kk + 1) % 624] & 0x7fffffffU);
        mt[kk] = mt[(kk + 397) % 624] ^ (y >> 1) ^ ((y & 1U) ? 0x9908b0dfU : 0U);
      }
      mti = 0;
    }
    uint32_t y = mt[mti++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680U;
    y ^= (y << 15) & 0xefc60000U;
    y ^= y >> 18;
    return y;
  }
};
}  // namespace

int64_t python_randint_below(uint64_t seed, int64_t n) {
  if (n <= 1) return 0;
  std::vector<uint32_t> key;
  for (uint64_t v = seed; v; v >>= 32) key.push_back(uint32_t(v));
  if (key.empty()) key.push_back(0);
  Mt19937 mt;
  mt.init_by_array(key);
  int k = 0;
  while ((uint64_t(1) << k) <= uint64_t(n)) ++k;  // n.bit_length()
  // getrandbits(k) for k <= 32: the top k bits of one 32-bit output.
  for (;;) {
    uint64_t r = mt.next() >> (32 - k);
    if (int64_t(r) < n) return int64_t(r);
  }
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

}  // namespace mmlu
