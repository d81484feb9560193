// Port of latex2sympy2_extended.math_normalization (v1.x, MIT) used by Math-Verify 0.9. The
// regular expressions are the originals (PCRE2 accepts Python's syntax); comments name the
// Python functions. Deliberately not configurable beyond the boxed mode: the verifier only ever
// uses one configuration.
#include "mv_normalize.h"

#include <cctype>
#include <vector>

#include "mv_regex.h"

namespace mv {

size_t u8len(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

namespace {

bool py_space(unsigned char c) { return c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x1f); }

std::string strip(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && py_space(s[b])) ++b;
  while (e > b && py_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

std::string lstrip(const std::string& s) {
  size_t b = 0;
  while (b < s.size() && py_space(s[b])) ++b;
  return s.substr(b);
}

std::vector<std::string> split(const std::string& s, const std::string& sep) {
  std::vector<std::string> out;
  size_t p = 0;
  for (size_t q; (q = s.find(sep, p)) != std::string::npos; p = q + sep.size()) out.push_back(s.substr(p, q - p));
  out.push_back(s.substr(p));
  return out;
}

void replace_all(std::string& s, const std::string& a, const std::string& b) {
  for (size_t at = 0; (at = s.find(a, at)) != std::string::npos; at += b.size()) s.replace(at, a.size(), b);
}

const char* kUnits[] = {
    "integerpoint", "feet", "sue", "digit", "pound", "meal", "edge", "student", "children ticket", "multiple",
    "east", "degree", "mph", "kmph", "ft", "m square", " m east", "sq m", "deg", "mile", "q .", "monkey", "prime",
    "ratio", "profit of rs", "rd", "o", "gm", "p . m", "lb", "tile", "per", "dm", "lt", "gain", "ab", "way", "west",
    "a .", "b .", "c .", "d .", "e .", "f .", "g .", "h .", "t", "h", "no change", "men", "soldier", "pie", "bc",
    "excess", "st", "inches", "noon", "cent", "by", "gal", "kmh", "c", "acre", "rise", "a . m", "th", "π r 2", "sq",
    "mark", "l", "toy", "coin", "sq . m", "gallon", "° f", "profit", "minw", "yr", "women", "am", "pm", "hr",
    "cu cm", "square", "v â € ™", "are", "rupee", "rounds", "cubic", "cc", "mtr", "s", "ohm", "number", "kmph",
    "day", "hour", "minute", "min", "second", "man", "woman", "sec", "cube", "mt", "sq inch", "mp", "∏ cm ³",
    "hectare", "more", "sec", "unit", "cu . m", "cm 2", "rs .", "rs", "kg", "g", "month", "km", "m", "cm", "mm",
    "apple", "liter", "loss", "yard", "pure", "year", "increase", "decrease", "d", "less", "Surface", "litre",
    "pi sq m", "s .", "metre", "meter", "inch"};

std::string units_pattern() {
  std::string alt;
  for (const char* u : kUnits) alt += (alt.empty() ? "" : "|") + std::string(u);
  return "(\\d|\\}|\\s)\\s*(?:(?:" + alt + ")(?:s|es)?)\\s*$";
}

struct Patterns {
  Regex left{R"(\\m?left(\\\{|\{|\\\||\||\[|\(|\\rbracl|\\lgroup|\\lbrace|\\lbrack|\\vert|\\lvert|\\lceil|\\lfloor|\\vert|\\lvert|\\langle|\\llcorner|\\ulcorner))"};
  Regex right{R"(\\m?right(\\\}|\}|\\\||\||\]|\)|\\rbrack|\\rgroup|\\rbrace|\\rbrack|\\vert|\\rvert|\\rceil|\\rfloor|\\vert|\\rvert|\\rangle|\\lrcorner|\\urcorner))"};
  Regex units{units_pattern()};
  Regex to_remove{R"(\\mathrm\{th\}|\\!\s*|\\text\s*\{\s*\}|\\\$|\$|(?<!\\)["']|\\displaystyle)"};
  Regex to_replace{
      R"((?P<math>\\math(?:rm|it|bf))|(?P<text>\\text(?:normal|bf|it|rm))|(?P<frac>\\(?:d|t|c)frac)|)"
      R"((?P<decimal_space>\s\.)|(?P<decimal_brace>\{\.)|(?P<approx>\~\=)|(?P<comma>\s*\{\s*,\s*\})|)"
      R"((?P<and_or>(?<![a-zA-Z])(,?\s*(?:and|or))(?![a-zA-Z]))|(?P<and_or_text>(,?\s*\\text{\s*(?:and|or)\s*}))|)"
      R"((?P<backslash_space>(?<!\\)\\\s)|(?P<infinity>infinity)|(?P<dot>,?(\\ldots))|)"
      R"((?P<percentage>\s*\bpercentage\b)|(?P<percentage_in_text>\\text{percentage})|)"
      R"((?P<percent>\s*\bpercent\b)|(?P<percent_in_text>\\text{percent})|(?P<pct>\s*\bpct\b)|)"
      R"((?P<pct_in_text>\\text{pct})|(?P<inf>((?<!\\)inf(?!inity)))|(?P<sqrt> sqrt))"};
  Regex command_slash{R"(\\\\(?=[a-zA-Z]))"};
  Regex permutation{R"(\(([a-zA-Z0-9+\-*/\\ ]+?)\)_{([a-zA-Z0-9+\-*/\\ ]+?)})"};
  Regex unit_superscript{R"((\\(?:text|mbox){.*?})(\^\d|\{\^\d\})?$)"};
  Regex separator{R"(\b(and|or)\b|,|;)"};
  std::vector<std::pair<Regex*, std::string>> malformed;
  Regex m1{R"(\^\s?\((.*?)\))"}, m2{R"(sqrt\s?\((.*?)\))"}, m3{R"(\\frac\s?(\d)\s?(\d+))"},
      m4{R"(\\log_\s?(\d)\s?(\d+))"}, m5{R"(\\frac\s?{(.*?)}\s?(\d))"}, m6{R"(\\frac\s?(\d)\s?{(.*?)})"},
      m7{R"(\\sqrt\s?(\d))"};
  Patterns() {
    malformed = {{&m1, R"(^{\1})"}, {&m2, R"(\\sqrt{\1})"}, {&m3, R"(\\frac{\1}{\2})"}, {&m4, R"(\\log_{\1}{\2})"},
                 {&m5, R"(\\frac{\1}{\2})"}, {&m6, R"(\\frac{\1}{\2})"}, {&m7, R"(\\sqrt{\1})"}};
  }
};

const Patterns& pat() {
  static const Patterns p;
  return p;
}

std::string replacement(const std::string& name) {
  static const std::vector<std::pair<std::string, std::string>> r = {
      {"math", "\\text"}, {"text", "\\text"}, {"frac", "\\frac"}, {"decimal_space", " 0."}, {"decimal_brace", "{0."},
      {"approx", "\\approx"}, {"comma", ","}, {"and_or", ","}, {"and_or_text", ","}, {"backslash_space", " "},
      {"infinity", "\\infty"}, {"dot", " "}, {"percentage", "\\%"}, {"percentage_in_text", "%"}, {"percent", "\\%"},
      {"percent_in_text", "%"}, {"pct", "\\%"}, {"pct_in_text", "%"}, {"inf", "\\infty"}, {"sqrt", "\\sqrt"}};
  for (const auto& [n, v] : r)
    if (n == name) return v;
  return "";
}

// _fix_fracs (Hendrycks MATH).
std::string fix_fracs(const std::string& text) {
  auto parts = split(text, "\\frac");
  std::string out = parts[0];
  for (size_t i = 1; i < parts.size(); ++i) {
    std::string s = lstrip(parts[i]);
    out += "\\frac";
    if (!s.empty() && s[0] == '{') {
      out += s;
    } else if (s.size() < 2) {
      return text;
    } else {
      char a = s[0], b = s[1];
      if (b != '{') out += std::string("{") + a + "}{" + b + "}" + s.substr(2);
      else out += std::string("{") + a + "}" + b + s.substr(2);
    }
  }
  return out;
}

// _fix_sqrt (Hendrycks MATH).
std::string fix_sqrt(const std::string& text) {
  if (text.find("\\sqrt") == std::string::npos) return text;
  auto parts = split(text, "\\sqrt");
  std::string out = parts[0];
  for (size_t i = 1; i < parts.size(); ++i) {
    std::string s = lstrip(parts[i]);
    if (!s.empty() && s[0] != '{' && s[0] != '[') {
      size_t n = 1;  // one character (a whole UTF-8 sequence)
      while (n < s.size() && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) ++n;
      out += "\\sqrt{" + s.substr(0, n) + "}" + s.substr(n);
    } else {
      out += "\\sqrt" + s;
    }
  }
  return out;
}

// _fix_a_slash_b: "2/3" -> \frac{2}{3} when both sides are plain integers.
std::string fix_a_slash_b(const std::string& text) {
  auto parts = split(text, "/");
  if (parts.size() != 2) return text;
  auto plain_int = [](const std::string& s) {
    size_t i = s[0] == '-' ? 1 : 0;
    if (i >= s.size() || (s[i] == '0' && s.size() > i + 1) || (s[0] == '-' && s == "-0")) return false;
    for (size_t k = i; k < s.size(); ++k)
      if (!std::isdigit(static_cast<unsigned char>(s[k]))) return false;
    return true;
  };
  if (parts[0].empty() || parts[1].empty() || !plain_int(parts[0]) || !plain_int(parts[1])) return text;
  return "\\frac{" + parts[0] + "}{" + parts[1] + "}";
}

}  // namespace

std::string extract_boxed_content(const std::string& text, BoxedMode mode) {
  std::vector<std::string> results;
  size_t current = text.size(), max_pos = text.size();
  std::optional<size_t> last_start;
  while (true) {
    size_t b = current == 0 ? std::string::npos : text.rfind("\\boxed", current - 1);
    size_t f = current == 0 ? std::string::npos : text.rfind("\\fbox", current - 1);
    // rfind(x, 0, current): the match must end at or before `current`
    while (b != std::string::npos && b + 6 > current) b = b == 0 ? std::string::npos : text.rfind("\\boxed", b - 1);
    while (f != std::string::npos && f + 5 > current) f = f == 0 ? std::string::npos : text.rfind("\\fbox", f - 1);
    if (b == std::string::npos && f == std::string::npos) break;
    bool is_boxed = f == std::string::npos || (b != std::string::npos && b > f);
    size_t start = is_boxed ? b : f;
    size_t p = start + (is_boxed ? 6 : 5);
    while (p < max_pos && py_space(text[p])) ++p;
    if (p >= max_pos) break;
    if (text[p] == '{') {
      int depth = 1;
      size_t i = p, close = std::string::npos;
      while (i + 1 < max_pos) {
        ++i;
        if (text[i] == '{') ++depth;
        else if (text[i] == '}' && --depth == 0) {
          close = i;
          break;
        }
      }
      if (close == std::string::npos) {
        if (results.empty()) results.push_back(text.substr(p));
        break;
      }
      std::string content = strip(text.substr(p + 1, close - p - 1));
      if (mode == BoxedMode::kLast && last_start) {
        std::string between = text.substr(close + 1, *last_start > close + 1 ? *last_start - close - 1 : 0);
        bool ok = u8len(between) < 10 ||
                  ((results.empty() || content != results.back()) && u8len(between) < 70 && pat().separator.search(between));
        if (!ok) break;
      }
      if (results.empty() || results.back() != content) results.push_back(content);
      last_start = start;
      max_pos = start;
    } else {
      if (results.empty()) results.push_back(text.substr(p));
      break;
    }
    current = start;
  }
  if (results.empty()) return text;
  std::string out;
  for (size_t i = results.size(); i-- > 0;) out += results[i] + (i ? "," : "");
  return out;
}

std::optional<std::string> last_boxed(const std::string& text) {
  size_t b = text.rfind("\\boxed"), f = text.rfind("\\fbox");
  if (b == std::string::npos && f == std::string::npos) return std::nullopt;
  bool is_boxed = f == std::string::npos || (b != std::string::npos && b > f);
  size_t p = (is_boxed ? b + 6 : f + 5);
  if (is_boxed && p < text.size() && text[p] == ' ') {  // "\boxed 5": up to the next $ or space
    size_t e = text.find_first_of("$ ", p + 1);
    return text.substr(p + 1, e == std::string::npos ? std::string::npos : e - p - 1);
  }
  if (p >= text.size() || text[p] != '{') return std::nullopt;
  int depth = 0;
  for (size_t i = p; i < text.size(); ++i) {
    if (text[i] == '{') ++depth;
    else if (text[i] == '}' && --depth == 0) return text.substr(p + 1, i - p - 1);
  }
  return std::nullopt;
}

std::string normalize_latex(const std::string& input, BoxedMode boxed) {
  const Patterns& P = pat();
  std::string text = boxed == BoxedMode::kNone ? input : extract_boxed_content(input, boxed);
  // basic_latex
  replace_all(text, "\\mathrm{T}", "T");
  replace_all(text, "\\mathrm{d}", "d");
  replace_all(text, "{\\rm d}", "d");
  replace_all(text, "\\left[\\begin{matrix}", "\\begin{bmatrix}");
  replace_all(text, "\\end{matrix}\\right]", "\\end{bmatrix}");
  text = P.left.sub(text, "\\1");
  text = P.right.sub(text, "\\1");
  text = P.permutation.sub(text, R"(\\frac{(\1)!}{((\1)-(\2))!})");
  text = P.to_remove.sub(text, "");
  text = P.to_replace.sub(text, [&](const Match& m) {
    for (const auto& [name, g] : P.to_replace.names())
      if (m.has(g)) return replacement(name);
    return m.str();
  });
  for (auto& c : text)
    if (c == '\n' || c == '\t') c = ' ';
  if (text.find("matrix") == std::string::npos) text = P.command_slash.sub(text, "\\\\");
  // units
  std::string t = strip(P.unit_superscript.sub(text, ""));
  if (!t.empty() && t != text) text = t;
  for (int i = 0; i < 2; ++i) {
    t = P.units.sub(text, "\\1");
    if (!t.empty() && t != text) text = t;
  }
  // nits
  if (!text.empty() && text[0] == '.') text = "0" + text;
  if (text == "0.5") text = "\\frac{1}{2}";
  // malformed_operators
  for (const auto& [re, repl] : P.malformed) text = re->sub(text, repl);
  replace_all(text, " sqrt", "\\sqrt");
  text = fix_sqrt(text);
  text = fix_fracs(text);
  text = fix_a_slash_b(text);
  return strip(text);
}

}  // namespace mv
