// `warmup runs export RUN --format mlflow|jsonl`: a run in formats other trackers read.
//
// mlflow  MLflow's file store layout (mlflow/store/tracking/file_store.py) under DIR, the
//         `mlruns` folder: DIR/<experiment id>/meta.yaml (id: the first 60 bits of the sha256 of
//         the experiment's name, so runs of one experiment share it), DIR/<experiment id>/<run id>/
//         {meta.yaml, params/KEY, tags/KEY, metrics/STAGE/KEY ("<ms> <value> <step>" lines, as
//         MLflow writes them; nan/inf kept), artifacts/{config.toml, samples.jsonl}}. The run id is
//         the run's uuid without dashes. MLflow allows [/\w.\- :] in names: '=' becomes ':' (so
//         eval/kk/n_people=3/accuracy is eval/kk/n_people:3/accuracy) and any other character '_';
//         empty segments are dropped and "." or ".." segments become "_" / "__" (names are paths);
//         keys that would share a file, or be a file and a folder (m/x, m/x/y), get "_2", "_3"...
//         (m/x_2/y). The run's folder is its uuid as hex, never another path the store holds.
//         Param values longer than MLflow's 6000 characters are cut (config.toml has them whole).
//         Read with MLFLOW_ALLOW_FILE_STORE=true `mlflow ui --backend-store-uri DIR`, or move into
//         a database with `mlflow migrate-filestore`. An earlier export of the same run is replaced.
// jsonl   one JSON object per line, "type" first: run (the runs row; tags, overrides as arrays),
//         stage, param {key, value, value_type}, metric {stage, key, step, value, flag, wall_time}, sample
//         {stage, step, task, example_id, prompt, completion, completion_tokens, finish_reason,
//         reward, rewards {}, correct, advantage}, artifact, dataset, plugin; `what` selects
//         (metrics | samples | params | all; the run line is always first).
#pragma once

#include <cstdint>
#include <filesystem>
#include <ostream>
#include <string>

namespace warmup {

class Store;

// Writes the run under `root` (created if needed); returns the run's folder. Throws UsageError
// when `root` cannot be written.
std::filesystem::path export_mlflow(Store& store, int64_t run, const std::filesystem::path& root);

void export_jsonl(Store& store, int64_t run, const std::string& what, std::ostream& os);

// An MLflow metric or param name for `key` (the substitutions above).
std::string mlflow_name(const std::string& key);

}  // namespace warmup
