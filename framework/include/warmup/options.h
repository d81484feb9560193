// Options: a plugin's typed view of its own TOML sub-table.
//
// Reads keys with defaults (`get`), required keys (`require`), records every value it hands out
// (defaults included) so the host stores the fully resolved config, and `finish()` rejects any key
// the plugin never asked for, citing file:line:col. Errors are ConfigError. Floats must be finite
// (NaN and +-inf are refused for every key, in arrays too, unless the plugin calls
// `allow_nonfinite(key)` first). Ranges: pass `Bounds` to `get`/`require`/`optional` (or call
// `check`), e.g. `o.get<double>("learning_rate", 1e-6, warmup::above(0).at_most(1))`; the error
// names the bound and the value. `fits_in_memory` bounds counts that size allocations.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <toml++/toml.h>

#include "host.h"
#include "types.h"

namespace warmup {

namespace detail {

inline std::string type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string: return "string";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return "boolean";
    case toml::node_type::array: return "array";
    case toml::node_type::table: return "table";
    case toml::node_type::date: return "date";
    case toml::node_type::time: return "time";
    case toml::node_type::date_time: return "date-time";
    default: return "nothing";
  }
}

inline size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// " (did you mean 'x'?)" for the closest known name within distance 2 (or a prefix match).
inline std::string suggest(std::string_view unknown, const std::set<std::string>& known) {
  std::string best;
  size_t best_d = 3;
  for (const auto& k : known) {
    size_t d = edit_distance(unknown, k);
    if (d < best_d) best_d = d, best = k;
  }
  return best.empty() ? std::string() : " (did you mean '" + best + "'?)";
}

template <class T>
inline constexpr bool is_vector_v = false;
template <class T>
inline constexpr bool is_vector_v<std::vector<T>> = true;

template <class T>
const char* expected_name() {
  if constexpr (std::is_same_v<T, bool>) return "boolean";
  else if constexpr (std::is_integral_v<T>) return "integer";
  else if constexpr (std::is_floating_point_v<T>) return "float";
  else if constexpr (std::is_same_v<T, std::string>) return "string";
  else return "array";
}

// Converts one node to T; returns an error text on mismatch.
inline std::string format_double(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[40];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {  // whole numbers as such: 1000000, not 1e+06
    std::snprintf(buf, sizeof(buf), "%.0f", v);
    return buf;
  }
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  // The shortest text that reads back as v.
  for (int prec = 1; prec <= 17; ++prec) {
    char b[40];
    std::snprintf(b, sizeof(b), "%.*g", prec, v);
    if (std::strtod(b, nullptr) == v) return b;
  }
  return buf;
}

// Converts one node to T; returns an error text on mismatch. Floats must be finite unless
// `allow_nonfinite` (NaN and infinities are never a sensible option value by accident).
template <class T>
std::optional<T> convert(const toml::node& n, std::string& error, bool allow_nonfinite = false) {
  if constexpr (std::is_same_v<T, bool>) {
    if (auto v = n.value_exact<bool>()) return *v;
  } else if constexpr (std::is_integral_v<T>) {
    if (auto v = n.value_exact<int64_t>()) {
      if (*v < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
          (*v > 0 && static_cast<uint64_t>(*v) > std::numeric_limits<T>::max())) {
        error = "integer " + std::to_string(*v) + " out of range";
        return std::nullopt;
      }
      return static_cast<T>(*v);
    }
  } else if constexpr (std::is_floating_point_v<T>) {
    if (auto v = n.value_exact<double>()) {
      if (!allow_nonfinite && !std::isfinite(*v)) {
        error = "must be a finite number, got " + format_double(*v);
        return std::nullopt;
      }
      return static_cast<T>(*v);
    }
    if (auto v = n.value_exact<int64_t>()) return static_cast<T>(*v);
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (auto v = n.value_exact<std::string>()) return *v;
  } else if constexpr (is_vector_v<T>) {
    if (const toml::array* arr = n.as_array()) {
      T out;
      for (size_t i = 0; i < arr->size(); ++i) {
        auto e = convert<typename T::value_type>(*arr->get(i), error, allow_nonfinite);
        if (!e) {
          error = "element " + std::to_string(i) + ": " + error;
          return std::nullopt;
        }
        out.push_back(*e);
      }
      return out;
    }
  }
  if (error.empty())
    error = std::string("expected ") + expected_name<T>() + ", found " + type_name(n);
  return std::nullopt;
}

