// The SQLite run store: every run, its resolved config and params, stages, per-step metrics,
// sampled completions, artifacts, datasets and plugins. WAL, foreign keys, STRICT tables,
// migrations through user_version. Safe for several processes writing at once (each write is a
// BEGIN IMMEDIATE transaction with a busy timeout).
//
// All SQL of the host is here: writes in store.cpp, reads in queries.cpp (the CLI and the runner
// get rows and values, never the connection). Not here: formatting for the CLI
// (cli/cmd_runs.cpp) and buffering (runtime/stage_context.cpp).
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/toml_tree.h"  // FlatValue
#include "store/sqlite.h"
#include "warmup/types.h"

namespace warmup {

struct RunStart {
  std::string experiment;
  std::string name;
  std::string config_toml;   // fully resolved config
  std::string config_hash;   // sha256 of config_toml
  std::string config_file;
  std::string overrides_json = "[]";
  std::string git_commit;
  std::string warmup_version;
  std::string device;
  std::string torch_version;
  uint64_t seed = 0;
  std::string tags_json = "[]";
};

struct MetricRow {
  std::string stage;
  std::string key;
  int64_t step = 0;
  double value = 0;
  double wall_time = 0;
};

struct PluginUse {
  std::string kind, name, plugin_version, interface, library_path, library_sha256;
};

class Store {
 public:
  static constexpr const char* kDefaultPath = "results/warmup.sqlite";

  // Opens or creates the store (parent directories too) and applies pending migrations.
  explicit Store(const std::filesystem::path& path);
  // Opens an existing store for reading only (`warmup runs`): works on read-only files, folders
  // and media; never migrates (an older schema is refused, naming the fix). Throws StoreError.
  struct ReadOnly {};
  Store(const std::filesystem::path& path, ReadOnly);
  int schema_version();
  const std::filesystem::path& path() const { return path_; }

  int64_t create_run(const RunStart& start);  // status 'running', this host and pid, a new uuid
  std::string run_uuid(int64_t run);          // "" for runs made before schema version 3
  void set_run_dir(int64_t run, const std::string& dir);
  // Claims a failed or interrupted run for this process, atomically (one UPDATE ... WHERE status
  // IN ('failed', 'interrupted')): of two resumes started together exactly one gets true.
  bool resume_run(int64_t run);
  // Deletes a run that is not running, with everything recorded for it (stages, params, metrics,
  // samples, artifacts, datasets, plugins: ON DELETE CASCADE); false when it does not exist or is
  // running (checked in the same statement). Its run folder is the caller's to remove.
  bool delete_run(int64_t run);
  void end_run(int64_t run, const std::string& status, const std::string& error);
  // Write-once: an existing key with the same value is accepted, a different value throws.
  void write_params(int64_t run, const std::vector<FlatValue>& params);
  // `warmup run --resume RUN --set ...` with keys that do not change what the run computes: the
  // run's stored config and hash become the new ones, `overrides` are appended to its overrides
  // and the `changed` params are rewritten, in one transaction.
  // `before_commit` runs inside the transaction (the caller's file writes): if it throws, nothing
  // is changed in the store.
  void amend_run_config(int64_t run, const std::string& config_toml, const std::string& config_hash,
                        const std::vector<std::string>& overrides, const std::vector<FlatValue>& changed,
                        const std::function<void()>& before_commit = {});

  int64_t begin_stage(int64_t run, int idx, const std::string& name, const std::string& algorithm);
  // `output_model`: the model directory a finished stage hands to later stages ("" = none).
  void end_stage(int64_t stage_id, const std::string& status, const std::string& error,
                 const std::string& output_model = "");

