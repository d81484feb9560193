// Options: a plugin's typed view of its own TOML sub-table.
//
// Reads keys with defaults (`get`), required keys (`require`), records every value it hands out
// (defaults included) so the host stores the fully resolved config, and `finish()` rejects any key
// the plugin never asked for, citing file:line:col. Errors are ConfigError. Does not validate
// ranges: use `fail(key, why)` for that.
#pragma once

#include <algorithm>
#include <cstdint>
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
template <class T>
std::optional<T> convert(const toml::node& n, std::string& error) {
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
    if (auto v = n.value_exact<double>()) return static_cast<T>(*v);
    if (auto v = n.value_exact<int64_t>()) return static_cast<T>(*v);
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (auto v = n.value_exact<std::string>()) return *v;
  } else if constexpr (is_vector_v<T>) {
    if (const toml::array* arr = n.as_array()) {
      T out;
      for (size_t i = 0; i < arr->size(); ++i) {
        auto e = convert<typename T::value_type>(*arr->get(i), error);
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

  template <class T>
  T require(std::string_view key) {
    std::optional<T> v = lookup<T>(key);
    if (!v)
      throw ConfigError(init_.table_origin + ": [" + init_.instance + "] missing required key '" +
                        std::string(key) + "' (" + detail::expected_name<T>() + ")");
    record(key, *v);
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
  std::optional<T> lookup(std::string_view key) const {
    toml::node_view<const toml::node> nv = table_.at_path(key);
    if (!nv) return std::nullopt;
    std::string error;
    std::optional<T> v = detail::convert<T>(*nv.node(), error);
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
};

}  // namespace warmup
