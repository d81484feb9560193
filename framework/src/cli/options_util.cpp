// See options_util.h.
#include "cli/options_util.h"

#include <cstdlib>
#include <sstream>

#include <toml++/toml.h>

#include "util/errors.h"

namespace warmup::cli {
namespace {

// Tables recursively, everything else replaced.
void merge_into(toml::table& dst, const toml::table& src) {
  for (const auto& [k, v] : src) {
    if (const toml::table* sub = v.as_table(); sub && dst.contains(k) && dst[k].is_table())
      merge_into(*dst[k].as_table(), *sub);
    else
      dst.insert_or_assign(k, v);
  }
}

}  // namespace

std::string default_data_dir() {
  const char* d = std::getenv("WARMUP_DATA");
  return d ? d : "";
}

void apply_option(toml::table& t, const std::string& assignment, const std::string& flag) {
  size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw UsageError(flag + " " + assignment + ": expected key=value");
  std::string key = assignment.substr(0, eq), value = assignment.substr(eq + 1);
  toml::table parsed;
  try {
    parsed = toml::parse(key + " = " + value);
  } catch (const toml::parse_error&) {
    std::ostringstream quoted;
    quoted << toml::value<std::string>(value);  // not a TOML literal: the text as a string
    try {
      parsed = toml::parse(key + " = " + quoted.str());
    } catch (const toml::parse_error& e) {
      throw UsageError(flag + " " + assignment + ": " + std::string(e.description()));
    }
  }
  merge_into(t, parsed);
}

}  // namespace warmup::cli