  void write_metrics(int64_t run, const std::vector<MetricRow>& rows);
  void write_samples(int64_t run, const std::string& stage, const std::vector<SampleRecord>& rows);
  // Deletes the stage's metrics and samples with step > `step` (a resumed stage re-runs them).
  void discard_after(int64_t run, const std::string& stage, int64_t step);
  void add_artifact(int64_t run, const std::string& stage, const std::string& name,
                    const std::string& path, int64_t bytes, const std::string& sha256);
  void add_dataset(int64_t run, const std::string& stage, const std::string& task,
                   const std::string& split, int64_t count, const std::string& digest);
  void add_plugins(int64_t run, const std::vector<PluginUse>& plugins);

  // Marks runs left 'running' by a process of this host that no longer exists as 'failed'.
  // Returns how many were marked.
  int reap_dead_runs();

  // ---- reads (store/queries.cpp): every query the CLI and the runner make --------------------
  // "latest"/"last" or a run id that exists -> the id; throws UsageError naming the store
  // (`what` prefixes the message, e.g. "--run 7").
  int64_t resolve_run(const std::string& spec, const std::string& what = "");
  std::optional<int64_t> latest_run();
  struct RunRecord {
    std::string status, config_hash, host;
    std::optional<std::string> run_dir;
    int64_t pid = 0;
    uint64_t seed = 0;
  };
  std::optional<RunRecord> run_record(int64_t run);
  // Stage name -> output model ("" for none) of the run's finished stages.
  std::map<std::string, std::string> finished_stages(int64_t run);
  // Metric key -> value of one stage's non-null metrics whose key matches `glob` (any step).
  std::map<std::string, double> metric_values(int64_t run, const std::string& stage, const std::string& glob);
  std::vector<std::string> metric_keys(int64_t run, const std::string& glob);  // distinct, sorted
  // Rows as JSON objects, column names as keys (`warmup runs show|compare|export`).
  nlohmann::json run_row(int64_t run);  // runs.* plus "experiment"
  nlohmann::json stage_rows(int64_t run);
  nlohmann::json param_rows(int64_t run);    // key, value, type
  nlohmann::json metric_rows(int64_t run);   // stage, key, step, value, flag, wall_time
  nlohmann::json latest_metric_rows(int64_t run);  // the last step of each (stage, key)
  nlohmann::json artifact_rows(int64_t run);
  nlohmann::json dataset_rows(int64_t run);
  nlohmann::json plugin_rows(int64_t run);
  nlohmann::json sample_rows(int64_t run);
  // ---- reads for reports (report/report_data.cpp)
  struct MetricPoint {
    std::string stage, key;
    int64_t step = 0;
    std::optional<double> value;  // nullopt when flag is "nan", "inf" or "-inf"
    std::string flag;             // "" for a finite value
    double wall_time = 0;         // unix seconds
  };
  // Every metric of the run, by stage (in stage order), key, step.
  std::vector<MetricPoint> metric_points(int64_t run);
  struct SampleRef {
    int64_t id = 0;
    std::string stage;
    int64_t step = 0;
    std::string example_id;
  };
  std::vector<SampleRef> sample_refs(int64_t run);  // every sample, in id order (no text)
  int64_t sample_count(int64_t run);
  // The samples with these ids (any run), in id order: {id, run, stage, step, task, example_id,
  // prompt, prompt_chars, completion, chars, completion_tokens, finish_reason, reward, rewards (JSON
  // text), correct, advantage}; prompt and completion cut at `max_chars` characters, *_chars their
  // full length.
  nlohmann::json sample_rows_by_id(const std::vector<int64_t>& ids, int64_t max_chars);

  // `warmup runs list`: newest first; empty filters match all.
  struct RunListRow {
    int64_t id = 0, seed = 0, finished_stages = 0, samples = 0;
    std::string experiment, name, status, tags;
    double started_at = 0;
    std::optional<double> ended_at;
  };
  std::vector<RunListRow> list_runs(const std::string& status, const std::string& experiment, int64_t limit);

 private:
  nlohmann::json rows(const char* sql, int64_t run);
  void migrate();
  std::filesystem::path path_;
  Db db_;
};

}  // namespace warmup
