// Runs an experiment: config -> plugins -> store -> stages, with signal handling and a summary.
// Also resumes a failed or interrupted run from its stored config (finished stages are skipped).
#pragma once

#include <filesystem>
#include <optional>
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
};

// Returns the process exit code: 0 finished, 1 failed, 130/143 interrupted.
int run_experiment(const RunOptions& options);

}  // namespace warmup
