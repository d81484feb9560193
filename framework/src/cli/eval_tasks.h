// The paper's evaluation tasks by short name, for `warmup eval` and `warmup score`: which task
// plugin with which options (split, prompt, data files under a --data directory laid out like
// shared/data), which reward scores it, and which metadata keys break its accuracy down.
//   math500            task math, MATH-500 (math/math500_test.jsonl), eval prompt; math_accuracy
//                      (Math-Verify on the whole output); by subject and level
//   humaneval_plus     the 114 held-out HumanEval+ problems (humaneval/), eval prompt;
//                      humaneval_paper, last code block, no format gate; pass = correct
//   mmlu_pro[:CAT]     held-out MMLU-Pro items (mmlu_pro/test.jsonl) of one category (or all),
//                      eval prompt; mmlu_pro_accuracy (letter chain, seeded guess); by category
//   kk                 Knights & Knaves test split (kk/<n>ppl_test.jsonl), paper prompt;
//                      kk_paper; by n_people
// Does not run anything; the caller turns these into an experiment or plugin instances.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <toml++/toml.h>

namespace warmup::cli {

struct PaperTask {
  std::string spec;          // as the user wrote it, e.g. "mmlu_pro:physics" (table column)
  std::string instance;      // task instance name in the experiment, e.g. "mmlu_pro_physics"
  std::string plugin;        // task plugin
  toml::table options;       // task options (data paths absolute)
  std::string split = "test";
  std::string reward;        // reward plugin = reward instance name
  toml::table reward_options;
  std::vector<std::string> group_by;  // metadata keys for per-group metrics
};

// "math500, humaneval_plus, mmlu_pro[:CATEGORY], kk".
std::string known_paper_tasks();
// True when `name` (before any ':') is one of the names above or an alias (math, knights_knaves).
bool is_paper_task(const std::string& spec);

// The task for `spec`. `data` is the --data directory; when empty and `need_data`, a UsageError
// says so; when empty and not `need_data`, the data options are left out. A data file that does
// not exist is a UsageError naming it. Unknown names: UsageError listing the known ones.
// `python` is the interpreter for HumanEval+ ("" = the reward's default).
PaperTask paper_task(const std::string& spec, const std::filesystem::path& data, bool need_data,
                     const std::string& python = "");

// "$WARMUP_DATA" or "" (the default of --data).
std::string default_data_dir();

// Applies "key=value" (value a TOML literal, else taken as a string) to `t`; nested keys dotted.
void apply_option(toml::table& t, const std::string& assignment, const std::string& flag);

}  // namespace warmup::cli
