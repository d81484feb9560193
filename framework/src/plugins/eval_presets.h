// Evaluation presets: a domain's own description of how it is evaluated (which task plugin with
// which options, which split, which reward scores it, which metadata keys break accuracy down),
// read from `<domain>.eval.toml` files that sit next to plugin libraries in the plugin search
// path. `warmup eval --tasks NAME,...` and `warmup score --task NAME` find presets by name here,
// so the host knows no domain: a new domain installs its library and its preset, no rebuild.
//
// File format (one file may hold several presets; see plugins/<domain>/eval.toml):
//   [NAME]                      preset name, what --tasks/--task take (a safe name)
//   description = "..."         one line for `warmup plugins`
//   aliases = ["..."]           other names that resolve to this preset
//   task = "PLUGIN"             task plugin (registry name); required
//   split = "test"              split evaluated (default "test")
//   reward = "PLUGIN"           reward plugin that judges correctness; required
//   group_by = ["key", ...]     example metadata keys for per-group metrics
//   argument = { option = "KEY", list = true, name = "CATEGORY" }
//                               NAME:VALUE sets task option KEY to VALUE ([VALUE] when list)
//   python_option = "KEY"       reward option set by --python (a reward that runs code)
//   [NAME.options]              task options
//   [NAME.data]                 task options that are paths relative to --data (files or folders)
//   [NAME.reward_options]       reward options
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <toml++/toml.h>

namespace warmup {

struct EvalPreset {
  std::string name;
  std::vector<std::string> aliases;
  std::string description;
  std::filesystem::path file;  // the .eval.toml it came from
  std::string origin;          // file:line:col of its table
  std::string task;            // task plugin
  std::string split = "test";
  std::string reward;          // reward plugin
  std::vector<std::string> group_by;
  std::string argument_option;  // "" = takes no NAME:VALUE
  bool argument_list = false;
  std::string argument_name;    // for help text, e.g. "CATEGORY"
  std::string python_option;
  toml::table options, data, reward_options;
};

// One task of an evaluation, instantiated from a preset: ready to become [tasks.<instance>] and
// [rewards.<reward>] of an experiment, or plugin instances for `warmup score`.
struct EvalTask {
  std::string spec;      // as the user wrote it, e.g. "mmlu_pro:physics" (table column)
  std::string instance;  // task instance name, e.g. "mmlu_pro_physics"
  std::string plugin;    // task plugin
  toml::table options;   // task options (data paths absolute)
  std::string split = "test";
  std::string reward;    // reward plugin = reward instance name
  toml::table reward_options;
  std::vector<std::string> group_by;
  std::string preset_file;  // where the preset was read ("" when none was used)
};

class EvalPresets {
 public:
  // Reads every `*.eval.toml` in each directory (non-recursive, sorted by name); a preset name
  // (or alias) found in an earlier directory wins. A malformed file, or the same name twice in
  // one directory, is a ConfigError naming file:line:col.
  void scan(const std::vector<std::filesystem::path>& dirs);

  // By name or alias (the part before ':'); nullptr when unknown.
  const EvalPreset* find(const std::string& name) const;
  // "kk, math500, mmlu_pro[:CATEGORY], ..." (sorted), or "none found" when empty.
  std::string known() const;
  const std::vector<EvalPreset>& all() const { return presets_; }
  const std::vector<std::filesystem::path>& searched() const { return searched_; }

  // The task for `spec` ("NAME" or "NAME:VALUE"). `data` is the --data directory: when empty and
  // `need_data`, a UsageError says so; when empty and not `need_data`, the data options are left
  // out. A data path that does not exist is a UsageError naming it. Unknown names: UsageError
  // listing the known ones. `python`, when not empty, sets the preset's python_option.
  EvalTask instantiate(const std::string& spec, const std::filesystem::path& data, bool need_data,
                       const std::string& python = "") const;

 private:
  std::vector<EvalPreset> presets_;
  std::map<std::string, size_t> by_name_;  // names and aliases
  std::vector<std::filesystem::path> searched_;
};

}  // namespace warmup
