// The plugins' one PCRE2 wrapper (Math-Verify's parser, MMLU-Pro's extraction chains): compile
// once (UTF + Unicode properties, newline = LF, like Python's `re` on str; JIT when available),
// iterate matches with named groups, substitute with a callback, or find one group from an
// offset. Patterns are Python `re` syntax that PCRE2 accepts unchanged ((?P<name>...), (?i:...),
// lookbehind). Matching runs JIT code on a per-thread 4 MiB stack; a pattern that overflows it is
// matched again by the interpreter (never reported as "no match"). Thread-safe: a Regex is
// immutable after construction. Not a general regex library: no partial matching.
#pragma once

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace warmup::common {

namespace detail {
// Per-thread JIT stack and match data (allocated once per thread, not per match).
struct ThreadMatchState {
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
  pcre2_match_context* ctx = pcre2_match_context_create(nullptr);
  pcre2_match_data* md = pcre2_match_data_create(16, nullptr);
  ThreadMatchState() { pcre2_jit_stack_assign(ctx, nullptr, stack); }
  ~ThreadMatchState() {
    pcre2_match_data_free(md);
    pcre2_match_context_free(ctx);
    pcre2_jit_stack_free(stack);
  }
};
inline ThreadMatchState& thread_match_state() {
  thread_local ThreadMatchState s;
  return s;
}
// pcre2_match on the thread's JIT stack; the interpreter when the JIT stack is too small.
inline int match(const pcre2_code* code, std::string_view s, size_t pos, uint32_t opts, pcre2_match_data* md) {
  auto subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  int rc = pcre2_match(code, subject, s.size(), pos, opts | PCRE2_NO_UTF_CHECK, md, thread_match_state().ctx);
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
    rc = pcre2_match(code, subject, s.size(), pos, opts | PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, nullptr);
  return rc;
}
}  // namespace detail

class Regex;

// One match: byte offsets of the whole match and of each group (npos when unset).
struct Match {
  const Regex* re = nullptr;
  std::string_view subject;
  std::vector<std::pair<size_t, size_t>> groups;  // [0] = whole match
  size_t start() const { return groups[0].first; }
  size_t end() const { return groups[0].second; }
  bool has(size_t g) const { return g < groups.size() && groups[g].first != std::string::npos; }
  std::string str(size_t g = 0) const {
    return has(g) ? std::string(subject.substr(groups[g].first, groups[g].second - groups[g].first)) : "";
  }
  std::string named(std::string_view name) const;  // "" when unset or unknown
};

class Regex {
 public:
  explicit Regex(const std::string& pattern, uint32_t flags = 0) {
    int err = 0;
    PCRE2_SIZE off = 0;
    pcre2_compile_context* cc = pcre2_compile_context_create(nullptr);
    pcre2_set_newline(cc, PCRE2_NEWLINE_LF);  // `.` excludes only "\n", as in Python
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                          flags | PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &off, cc);
    pcre2_compile_context_free(cc);
    if (!code_) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(err, buf, sizeof buf);
      throw std::logic_error("regex error at " + std::to_string(off) + " of " + pattern + ": " +
                             reinterpret_cast<char*>(buf));
    }
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);
    uint32_t count = 0, entry = 0;
    PCRE2_SPTR table = nullptr;
    pcre2_pattern_info(code_, PCRE2_INFO_NAMECOUNT, &count);
    pcre2_pattern_info(code_, PCRE2_INFO_NAMEENTRYSIZE, &entry);
    pcre2_pattern_info(code_, PCRE2_INFO_NAMETABLE, &table);
    for (uint32_t i = 0; i < count; ++i) {
      const unsigned char* e = table + i * entry;
      names_.emplace_back(reinterpret_cast<const char*>(e + 2), (size_t(e[0]) << 8) | e[1]);
    }
  }
  Regex(const Regex&) = delete;
  ~Regex() { pcre2_code_free(code_); }

  // Named groups in table order (alphabetical), with their numbers.
  const std::vector<std::pair<std::string, size_t>>& names() const { return names_; }

  // All non-overlapping matches from the left, like Python's finditer.
  void for_each(std::string_view s, const std::function<bool(const Match&)>& fn) const {
    auto* md = pcre2_match_data_create_from_pattern(code_, nullptr);
    std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> guard(md, pcre2_match_data_free);
    size_t pos = 0;
    uint32_t opts = 0;
    while (pos <= s.size()) {
      int rc = detail::match(code_, s, pos, opts, md);
      if (rc < 0) {
        if (rc == PCRE2_ERROR_NOMATCH && opts) {  // empty match retry: advance one character
          opts = 0;
          ++pos;
          while (pos < s.size() && (static_cast<unsigned char>(s[pos]) & 0xC0) == 0x80) ++pos;
          continue;
        }
        break;
      }
      PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      uint32_t n = pcre2_get_ovector_count(md);
      Match m{this, s, {}};
      for (uint32_t g = 0; g < n; ++g)
        m.groups.emplace_back(ov[2 * g] == PCRE2_UNSET ? std::string::npos : ov[2 * g],
                              ov[2 * g + 1] == PCRE2_UNSET ? std::string::npos : ov[2 * g + 1]);
      if (!fn(m)) break;
      pos = ov[1];
      opts = ov[0] == ov[1] ? PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED : 0;
    }
  }
  std::vector<Match> find_all(std::string_view s) const {
    std::vector<Match> out;
    for_each(s, [&](const Match& m) { out.push_back(m); return true; });
    return out;
  }
  // Group `group` of the first match at or after byte `from`, as [b, e); false when there is no
  // match or the group is unset (Python's re.search(s, pos).span(group)).
  bool search_group(std::string_view s, size_t from, size_t group, size_t& b, size_t& e) const {
    pcre2_match_data* md = detail::thread_match_state().md;
    std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> own(nullptr, pcre2_match_data_free);
    if (group >= 16) own.reset(md = pcre2_match_data_create_from_pattern(code_, nullptr));
    int rc = detail::match(code_, s, from, 0, md);
    if (rc <= int(group)) return false;  // no match, error, or group beyond the last set one
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    if (ov[2 * group] == PCRE2_UNSET) return false;
    b = ov[2 * group], e = ov[2 * group + 1];
    return true;
  }
  bool search(std::string_view s) const {
    bool found = false;
    for_each(s, [&](const Match&) { found = true; return false; });
    return found;
  }
  // Python's re.sub with a function replacement.
  std::string sub(std::string_view s, const std::function<std::string(const Match&)>& fn, size_t limit = 0) const {
    std::string out;
    size_t last = 0, n = 0;
    for_each(s, [&](const Match& m) {
      out.append(s.substr(last, m.start() - last));
      out += fn(m);
      last = m.end();
      return limit == 0 || ++n < limit;
    });
    out.append(s.substr(last));
    return out;
  }
  // Replacement with \1-style group references only.
  std::string sub(std::string_view s, const std::string& repl) const {
    return sub(s, [&](const Match& m) {
      std::string r;
      for (size_t i = 0; i < repl.size(); ++i) {
        if (repl[i] == '\\' && i + 1 < repl.size() && std::isdigit(static_cast<unsigned char>(repl[i + 1])))
          r += m.str(size_t(repl[++i] - '0'));
        else if (repl[i] == '\\' && i + 1 < repl.size() && repl[i + 1] == '\\')
          r += repl[++i];
        else
          r += repl[i];
      }
      return r;
    });
  }

 private:
  pcre2_code* code_ = nullptr;
  std::vector<std::pair<std::string, size_t>> names_;
};

inline std::string Match::named(std::string_view name) const {
  for (const auto& [n, g] : re->names())
    if (n == name) return str(g);
  return "";
}

}  // namespace warmup::common
