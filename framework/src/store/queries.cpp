// Store's read queries (see store.h): the CLI and the runner get rows and values from here.
#include <string>

#include "store/store.h"
#include "util/errors.h"

namespace warmup {

using nlohmann::json;

namespace {

json column(const Stmt& q, int c) {
  switch (q.column_type(c)) {
    case SQLITE_INTEGER: return q.int64(c);
    case SQLITE_FLOAT: return q.real(c);
    case SQLITE_NULL: return nullptr;
    default: return q.text(c);
  }
}

// The current row as an object, column names as keys.
json row_object(const Stmt& q) {
  json r = json::object();
  for (int c = 0; c < sqlite3_column_count(q.handle()); ++c) r[sqlite3_column_name(q.handle(), c)] = column(q, c);
  return r;
}

}  // namespace

json Store::rows(const char* sql, int64_t run) {
  Stmt q(db_, sql);
  q.bind(1, run);
  json out = json::array();
  while (q.step()) {
    out.push_back(row_object(q));
  }
  return out;
}

std::optional<int64_t> Store::latest_run() {
  Stmt q(db_, "SELECT max(id) FROM runs");
  if (q.step() && !q.is_null(0)) return q.int64(0);
  return std::nullopt;
}

int64_t Store::resolve_run(const std::string& spec, const std::string& what) {
  // `what` given (an option, "--run 7"): messages read "--run 7: ..."; else they name the run.
  if (spec == "latest" || spec == "last") {
    if (auto id = latest_run()) return *id;
    throw UsageError((what.empty() ? "" : what + ": ") + path_.string() + ": no runs yet");
  }
  int64_t id = 0;
  try {
    size_t used = 0;
    id = std::stoll(spec, &used);
    if (used != spec.size()) throw std::invalid_argument(spec);
  } catch (const std::exception&) {
    throw UsageError(what.empty() ? "'" + spec + "' is not a run id (a number or 'latest')"
                                  : what + ": expected a run id or 'latest'");
  }
  Stmt q(db_, "SELECT 1 FROM runs WHERE id = ?");
  q.bind(1, id);
  if (!q.step())
    throw UsageError(what.empty() ? "run " + spec + " not found in " + path_.string() : what + ": not found in " + path_.string());
  return id;
}

std::optional<Store::RunRecord> Store::run_record(int64_t run) {
  Stmt q(db_, "SELECT status, run_dir, config_hash, pid, host, seed FROM runs WHERE id = ?");
  q.bind(1, run);
  if (!q.step()) return std::nullopt;
  RunRecord r;
  r.status = q.text(0), r.config_hash = q.text(2), r.pid = q.int64(3), r.host = q.text(4), r.seed = uint64_t(q.int64(5));
  if (!q.is_null(1)) r.run_dir = q.text(1);
  return r;
}

std::map<std::string, std::string> Store::finished_stages(int64_t run) {
  Stmt q(db_, "SELECT name, output_model FROM stages WHERE run_id = ? AND status = 'finished'");
  q.bind(1, run);
  std::map<std::string, std::string> out;
  while (q.step()) out[q.text(0)] = q.is_null(1) ? std::string() : q.text(1);
  return out;
}

std::map<std::string, double> Store::metric_values(int64_t run, const std::string& stage, const std::string& glob) {
  Stmt q(db_, "SELECT key, value FROM metrics WHERE run_id = ? AND stage = ? AND key GLOB ? AND value IS NOT NULL");
  q.bind(1, run).bind(2, stage).bind(3, glob);
  std::map<std::string, double> out;
  while (q.step()) out[q.text(0)] = q.real(1);
  return out;
}

std::vector<std::string> Store::metric_keys(int64_t run, const std::string& glob) {
  Stmt q(db_, "SELECT DISTINCT key FROM metrics WHERE run_id = ? AND key GLOB ? ORDER BY key");
  q.bind(1, run).bind(2, glob);
  std::vector<std::string> out;
  while (q.step()) out.push_back(q.text(0));
  return out;
}

json Store::run_row(int64_t run) {
  json r = rows("SELECT r.*, e.name AS experiment FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE r.id = ?", run);
  if (r.empty()) throw UsageError("run " + std::to_string(run) + " not found in " + path_.string());
  return r[0];
}
json Store::stage_rows(int64_t run) {
  return rows("SELECT idx, name, algorithm, status, started_at, ended_at, error FROM stages WHERE run_id = ? ORDER BY idx", run);
}
json Store::param_rows(int64_t run) {
  return rows("SELECT key, value, type FROM params WHERE run_id = ? ORDER BY key", run);
}
json Store::metric_rows(int64_t run) {
  return rows("SELECT stage, key, step, value, flag, wall_time FROM metrics WHERE run_id = ? ORDER BY stage, key, step", run);
}
json Store::latest_metric_rows(int64_t run) {
  return rows(
      "SELECT m.stage, m.key, m.step, m.value, m.flag FROM metrics m JOIN ("
      " SELECT stage, key, max(step) AS step FROM metrics WHERE run_id = ?1 GROUP BY stage, key) l"
      " ON m.stage = l.stage AND m.key = l.key AND m.step = l.step WHERE m.run_id = ?1"
      " ORDER BY m.stage, m.key",
      run);
}
json Store::artifact_rows(int64_t run) {
  return rows("SELECT stage, name, path, bytes, sha256 FROM artifacts WHERE run_id = ? ORDER BY id", run);
}
json Store::dataset_rows(int64_t run) {
  return rows("SELECT stage, task, split, count, digest FROM datasets WHERE run_id = ? ORDER BY id", run);
}
json Store::plugin_rows(int64_t run) {
  return rows("SELECT kind, name, plugin_version, interface, library_path, library_sha256 FROM run_plugins"
              " WHERE run_id = ? ORDER BY kind, name", run);
}
json Store::sample_rows(int64_t run) {
  return rows("SELECT stage, step, task, example_id, prompt, completion, completion_tokens, finish_reason, reward,"
              " rewards, correct, advantage FROM samples WHERE run_id = ? ORDER BY id", run);
}

std::vector<Store::MetricPoint> Store::metric_points(int64_t run) {
  Stmt q(db_,
         "SELECT m.stage, m.key, m.step, m.value, m.flag, m.wall_time FROM metrics m"
         " LEFT JOIN stages s ON s.run_id = m.run_id AND s.name = m.stage"
         " WHERE m.run_id = ? ORDER BY s.idx, m.stage, m.key, m.step");
  q.bind(1, run);
  std::vector<MetricPoint> out;
  while (q.step()) {
    MetricPoint p;
    p.stage = q.text(0), p.key = q.text(1), p.step = q.int64(2);
    if (!q.is_null(3)) p.value = q.real(3);
    if (!q.is_null(4)) p.flag = q.text(4);
    p.wall_time = q.real(5);
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<Store::SampleRef> Store::sample_refs(int64_t run) {
  Stmt q(db_, "SELECT id, stage, step, example_id FROM samples WHERE run_id = ? ORDER BY id");
  q.bind(1, run);
  std::vector<SampleRef> out;
  while (q.step()) out.push_back({q.int64(0), q.text(1), q.int64(2), q.text(3)});
  return out;
}

int64_t Store::sample_count(int64_t run) {
  Stmt q(db_, "SELECT count(*) FROM samples WHERE run_id = ?");
  q.bind(1, run);
  q.step();
  return q.int64(0);
}

json Store::sample_rows_by_id(const std::vector<int64_t>& ids, int64_t max_chars) {
  Stmt q(db_,
         "SELECT id, run_id AS run, stage, step, task, example_id, substr(prompt, 1, ?2) AS prompt,"
         " length(prompt) AS prompt_chars, substr(completion, 1, ?2) AS completion, length(completion) AS chars,"
         " completion_tokens, finish_reason, reward, rewards, correct, advantage"
         " FROM samples WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY id");
  q.bind(1, json(ids).dump()).bind(2, max_chars);
  json out = json::array();
  while (q.step()) {
    out.push_back(row_object(q));
  }
  return out;
}

std::vector<Store::RunListRow> Store::list_runs(const std::string& status, const std::string& experiment, int64_t limit) {
  Stmt q(db_,
         "SELECT r.id, e.name, r.name, r.status, r.started_at, r.ended_at, r.seed, r.tags,"
         " (SELECT count(*) FROM stages s WHERE s.run_id = r.id AND s.status = 'finished'),"
         " (SELECT count(*) FROM samples s WHERE s.run_id = r.id)"
         " FROM runs r JOIN experiments e ON e.id = r.experiment_id"
         " WHERE (?1 = '' OR r.status = ?1) AND (?2 = '' OR e.name = ?2) ORDER BY r.id DESC LIMIT ?3");
  q.bind(1, status).bind(2, experiment).bind(3, limit);
  std::vector<RunListRow> out;
  while (q.step()) {
    RunListRow r;
    r.id = q.int64(0), r.experiment = q.text(1), r.name = q.text(2), r.status = q.text(3), r.started_at = q.real(4);
    if (!q.is_null(5)) r.ended_at = q.real(5);
    r.seed = q.int64(6), r.tags = q.text(7), r.finished_stages = q.int64(8), r.samples = q.int64(9);
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace warmup
