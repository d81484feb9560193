// See store.h. SQL lives next to the code that uses it; the schema is in migrations.cpp.
#include "store/store.h"

#include <unistd.h>

#include <cmath>
#include <random>
#include <nlohmann/json.hpp>

#include "store/migrations.h"
#include "util/process.h"

namespace warmup {
namespace fs = std::filesystem;

namespace {
// A random (version 4) UUID from the OS's entropy.
std::string new_uuid() {
  std::random_device rd;
  uint8_t b[16];
  for (auto& x : b) x = uint8_t(rd());
  b[6] = uint8_t((b[6] & 0x0F) | 0x40), b[8] = uint8_t((b[8] & 0x3F) | 0x80);
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
    s += hex[b[i] >> 4], s += hex[b[i] & 15];
  }
  return s;
}
}  // namespace

Store::Store(const fs::path& path) : path_(path) {
  std::error_code ec;
  if (path.has_parent_path()) fs::create_directories(path.parent_path(), ec);
  if (fs::is_directory(path)) throw StoreError(path.string() + ": cannot open store: is a directory");
  db_ = Db(path.string(), /*create=*/true);
  try {
    // Reading the header validates the file before we change anything.
    Stmt(db_, "PRAGMA schema_version").step();
    db_.exec("PRAGMA journal_mode=WAL");
    db_.exec("PRAGMA foreign_keys=ON");
    db_.exec("PRAGMA synchronous=NORMAL");
  } catch (const StoreError& e) {
    throw StoreError(path.string() + ": cannot open store: " +
                     std::string(sqlite3_errmsg(db_.handle())));
  }
  migrate();
}

Store::Store(const fs::path& path, ReadOnly) : path_(path) {
  if (!fs::exists(path)) throw StoreError(path.string() + ": no such store");
  if (fs::is_directory(path)) throw StoreError(path.string() + ": cannot open store: is a directory");
  auto open = [&](const std::string& uri) {
    db_ = Db(uri, /*create=*/false, 5000, /*read_only=*/true);
    Stmt(db_, "PRAGMA schema_version").step();  // reading the header validates the file
  };
  // A WAL store in a read-only folder cannot get its -shm file: read it as immutable then (no
  // other process may be writing it, which a read-only folder already implies).
  // (A URI: '%', '?' and '#' in the path are escaped, or another file would be opened.)
  std::string uri = "file:";
  for (char c : fs::absolute(path).string())
    uri += c == '%' ? std::string("%25") : c == '?' ? std::string("%3F") : c == '#' ? std::string("%23") : std::string(1, c);
  try {
    open(uri + "?mode=ro");
  } catch (const StoreError&) {
    // Only for a folder this process cannot write: elsewhere (a busy or locked store) immutable
    // would read around the WAL and show old data.
    if (::access(fs::absolute(path).parent_path().c_str(), W_OK) == 0) throw;
    try {
      open(uri + "?mode=ro&immutable=1");
    } catch (const StoreError&) {
      throw StoreError(path.string() + ": cannot open store: " + std::string(sqlite3_errmsg(db_.handle())));
    }
  }
  int have = schema_version(), want = int(store_migrations().size());
  if (have != want)
    throw StoreError(path.string() + ": the store has schema version " + std::to_string(have) + ", this warmup reads " +
                     std::to_string(want) + (have < want ? "; open it once writable (any warmup command) to migrate it" : "; use a newer warmup"));
}

int Store::schema_version() {
  Stmt st(db_, "PRAGMA user_version");
  st.step();
  return int(st.int64(0));
}

void Store::migrate() {
  const auto& migrations = store_migrations();
  if (schema_version() >= int(migrations.size())) {
    if (schema_version() > int(migrations.size()))
      throw StoreError(path_.string() + ": store schema version " + std::to_string(schema_version()) +
                       " is newer than this warmup (" + std::to_string(migrations.size()) + ")");
    return;
  }
  Transaction tx(db_);  // IMMEDIATE: a second process waits here, then sees the new version
  for (int v = schema_version(); v < int(migrations.size()); ++v) {
    db_.exec(migrations[size_t(v)]);
    db_.exec("PRAGMA user_version = " + std::to_string(v + 1));
  }
  tx.commit();
}

