// The SQLite run store: migrations from an empty file, write-once params, NaN flags, batched
// samples, and dead-run detection with a real child process.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <memory>

#include "helpers.h"
#include "store/migrations.h"
#include "store/store.h"

using namespace warmup;
using test::TempDir;

namespace {

RunStart demo_run(const std::string& experiment = "exp") {
  RunStart r;
  r.experiment = experiment;
  r.config_toml = "[experiment]\nname = \"exp\"\n";
  r.config_hash = "h";
  r.seed = 3;
  return r;
}

// A second connection to the store's file, as another process (or a person with sqlite3) has:
// the Store keeps its own connection private.
std::unique_ptr<Db> conn(const Store& s) { return std::make_unique<Db>(s.path().string(), false); }

int64_t count(Store& s, const std::string& sql) {
  auto db = conn(s);
  Stmt q(*db, sql);
  q.step();
  return q.int64(0);
}

std::string text(Store& s, const std::string& sql) {
  auto db = conn(s);
  Stmt q(*db, sql);
  q.step();
  return q.text(0);
}

}  // namespace

TEST_CASE("an empty file is migrated to the current schema, idempotently") {
  TempDir d;
  auto path = d.path / "sub" / "store.sqlite";
  {
    Store s(path);
    CHECK(s.schema_version() == int(store_migrations().size()));
    CHECK(text(s, "PRAGMA journal_mode") == "wal");
    CHECK_THROWS_AS(s.begin_stage(987654, 0, "st", "sft"), StoreError);  // foreign keys on: no such run
    // STRICT tables reject a wrongly typed value.
    CHECK_THROWS_AS(conn(s)->exec("INSERT INTO experiments(name, created_at) VALUES ('x', 'not a time')"), StoreError);
    for (const char* t : {"experiments", "runs", "stages", "params", "metrics", "samples", "artifacts", "datasets", "run_plugins"})
      CHECK(count(s, std::string("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = '") + t + "'") == 1);
  }
  Store again(path);
  CHECK(again.schema_version() == int(store_migrations().size()));
}

TEST_CASE("a store newer than this binary is refused") {
  TempDir d;
  auto path = d.path / "s.sqlite";
  { Store s(path); conn(s)->exec("PRAGMA user_version = 999"); }
  CHECK_THROWS_WITH_AS(Store{path}, doctest::Contains("is newer than this warmup"), StoreError);
}

TEST_CASE("a file that is not a database is reported with its path") {
  TempDir d;
  auto path = d.write("junk.sqlite", std::string(4096, 'x'));
  CHECK_THROWS_WITH_AS(Store{path}, doctest::Contains("junk.sqlite: cannot open store"), StoreError);
  CHECK_THROWS_WITH_AS(Store{d.path}, doctest::Contains("is a directory"), StoreError);
}

TEST_CASE("params are write-once") {
  TempDir d;
  Store s(d.path / "s.sqlite");
  int64_t run = s.create_run(demo_run());
  std::vector<FlatValue> p = {{"a", "integer", "1", 0, 1}, {"b", "float", "0.5", 0.5}, {"c", "string", "x", 0}};
  s.write_params(run, p);
  s.write_params(run, p);  // same values again: accepted (resume)
  std::vector<FlatValue> changed = {{"a", "integer", "2", 0, 2}};
  CHECK_THROWS_WITH_AS(s.write_params(run, changed), doctest::Contains("params are write-once"), StoreError);
  CHECK_THROWS_WITH_AS(conn(s)->exec("UPDATE params SET value = 5 WHERE key = 'a'"),
                       doctest::Contains("params are write-once"), StoreError);
  CHECK(count(s, "SELECT value FROM params WHERE key = 'a'") == 1);
  CHECK(text(s, "SELECT typeof(value) FROM params WHERE key = 'b'") == "real");
}

TEST_CASE("metrics keep NaN and infinities as flags; a step rewritten replaces the row") {
  TempDir d;
  Store s(d.path / "s.sqlite");
  int64_t run = s.create_run(demo_run());
  s.write_metrics(run, {{"st", "loss", 0, 1.5, 1.0}, {"st", "loss", 1, std::nan(""), 2.0},
                        {"st", "loss", 2, INFINITY, 3.0}, {"st", "loss", 3, -INFINITY, 4.0}});
  s.write_metrics(run, {{"st", "loss", 0, 1.25, 5.0}});
  CHECK(count(s, "SELECT count(*) FROM metrics") == 4);
  CHECK(text(s, "SELECT value FROM metrics WHERE step = 0") == "1.25");
  CHECK(text(s, "SELECT flag FROM metrics WHERE step = 1") == "nan");
  CHECK(count(s, "SELECT value IS NULL FROM metrics WHERE step = 1") == 1);
  CHECK(text(s, "SELECT flag FROM metrics WHERE step = 2") == "inf");
  CHECK(text(s, "SELECT flag FROM metrics WHERE step = 3") == "-inf");
}

