// TOML trees with provenance: loading with `base = "..."` deep-merge, `--set path=value`
// overrides, and "file:line:col" origins for every node (toml++ keeps a node's source only when
// it is moved, so merging moves nodes and never copies them).
//
// Not here: the meaning of keys (experiment.cpp does that).
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

#include "warmup/host.h"
#include "warmup/types.h"

namespace warmup {

// Parses `file` and, recursively, the files named by its `base` key (a string or an array of
// strings, relative to the file), merged base-first. Throws ConfigError.
toml::table load_toml_with_bases(const std::filesystem::path& file);

// Merges `src` into `dst`: tables recursively; arrays of tables whose elements all have a string
// `name` are merged element-by-name (new names appended); everything else is replaced.
void deep_merge(toml::table& dst, toml::table&& src);

// Applies "a.b.c=value". `value` is parsed as a TOML literal; unparsable text is taken as a string
// where a string is expected. Arrays of tables are addressed by index or by element name
// ("stages.1.x", "stages[1].x", "stages.sft.x"). Type must match an existing value (integer is
// accepted for float). Throws ConfigError citing the --set.
void apply_override(toml::table& root, std::string_view assignment);

// "file:line:col" of a node, or "--set a.b=v" for overridden values.
std::string origin(const toml::node& node);
// Dotted key path (relative to `t`) -> origin, for every node below `t`.
std::map<std::string, std::string> origins(const toml::table& t);

std::string to_toml(const toml::table& t);
std::string type_name(const toml::node& n);

// Raises ConfigError for the first key of `t` not in `allowed`, with a did-you-mean hint.
void check_keys(const toml::table& t, const std::vector<std::string>& allowed,
                std::string_view context);

// PluginInit for a plugin sub-table.
PluginInit make_plugin_init(std::string kind, std::string plugin, std::string instance,
                            const toml::table& options, std::string table_origin, uint64_t seed,
                            std::string base_dir = "");

// Flattens a tree to dotted keys (arrays of named tables by name) with JSON-encoded arrays.
struct FlatValue {
  std::string key;
  std::string type;  // "integer" | "float" | "boolean" | "string" | "array" | "date"
  std::string text;  // value as text (JSON for arrays)
  double number = 0;   // for float/boolean
  int64_t integer = 0; // for integer (exact: a double holds integers only up to 2^53)
};
std::vector<FlatValue> flatten(const toml::table& t);

}  // namespace warmup
