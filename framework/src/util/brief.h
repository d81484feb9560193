// One-line, bounded renderings of untrusted values (names and JSON from model files) for error
// messages: control characters escaped, long text cut with "...", so an error stays one line.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>
#include <type_traits>

#include <nlohmann/json.hpp>

namespace warmup {

inline std::string brief(std::string_view s, size_t max = 80) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (out.size() >= max) return out + "...";
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02X", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  return out;
}

// (A template so that strings, which convert to json, pick the overload above.)
template <typename J, std::enable_if_t<std::is_same_v<J, nlohmann::json>, int> = 0>
std::string brief(const J& v, size_t max = 60) {
  return brief(std::string_view(v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)), max);
}

}  // namespace warmup