TEST_CASE("samples, datasets, artifacts and plugins are recorded") {
  TempDir d;
  Store s(d.path / "s.sqlite");
  int64_t run = s.create_run(demo_run());
  SampleRecord r;
  r.task = "t", r.example_id = "t/1", r.prompt = "p", r.completion = "c", r.reward = 2;
  r.rewards = {{"exact", 1.0}, {"exact/match", 1.0}};
  r.correct = true;
  s.write_samples(run, "st", {r, r});
  s.add_dataset(run, "st", "t", "test", 2, "abc");
  s.add_artifact(run, "st", "ckpt", "/x", 10, "def");
  s.add_plugins(run, {{"task", "t", "0.1", "warmup.task@1", "/lib.so", "123"}});
  CHECK(count(s, "SELECT count(*) FROM samples WHERE correct = 1") == 2);
  CHECK(text(s, "SELECT json_extract(rewards, '$.exact') FROM samples LIMIT 1") == "1.0");
  CHECK(count(s, "SELECT count FROM datasets") == 2);
  CHECK(text(s, "SELECT library_sha256 FROM run_plugins") == "123");
}

TEST_CASE("a resumed stage's writes replace the killed attempt's: artifacts by name, discard_after(-1) drops all") {
  TempDir d;
  Store s(d.path / "s.sqlite");
  int64_t run = s.create_run(demo_run());
  SampleRecord r;
  r.task = "t", r.example_id = "t/1", r.prompt = "p", r.completion = "c";
  s.write_samples(run, "st", {r, r});
  s.write_samples(run, "other", {r});
  s.write_metrics(run, {{"st", "eval/acc", 0, 0.5, 1.0}, {"other", "eval/acc", 0, 0.5, 1.0}});
  s.add_artifact(run, "st", "out.jsonl", "/a", 10, "aaa");
  s.add_artifact(run, "other", "out.jsonl", "/b", 10, "bbb");
  s.add_artifact(run, "st", "out.jsonl", "/a", 12, "ccc");  // the resumed attempt registers it again
  CHECK(count(s, "SELECT count(*) FROM artifacts") == 2);
  CHECK(text(s, "SELECT sha256 FROM artifacts WHERE stage = 'st'") == "ccc");
  s.discard_after(run, "st", -1);  // a stage without checkpoints starts over
  CHECK(count(s, "SELECT count(*) FROM samples WHERE stage = 'st'") == 0);
  CHECK(count(s, "SELECT count(*) FROM metrics WHERE stage = 'st'") == 0);
  CHECK(count(s, "SELECT count(*) FROM samples WHERE stage = 'other'") == 1);
  CHECK(count(s, "SELECT count(*) FROM metrics WHERE stage = 'other'") == 1);
}

TEST_CASE("a run left 'running' by a dead process is marked failed; a live one is not") {
  TempDir d;
  Store s(d.path / "s.sqlite");
  int64_t mine = s.create_run(demo_run());  // this process: alive
  int64_t other = s.create_run(demo_run());
  int64_t stage = s.begin_stage(other, 0, "st", "evaluate");
  (void)stage;
  pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, nullptr, 0);  // child is gone now
  Stmt(*conn(s), "UPDATE runs SET pid = ?, pid_start = NULL WHERE id = ?").bind(1, int64_t(child)).bind(2, other).run();
  CHECK(s.reap_dead_runs() == 1);
  CHECK(text(s, "SELECT status FROM runs WHERE id = " + std::to_string(other)) == "failed");
  CHECK(text(s, "SELECT error FROM runs WHERE id = " + std::to_string(other)).find("ended without closing the run") != std::string::npos);
  CHECK(text(s, "SELECT status FROM stages WHERE run_id = " + std::to_string(other)) == "failed");
  CHECK(text(s, "SELECT status FROM runs WHERE id = " + std::to_string(mine)) == "running");
  // A live pid whose start time does not match (pid reused) counts as dead too.
  Stmt(*conn(s), "UPDATE runs SET pid_start = 1 WHERE id = ?").bind(1, mine).run();
  CHECK(s.reap_dead_runs() == 1);
}

TEST_CASE("interrupted and finished runs close their running stages") {
  TempDir d;
  Store s(d.path / "s.sqlite");
  int64_t run = s.create_run(demo_run());
  s.begin_stage(run, 0, "a", "x");
  s.end_run(run, "interrupted", "stopped by SIGTERM");
  CHECK(text(s, "SELECT status FROM stages") == "interrupted");
  CHECK(text(s, "SELECT error FROM runs") == "stopped by SIGTERM");
  CHECK(count(s, "SELECT ended_at IS NOT NULL FROM runs") == 1);
}
