// An experiment file, validated: [experiment], [model], [plugins], [tasks.*], [rewards.*],
// [teachers.*] and [[stages]]. Plugin sub-tables are kept as TOML (their plugins validate them).
//
// Precedence: struct defaults < experiment TOML (after `base` merges) < --set overrides.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <toml++/toml.h>

#include "warmup/algorithm.h"

namespace warmup {

// One configured plugin instance: [tasks.<instance>], [rewards.<instance>], [teachers.<instance>].
struct PluginSpec {
  std::string kind;      // "task" | "reward" | "teacher"
  std::string instance;  // key under its section; what stages refer to
  std::string plugin;    // registry name: `plugin = "..."`, default = instance
  std::string path;      // "tasks.<instance>"
  toml::table options;   // the table minus host keys, handed to the plugin
  std::string origin;    // where it is declared (or first referenced, if implicit)
};

struct StageSpec {
  std::string name;         // unique within the experiment
  std::string algorithm;    // registry name of the algorithm plugin
  std::string origin;       // where the stage is declared
  toml::table options;      // [stages.<algorithm>]: the algorithm's own table
  std::string options_origin;
  std::vector<std::string> tasks;     // task instances
  std::vector<std::pair<std::string, double>> rewards;  // reward instance -> weight
  std::vector<std::string> teachers;  // teacher instances
  EvalSettings eval;
  std::string description;
  // Which model the stage starts from: "" = what the previous stage handed on (or [model]),
  // "experiment" = the experiment's [model] itself, else the name of an earlier stage (its output).
  // Lets one experiment hold several arms (e.g. base and warmed-up models trained side by side).
  std::string model_from;
};

// [model] init = { config = "...", seed = N, dtype = "...", tokenizer = "..." }: a from-scratch
// model created in the run directory at the start of the run (then used as [model] path).
struct ModelInit {
  std::string config;     // config.json of the architecture (absolute after loading)
  int64_t seed = 0;
  std::string tokenizer;  // directory with tokenizer files; "" = the byte-level tokenizer
};

struct ExperimentConfig {
  std::filesystem::path file;  // the experiment file as given (or the source name of a text)
  std::filesystem::path base_dir;  // relative paths (model, [plugins] paths, plugin options) resolve here
  toml::table tree;            // merged tree after overrides
  std::string name;            // [experiment] name (required)
  std::string description;
  uint64_t seed = 0;              // [experiment] seed, default 0
  std::vector<std::string> tags;  // [experiment] tags
  ModelSpec model;
  std::optional<ModelInit> model_init;
  std::vector<std::filesystem::path> plugin_paths;  // [plugins] paths, made absolute
  std::map<std::string, PluginSpec> tasks, rewards, teachers;
  std::vector<StageSpec> stages;
};

// Loads, merges, overrides and validates. Throws ConfigError with file:line:col.
ExperimentConfig load_experiment(const std::filesystem::path& file,
                                 const std::vector<std::string>& overrides);

// An experiment given as TOML text (no file: `warmup eval` builds one in memory). Errors name
// `source_name`:line:col; relative paths resolve against `base_dir`; `base = ...` is refused.
ExperimentConfig parse_experiment(const std::string& text, const std::string& source_name,
                                  const std::filesystem::path& base_dir,
                                  const std::vector<std::string>& overrides);

// The validation behind both: `tree` after `base` merges, `file` for messages.
ExperimentConfig experiment_from_tree(toml::table tree, const std::filesystem::path& file,
                                      const std::filesystem::path& base_dir,
                                      const std::vector<std::string>& overrides);

}  // namespace warmup