template <class T>
void insert_value(toml::table& t, const std::string& key, const T& v) {
  if constexpr (is_vector_v<T>) {
    toml::array arr;
    for (const auto& e : v) {
      if constexpr (std::is_integral_v<typename T::value_type> &&
                    !std::is_same_v<typename T::value_type, bool>)
        arr.push_back(static_cast<int64_t>(e));
      else
        arr.push_back(e);
    }
    t.insert_or_assign(key, std::move(arr));
  } else if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    t.insert_or_assign(key, static_cast<int64_t>(v));
  } else {
    t.insert_or_assign(key, v);
  }
}

}  // namespace detail

// A name that may become a file or directory name (stage, task, reward and teacher instance names,
// output file names): 1 to 128 of A-Z a-z 0-9 _ . -, never "." and never containing "..", so it
// cannot leave the directory it is joined to.
inline bool is_safe_name(std::string_view s) {
  if (s.empty() || s.size() > 128 || s == "." || s.find("..") != std::string_view::npos) return false;
  for (char c : s)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
      return false;
  return true;
}
inline constexpr const char* kSafeNameRule = "1 to 128 of A-Z a-z 0-9 _ . - (not '.', not containing '..')";

// An interval a numeric option must lie in: `at_least(1)`, `above(0).at_most(1)`,
// `at_least(0).below(1)`, `at_most(n, "why")`. Ends are kept as long double (exact for int64).
struct Bounds {
  std::optional<long double> lo, hi;
  bool lo_open = false, hi_open = false;
  std::string hi_why;  // said after the upper bound, e.g. "(what this machine's memory holds)"

  Bounds at_least(long double v) const { Bounds b = *this; b.lo = v, b.lo_open = false; return b; }
  Bounds above(long double v) const { Bounds b = *this; b.lo = v, b.lo_open = true; return b; }
  Bounds at_most(long double v, std::string why = "") const {
    Bounds b = *this;
    b.hi = v, b.hi_open = false, b.hi_why = std::move(why);
    return b;
  }
  Bounds below(long double v, std::string why = "") const {
    Bounds b = *this;
    b.hi = v, b.hi_open = true, b.hi_why = std::move(why);
    return b;
  }
  bool contains(long double v) const {
    if (std::isnan(v)) return false;
    if (lo && (lo_open ? !(v > *lo) : !(v >= *lo))) return false;
    if (hi && (hi_open ? !(v < *hi) : !(v <= *hi))) return false;
    return true;
  }
  // "must be > 0 and <= 1"
  std::string describe(bool integral) const {
    auto num = [&](long double v) {
      if (integral || (v == std::floor(v) && std::fabs(v) < 1e18L)) return std::to_string(static_cast<long long>(v));
      return detail::format_double(static_cast<double>(v));
    };
    std::string out = "must be";
    if (lo) out += std::string(lo_open ? " > " : " >= ") + num(*lo);
    if (lo && hi) out += " and";
    if (hi) out += std::string(hi_open ? " < " : " <= ") + num(*hi) + (hi_why.empty() ? "" : " " + hi_why);
    return out;
  }
};
inline Bounds at_least(long double v) { return Bounds{}.at_least(v); }
inline Bounds above(long double v) { return Bounds{}.above(v); }
inline Bounds at_most(long double v, std::string why = "") { return Bounds{}.at_most(v, std::move(why)); }
inline Bounds below(long double v, std::string why = "") { return Bounds{}.below(v, std::move(why)); }
inline Bounds any_value() { return Bounds{}; }

