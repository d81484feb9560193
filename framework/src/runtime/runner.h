// Runs an experiment: config -> plugins -> store -> stages, with signal handling and a summary.
// Also resumes a failed or interrupted run from its stored config (finished stages are skipped).
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace warmup {

struct RunOptions {
  std::filesystem::path experiment;       // TOML file (ignored when resuming)
  std::vector<std::string> overrides;     // --set a.b=value
  bool dry_run = false;                   // print the resolved config, run nothing
  std::filesystem::path store;            // SQLite file
  std::vector<std::filesystem::path> plugin_dirs;  // --plugin-dir
  std::optional<int64_t> resume;          // --resume RUN
  std::string name;                       // --name: run name (default: experiment name)
  double grace_seconds = 30;              // after a signal, how long a stage may take to stop
  // Join the ranks torchrun's environment describes (`warmup run` only; DistEnv::from_environment).
  bool distributed = false;
  // Called once a new run's folder exists, before its first stage (whatever happens after).
  std::function<void(int64_t run_id, const std::filesystem::path& run_dir)> on_run_folder;
};

struct ExperimentConfig;

// What a run ended with. Bad input (ConfigError, DataError, UsageError) and failed stages are
// thrown, after the run (if one was created) is marked failed in the store.
struct RunResult {
  int exit_code = 0;         // process exit code: 0 finished (or dry run), 130/143 interrupted
  std::string status;        // "finished" | "interrupted" | "dry_run"
  int64_t run_id = 0;        // 0 for a dry run
  std::filesystem::path run_dir;
  std::string resolved_toml;  // the resolved config, as stored with the run (and shown by --dry-run)
  // A dry run's validation problems (exit_code 2 when any); a real run throws ConfigError instead.
  std::vector<std::string> problems;
  std::vector<std::pair<std::string, std::map<std::string, double>>> final_metrics;  // stage -> last metrics
  bool follower = false;      // a rank other than 0 of a multi-process run: rank 0 reports the run
};

// "N problems found before the run started (nothing ran):" and one indented line per problem.
std::string problems_text(const std::vector<std::string>& problems);

// Runs options.experiment (a TOML file, with options.overrides), or resumes options.resume.
RunResult run_experiment(const RunOptions& options);
// Runs an experiment already loaded (parse_experiment: e.g. built in memory by `warmup eval`);
// options.experiment, options.overrides and options.resume are not used, except that
// options.experiment, when set, is what the store records as the run's config file.
RunResult run_experiment(ExperimentConfig config, const RunOptions& options);

// The stage/metric/value table and the "run N finished" line `warmup run` prints.
void print_run_summary(const RunResult& result, const std::filesystem::path& store, std::ostream& out);

}  // namespace warmup
