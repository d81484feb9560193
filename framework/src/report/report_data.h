// The data behind `warmup report` (the HTML file and the live `--serve` pages): one JSON object
// read from the run store for the runs given. Its schema, which report.js reads:
//
//   format            1
//   generated_at      unix seconds;  warmup_version, store (path)
//   live, refresh_s, api        set by the server (report/serve.cpp): the page polls `api` every
//                               refresh_s seconds; false/0/"" in a file
//   charts_library, charts_note set by report_html.cpp (whether Chart.js was inlined)
//   runs[]            the runs' rows (id, experiment, name, status, started_at, ended_at, error,
//                     git_commit, warmup_version, host, pid, device, torch_version, seed, tags[],
//                     config_file, overrides[], run_dir, resumes, config = resolved TOML) plus
//                     params {flat key: value}, stages[] {idx, name, algorithm, status, started_at,
//                     ended_at, error}, plugins[] {kind, name, plugin_version, library_path,
//                     library_sha256}
//   series[]          one per (run, stage, metric key), by run, stage idx, key:
//                     {run, stage, key, step[], value[] (null where flag; 7 significant digits,
//                      a float32's precision), wall_time[] (unix s, to 10 ms), flag {index:
//                      "nan"|"inf"|"-inf"}}; the table below reads the values unrounded
//   table             the paper-style table (see eval_table below): {tasks[], rows[], breakdowns[]}
//   table cells       {mean, std, count, key, flag?, n_samples? (the stage's eval.num_samples;
//                     std is null when it is 1)}
//   samples_total     only when samples is null: the count in the store (the page refetches
//                     with samples when it changes)
//   samples           null when ReportOptions::samples is false, else {total, included, note,
//                     max_chars, prompts[] (deduplicated), rows[] {id, run, stage, step, task,
//                     example_id, prompt (index), completion (cut at max_chars), chars (full
//                     length), completion_tokens, finish_reason, reward, rewards {}, correct,
//                     advantage}}. A GRPO group is the rows sharing (run, stage, step, example_id).
//
// Not here: HTML (report_html.h), HTTP (serve.h), exports for other trackers (export.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace warmup {

class Store;

struct ReportOptions {
  bool samples = true;        // false: "samples": null (the live polls)
  int64_t max_samples = 2000; // at most this many completions, chosen as select_samples says
  int64_t max_chars = 4000;   // completions and prompts longer than this are cut (characters)
};

// The report object for `runs` (ids that exist in `store`). Throws StoreError on a store error.
nlohmann::json report_data(Store& store, const std::vector<int64_t>& runs, const ReportOptions& opt);

// The paper-style accuracy table from the last value of each eval metric of each (run, stage):
// columns are the tasks with an `eval/<task>/accuracy` key; a cell is accuracy_mean ± accuracy_std
// where the stage recorded them (the mean and sample std over the n samples of the paper's
// protocol, plugins/algorithm/evaluate/eval_metrics.h), else accuracy with std null; count is
// eval/<task>/count. Breakdowns: the same per `eval/<task>/<group>=<value>/` keys (n_people,
// MMLU-Pro category, MATH level), values in numeric order where all are numbers.
// `metrics`: rows {run, stage, key, step, value, flag} of the last step per (run, stage, key);
// `stages`: {run, stage} in display order; `several_runs` prefixes labels with "run N ".
nlohmann::json eval_table(const nlohmann::json& metrics, const nlohmann::json& stages, bool several_runs);

// A TEXT column that holds JSON (tags, overrides, rewards) parsed; the value as it is when it is
// not a string or does not parse.
nlohmann::json json_or_text(const nlohmann::json& v);

// Which samples a report shows when there are more than `max`: per (run, stage) a share
// proportional to its count, taken from steps spread evenly over the stage (first and last
// included; a stage with one step, like an evaluation, from its first rows) as whole groups
// (the samples of one example at one step: a GRPO group, an example's n evaluation samples), never
// cut; at least one group per stage, so a stage's share may be exceeded by one group.
// `index`: {id, run, stage, step, example_id} of every sample, in id order. Returns the chosen
// ids, ascending.
struct SampleKey {
  int64_t id = 0, run = 0;
  std::string stage;
  int64_t step = 0;
  std::string example_id;
};
std::vector<int64_t> select_samples(const std::vector<SampleKey>& index, int64_t max);

}  // namespace warmup