int64_t Store::create_run(const RunStart& s) {
  Transaction tx(db_);
  Stmt(db_, "INSERT INTO experiments(name, created_at) VALUES (?, ?) ON CONFLICT(name) DO NOTHING")
      .bind(1, s.experiment).bind(2, unix_now()).run();
  Stmt q(db_, "SELECT id FROM experiments WHERE name = ?");
  q.bind(1, s.experiment);
  q.step();
  int64_t exp_id = q.int64(0);
  Stmt ins(db_,
           "INSERT INTO runs(experiment_id, name, status, started_at, config, config_hash, "
           "config_file, overrides, git_commit, warmup_version, host, pid, pid_start, device, "
           "torch_version, seed, tags, uuid) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  int64_t pid = getpid();
  ins.bind(1, exp_id).bind(2, s.name.empty() ? s.experiment : s.name).bind(3, unix_now())
      .bind(4, s.config_toml).bind(5, s.config_hash).bind(6, s.config_file).bind(7, s.overrides_json)
      .bind(8, s.git_commit).bind(9, s.warmup_version).bind(10, host_name()).bind(11, pid)
      .bind(12, process_start_ticks(pid)).bind(13, s.device).bind(14, s.torch_version)
      .bind(15, int64_t(s.seed)).bind(16, s.tags_json).bind(17, new_uuid());
  ins.run();
  int64_t id = db_.last_insert_id();
  tx.commit();
  return id;
}

void Store::set_run_dir(int64_t run, const std::string& dir) {
  Stmt(db_, "UPDATE runs SET run_dir = ? WHERE id = ?").bind(1, dir).bind(2, run).run();
}

bool Store::resume_run(int64_t run) {
  int64_t pid = getpid();
  Stmt(db_,
       "UPDATE runs SET status = 'running', ended_at = NULL, error = NULL, host = ?, pid = ?, "
       "pid_start = ?, resumes = resumes + 1 WHERE id = ? AND status IN ('failed', 'interrupted')")
      .bind(1, host_name()).bind(2, pid).bind(3, process_start_ticks(pid)).bind(4, run).run();
  return db_.changes() == 1;
}

bool Store::delete_run(int64_t run) {
  Stmt(db_, "DELETE FROM runs WHERE id = ? AND status != 'running'").bind(1, run).run();
  return db_.changes() == 1;
}

std::string Store::run_uuid(int64_t run) {
  Stmt q(db_, "SELECT uuid FROM runs WHERE id = ?");
  q.bind(1, run);
  if (!q.step() || q.is_null(0)) return "";
  return q.text(0);
}

void Store::end_run(int64_t run, const std::string& status, const std::string& error) {
  Transaction tx(db_);
  Stmt(db_, "UPDATE runs SET status = ?, ended_at = ?, error = ? WHERE id = ?")
      .bind(1, status).bind(2, unix_now())
      .bind(3, error.empty() ? std::optional<std::string>() : std::optional<std::string>(error))
      .bind(4, run).run();
  if (status != "finished")
    Stmt(db_, "UPDATE stages SET status = ?, ended_at = ? WHERE run_id = ? AND status = 'running'")
        .bind(1, status).bind(2, unix_now()).bind(3, run).run();
  tx.commit();
}

namespace {

// (run_id, key, value, type) of an INSERT INTO params: the value in its own SQLite type.
void bind_param(Stmt& st, int64_t run, const FlatValue& p) {
  st.bind(1, run).bind(2, p.key);
  if (p.type == "integer") st.bind(3, p.integer);
  else if (p.type == "float") st.bind(3, p.number);
  else if (p.type == "boolean") st.bind(3, int64_t(p.number));
  else st.bind(3, p.text);
  st.bind(4, p.type);
}

}  // namespace

void Store::write_params(int64_t run, const std::vector<FlatValue>& params) {
  Transaction tx(db_);
  Stmt ins(db_, "INSERT INTO params(run_id, key, value, type) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(run_id, key) DO NOTHING");
  Stmt get(db_, "SELECT CAST(value AS TEXT), type FROM params WHERE run_id = ? AND key = ?");
  for (const auto& p : params) {
    bind_param(ins, run, p);
    ins.run();
    if (db_.changes() == 0) {
      get.bind(1, run).bind(2, p.key);
      get.step();
      std::string old = get.text(0), old_type = get.text(1);
      get.reset();
      std::string now = p.type == "boolean" ? std::to_string(int64_t(p.number)) : p.text;
      bool same = old_type == p.type &&
                  (p.type == "float" ? std::stod(old) == p.number : old == now);
      if (!same)
        throw StoreError(path_.string() + ": run " + std::to_string(run) + " param '" + p.key +
                         "' is already " + old + "; params are write-once (refusing " + now + ")");
    }
  }
  tx.commit();
}

void Store::amend_run_config(int64_t run, const std::string& config_toml, const std::string& config_hash,
                             const std::vector<std::string>& overrides, const std::vector<FlatValue>& changed,
                             const std::function<void()>& before_commit) {
  Transaction tx(db_);
  nlohmann::json all = nlohmann::json::array();
  {
    Stmt q(db_, "SELECT overrides FROM runs WHERE id = ?");
    q.bind(1, run);
    if (q.step()) all = nlohmann::json::parse(q.text(0), nullptr, false);
    if (!all.is_array()) all = nlohmann::json::array();
  }
  for (const auto& o : overrides) all.push_back(o);
  Stmt(db_, "UPDATE runs SET config = ?, config_hash = ?, overrides = ? WHERE id = ?")
      .bind(1, config_toml).bind(2, config_hash).bind(3, all.dump()).bind(4, run).run();
  // Params are write-once for every other writer (the params_write_once trigger refuses UPDATE):
  // an amendment replaces the row, and the run's `overrides` say why.
  Stmt del(db_, "DELETE FROM params WHERE run_id = ? AND key = ?");
  Stmt up(db_, "INSERT INTO params(run_id, key, value, type) VALUES (?, ?, ?, ?)");
  for (const auto& p : changed) {
    del.bind(1, run).bind(2, p.key);
    del.run();
    bind_param(up, run, p);
    up.run();
  }
  if (before_commit) before_commit();
  tx.commit();
}

int64_t Store::begin_stage(int64_t run, int idx, const std::string& name, const std::string& algorithm) {
  Stmt(db_,
       "INSERT INTO stages(run_id, idx, name, algorithm, status, started_at) "
       "VALUES (?, ?, ?, ?, 'running', ?) ON CONFLICT(run_id, name) DO UPDATE SET "
       "status = 'running', ended_at = NULL, error = NULL")
      .bind(1, run).bind(2, idx).bind(3, name).bind(4, algorithm).bind(5, unix_now()).run();
  Stmt q(db_, "SELECT id FROM stages WHERE run_id = ? AND name = ?");
  q.bind(1, run).bind(2, name);
  q.step();
  return q.int64(0);
}

void Store::end_stage(int64_t stage_id, const std::string& status, const std::string& error,
                      const std::string& output_model) {
  auto opt = [](const std::string& s) { return s.empty() ? std::optional<std::string>() : std::optional<std::string>(s); };
  Stmt(db_, "UPDATE stages SET status = ?, ended_at = ?, error = ?, output_model = ? WHERE id = ?")
      .bind(1, status).bind(2, unix_now()).bind(3, opt(error)).bind(4, opt(output_model))
      .bind(5, stage_id).run();
}

void Store::discard_after(int64_t run, const std::string& stage, int64_t step) {
  Transaction tx(db_);
  Stmt(db_, "DELETE FROM metrics WHERE run_id = ? AND stage = ? AND step > ?").bind(1, run).bind(2, stage).bind(3, step).run();
  Stmt(db_, "DELETE FROM samples WHERE run_id = ? AND stage = ? AND step > ?").bind(1, run).bind(2, stage).bind(3, step).run();
  tx.commit();
}

void Store::write_metrics(int64_t run, const std::vector<MetricRow>& rows) {
  if (rows.empty()) return;
  Transaction tx(db_);
  Stmt ins(db_,
           "INSERT INTO metrics(run_id, stage, key, step, value, flag, wall_time) "
           "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run_id, stage, key, step) DO UPDATE SET "
           "value = excluded.value, flag = excluded.flag, wall_time = excluded.wall_time");
  for (const auto& r : rows) {
    ins.bind(1, run).bind(2, r.stage).bind(3, r.key).bind(4, r.step);
    if (std::isfinite(r.value)) {
      ins.bind(5, r.value).bind_null(6);
    } else {
      ins.bind_null(5).bind(6, std::isnan(r.value) ? "nan" : (r.value > 0 ? "inf" : "-inf"));
    }
    ins.bind(7, r.wall_time);
    ins.run();
  }
  tx.commit();
}

void Store::write_samples(int64_t run, const std::string& stage, const std::vector<SampleRecord>& rows) {
  if (rows.empty()) return;
  Transaction tx(db_);
  Stmt ins(db_,
           "INSERT INTO samples(run_id, stage, step, task, example_id, prompt, completion, "
           "completion_tokens, finish_reason, reward, rewards, correct, advantage, created_at) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  double now = unix_now();
  for (const auto& s : rows) {
    nlohmann::json parts = nlohmann::json::object();
    for (const auto& [k, v] : s.rewards) parts[k] = std::isfinite(v) ? nlohmann::json(v) : nlohmann::json();
    ins.bind(1, run).bind(2, stage).bind(3, s.step).bind(4, s.task).bind(5, s.example_id)
        .bind(6, s.prompt).bind(7, s.completion);
    if (s.completion_tokens >= 0) ins.bind(8, s.completion_tokens); else ins.bind_null(8);
    ins.bind(9, s.finish_reason).bind(10, s.reward).bind(11, parts.dump());
    if (s.correct) ins.bind(12, int64_t(*s.correct)); else ins.bind_null(12);
    ins.bind(13, s.advantage).bind(14, now);
    ins.run();
  }
  tx.commit();
}

void Store::add_artifact(int64_t run, const std::string& stage, const std::string& name,
                         const std::string& path, int64_t bytes, const std::string& sha256) {
  // One row per (run, stage, name): a resumed stage that registers its artifact again replaces
  // the row the killed attempt wrote.
  Transaction tx(db_);
  Stmt(db_, "DELETE FROM artifacts WHERE run_id = ? AND stage = ? AND name = ?")
      .bind(1, run).bind(2, stage).bind(3, name).run();
  Stmt(db_, "INSERT INTO artifacts(run_id, stage, name, path, bytes, sha256, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)")
      .bind(1, run).bind(2, stage).bind(3, name).bind(4, path).bind(5, bytes).bind(6, sha256)
      .bind(7, unix_now()).run();
  tx.commit();
}

void Store::add_dataset(int64_t run, const std::string& stage, const std::string& task,
                        const std::string& split, int64_t count, const std::string& digest) {
  Stmt(db_, "INSERT INTO datasets(run_id, stage, task, split, count, digest) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(run_id, stage, task, split) DO UPDATE SET count = excluded.count, "
            "digest = excluded.digest")
      .bind(1, run).bind(2, stage).bind(3, task).bind(4, split).bind(5, count).bind(6, digest).run();
}

void Store::add_plugins(int64_t run, const std::vector<PluginUse>& plugins) {
  Transaction tx(db_);
  Stmt ins(db_, "INSERT INTO run_plugins(run_id, kind, name, plugin_version, interface, "
                "library_path, library_sha256) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(run_id, kind, name) DO NOTHING");
  for (const auto& p : plugins)
    ins.bind(1, run).bind(2, p.kind).bind(3, p.name).bind(4, p.plugin_version).bind(5, p.interface)
        .bind(6, p.library_path).bind(7, p.library_sha256).run();
  tx.commit();
}

int Store::reap_dead_runs() {
  struct Row { int64_t id, pid, start; };
  std::vector<Row> dead;
  {
    Stmt q(db_, "SELECT id, pid, pid_start FROM runs WHERE status = 'running' AND host = ?");
    q.bind(1, host_name());
    while (q.step()) {
      Row r{q.int64(0), q.int64(1), q.is_null(2) ? -1 : q.int64(2)};
      if (!process_alive(r.pid, r.start)) dead.push_back(r);
    }
  }
  for (const auto& r : dead) {
    std::string why = "process " + std::to_string(r.pid) + " on " + host_name() +
                      " ended without closing the run (killed or crashed); marked failed by pid " +
                      std::to_string(getpid());
    Transaction tx(db_);
    // Only if it is still that process's: a resume may have claimed it since it was read.
    Stmt(db_, "UPDATE runs SET status = 'failed', ended_at = ?, error = ? WHERE id = ? AND status = 'running' AND pid = ?")
        .bind(1, unix_now()).bind(2, why).bind(3, r.id).bind(4, r.pid).run();
    if (db_.changes() == 0) continue;  // the transaction rolls back
    Stmt(db_, "UPDATE stages SET status = 'failed', ended_at = ?, error = ? WHERE run_id = ? AND status = 'running'")
        .bind(1, unix_now()).bind(2, why).bind(3, r.id).run();
    tx.commit();
  }
  return int(dead.size());
}

}  // namespace warmup