// Physical memory of this machine in bytes (what a count that sizes an allocation can at most
// fill), or $WARMUP_MEMORY_BYTES when set (tests, containers with a smaller limit).
inline uint64_t machine_memory_bytes() {
  if (const char* e = std::getenv("WARMUP_MEMORY_BYTES")) {
    char* end = nullptr;
    unsigned long long v = std::strtoull(e, &end, 10);
    if (end != e && v > 0) return v;
  }
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return uint64_t(1) << 36;  // unknown: 64 GiB
  return uint64_t(pages) * uint64_t(page);
}

// How many items of `bytes_each` fit in this machine's memory.
inline int64_t memory_capacity(long double bytes_each) {
  long double n = static_cast<long double>(machine_memory_bytes()) / std::max(1.0L, bytes_each);
  return n >= 9.2e18L ? std::numeric_limits<int64_t>::max() : static_cast<int64_t>(n);
}

// "this machine's 23.4 GiB of memory"
inline std::string memory_text() {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.1f GiB", double(machine_memory_bytes()) / double(uint64_t(1) << 30));
  return std::string("this machine's ") + buf + " of memory";
}

// Bounds for a count that sizes an allocation: at least `min`, at most what memory holds at
// `bytes_each` bytes per item, e.g. fits_in_memory(0, 4096, "puzzles of ~4 KiB") ->
// "must be >= 0 and <= 6145678 (puzzles of ~4 KiB in this machine's 23.4 GiB of memory)".
inline Bounds fits_in_memory(int64_t min, long double bytes_each, const std::string& what) {
  return at_least(min).at_most(memory_capacity(bytes_each), "(" + what + " in " + memory_text() + ")");
}

class Options {
 public:
  explicit Options(const PluginInit& init) : init_(init) {
    try {
      table_ = toml::parse(init.config_toml, "[" + init.instance + "]");
    } catch (const toml::parse_error& e) {
      throw ConfigError(init.table_origin + ": cannot parse [" + init.instance +
                        "]: " + std::string(e.description()));
    }
  }

  // The value at `key` (dotted for nested tables) or `fallback` when absent.
  template <class T>
  T get(std::string_view key, T fallback) {
    std::optional<T> v = lookup<T>(key);
    T out = v ? std::move(*v) : std::move(fallback);
    record(key, out);
    return out;
  }

  // The same, refused unless within `bounds` (the default too: it is checked like a given value).
  template <class T>
  T get(std::string_view key, T fallback, const Bounds& bounds) {
    std::optional<T> v = lookup<T>(key, true);  // non-finite values get the message with the bounds
    T out = v ? std::move(*v) : std::move(fallback);
    record(key, out);
    check(key, out, bounds);
    return out;
  }

  template <class T>
  T require(std::string_view key) {
    std::optional<T> v = lookup<T>(key);
    if (!v)
      throw ConfigError(init_.table_origin + ": [" + init_.instance + "] missing required key '" +
                        std::string(key) + "' (" + detail::expected_name<T>() + ")");
    record(key, *v);
    return *v;
  }
  template <class T>
  T require(std::string_view key, const Bounds& bounds) {
    std::optional<T> v = lookup<T>(key, true);
    if (!v) return require<T>(key);  // throws: missing
    record(key, *v);
    check(key, *v, bounds);
    return *v;
  }

  // Present-or-not; recorded only when present.
  template <class T>
  std::optional<T> optional(std::string_view key) {
    std::optional<T> v = lookup<T>(key);
    if (v) record(key, *v);
    else used_.insert(std::string(key));
    return v;
  }

  // Lets `key` hold NaN or +-inf (call before reading it). Nothing else does.
  Options& allow_nonfinite(std::string_view key) {
    nonfinite_ok_.insert(std::string(key));
    return *this;
  }

