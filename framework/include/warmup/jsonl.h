// Typed fields of JSON records read from data files (JSONL rows, caches). A field that is missing
// or of the wrong type is a DataError naming the place and the field:
//   data.jsonl:7: field 'prompt': expected string, found number
// instead of nlohmann's bare "[json.exception.type_error.302] type must be string, but is number".
#pragma once

#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "types.h"

namespace warmup {
namespace detail {

template <class T>
std::string json_type_name() {
  if constexpr (std::is_same_v<T, bool>) return "boolean";
  else if constexpr (std::is_integral_v<T>) return "integer";
  else if constexpr (std::is_floating_point_v<T>) return "number";
  else if constexpr (std::is_same_v<T, std::string>) return "string";
  else if constexpr (std::is_same_v<T, nlohmann::json>) return "JSON value";
  else return "array of " + json_type_name<typename T::value_type>();
}

// The exception text without nlohmann's "[json.exception.type_error.302] " prefix.
inline std::string json_reason(const std::exception& e) {
  std::string w = e.what();
  if (w.rfind("[json.exception.", 0) == 0)
    if (size_t p = w.find("] "); p != std::string::npos) return w.substr(p + 2);
  return w;
}

}  // namespace detail

// `where` is the record's place ("file.jsonl:7"); `j` must be an object.
template <class T>
T json_field(const nlohmann::json& j, std::string_view key, const std::string& where) {
  if (!j.is_object())
    throw DataError(where + ": expected a JSON object, found " + std::string(j.type_name()));
  auto it = j.find(std::string(key));
  if (it == j.end())
    throw DataError(where + ": missing field '" + std::string(key) + "' (" + detail::json_type_name<T>() + ")");
  try {
    if constexpr (std::is_same_v<T, double> || std::is_same_v<T, float>) {
      if (!it->is_number()) throw DataError("");
    } else if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      if (!it->is_number_integer()) throw DataError("");
    }
    return it->template get<T>();
  } catch (const std::exception& e) {
    std::string why = dynamic_cast<const DataError*>(&e) ? "" : " (" + detail::json_reason(e) + ")";
    throw DataError(where + ": field '" + std::string(key) + "': expected " + detail::json_type_name<T>() +
                    ", found " + std::string(it->type_name()) + why);
  }
}

// The field, or `fallback` when it is absent or null.
template <class T>
T json_field_or(const nlohmann::json& j, std::string_view key, T fallback, const std::string& where) {
  if (j.is_object()) {
    auto it = j.find(std::string(key));
    if (it == j.end() || it->is_null()) return fallback;
  }
  return json_field<T>(j, key, where);
}

}  // namespace warmup