  // Throws ConfigError at the key's place unless `value` (each element of an array) is within
  // `bounds`: "[stages.s.sft] learning_rate must be > 0 and <= 1, got 5".
  template <class T>
  void check(std::string_view key, const T& value, const Bounds& bounds) const {
    if constexpr (detail::is_vector_v<T>) {
      for (const auto& e : value) check(key, e, bounds);
    } else {
      static_assert(std::is_arithmetic_v<T>, "Bounds apply to numbers");
      std::string got;
      if constexpr (std::is_floating_point_v<T>) {
        got = detail::format_double(double(value));
        if (!std::isfinite(value) && !nonfinite_ok_.count(std::string(key)))
          fail(key, "must be a finite number" + bounds.describe(false).substr(7) + ", got " + got);
      } else {
        got = std::to_string(value);
      }
      if (bounds.contains(static_cast<long double>(value))) return;
      fail(key, bounds.describe(std::is_integral_v<T>) + ", got " + got);
    }
  }

  bool has(std::string_view key) const { return static_cast<bool>(table_.at_path(key)); }

  // Throws ConfigError at the key's place, e.g. fail("count", "must be > 0").
  [[noreturn]] void fail(std::string_view key, std::string_view why) const {
    throw ConfigError(where(key) + ": [" + init_.instance + "] " + std::string(key) + " " +
                      std::string(why));
  }

  // Rejects unknown keys and reports the resolved table to the host. Call once, last.
  void finish() {
    std::vector<std::string> unknown;
    collect_unknown(table_, "", unknown);
    if (!unknown.empty()) {
      std::string msg = where(unknown.front()) + ": unknown key '" + unknown.front() + "' in [" +
                        init_.instance + "]" + detail::suggest(unknown.front(), used_);
      for (size_t i = 1; i < unknown.size(); ++i)
        msg += (i == 1 ? "; also unknown: " : ", ") + unknown[i] + " (" + where(unknown[i]) + ")";
      throw ConfigError(msg);
    }
    if (init_.host) init_.host->set_resolved_config(init_.instance, resolved_toml());
  }

  std::string resolved_toml() const {
    std::ostringstream os;
    os << toml::toml_formatter(resolved_, toml::format_flags::none);
    return os.str();
  }
  const std::string& instance() const { return init_.instance; }
  uint64_t seed() const { return init_.seed; }

 private:
  std::string where(std::string_view key) const {
    auto it = init_.config_origins.find(std::string(key));
    return it != init_.config_origins.end() ? it->second : init_.table_origin;
  }

  template <class T>
  std::optional<T> lookup(std::string_view key, bool allow_nonfinite = false) const {
    toml::node_view<const toml::node> nv = table_.at_path(key);
    if (!nv) return std::nullopt;
    std::string error;
    std::optional<T> v = detail::convert<T>(*nv.node(), error, allow_nonfinite || nonfinite_ok_.count(std::string(key)) > 0);
    if (!v) throw ConfigError(where(key) + ": [" + init_.instance + "] " + std::string(key) + ": " + error);
    return v;
  }

  template <class T>
  void record(std::string_view key, const T& v) {
    used_.insert(std::string(key));
    toml::table* t = &resolved_;
    std::string k(key);
    for (size_t dot; (dot = k.find('.')) != std::string::npos; k = k.substr(dot + 1)) {
      std::string head = k.substr(0, dot);
      if (!t->contains(head)) t->insert(head, toml::table{});
      t = (*t)[head].as_table();
    }
    detail::insert_value(*t, k, v);
  }

  void collect_unknown(const toml::table& t, const std::string& prefix,
                       std::vector<std::string>& out) const {
    for (const auto& [k, node] : t) {
      std::string path = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
      if (used_.count(path)) continue;
      if (const toml::table* sub = node.as_table()) collect_unknown(*sub, path, out);
      else out.push_back(path);
    }
  }

  const PluginInit& init_;
  toml::table table_;
  toml::table resolved_;
  std::set<std::string> used_;
  std::set<std::string> nonfinite_ok_;
};

}  // namespace warmup
