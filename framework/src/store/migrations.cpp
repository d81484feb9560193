// The run store schema. Documented for users in results/README.md; keep both in step.
#include "store/migrations.h"

namespace warmup {

const std::vector<std::string_view>& store_migrations() {
  static const std::vector<std::string_view> kMigrations = {
      // 1: initial schema
      R"sql(
CREATE TABLE experiments (
  id          INTEGER PRIMARY KEY,
  name        TEXT NOT NULL UNIQUE,
  created_at  REAL NOT NULL
) STRICT;

CREATE TABLE runs (
  id             INTEGER PRIMARY KEY,
  experiment_id  INTEGER NOT NULL REFERENCES experiments(id),
  name           TEXT NOT NULL,
  status         TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'interrupted')),
  started_at     REAL NOT NULL,
  ended_at       REAL,
  config         TEXT NOT NULL,
  config_hash    TEXT NOT NULL,
  config_file    TEXT,
  overrides      TEXT NOT NULL DEFAULT '[]',
  git_commit     TEXT,
  warmup_version TEXT,
  host           TEXT NOT NULL,
  pid            INTEGER NOT NULL,
  pid_start      INTEGER,
  device         TEXT,
  torch_version  TEXT,
  seed           INTEGER NOT NULL,
  tags           TEXT NOT NULL DEFAULT '[]',
  run_dir        TEXT,
  error          TEXT,
  resumes        INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX runs_by_status ON runs(status);
CREATE INDEX runs_by_experiment ON runs(experiment_id);

CREATE TABLE stages (
  id          INTEGER PRIMARY KEY,
  run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  idx         INTEGER NOT NULL,
  name        TEXT NOT NULL,
  algorithm   TEXT NOT NULL,
  status      TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'interrupted')),
  started_at  REAL NOT NULL,
  ended_at    REAL,
  error       TEXT,
  UNIQUE (run_id, name)
) STRICT;

CREATE TABLE params (
  run_id  INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  key     TEXT NOT NULL,
  value   ANY,
  type    TEXT NOT NULL,
  PRIMARY KEY (run_id, key)
) STRICT, WITHOUT ROWID;
CREATE TRIGGER params_write_once BEFORE UPDATE ON params
BEGIN
  SELECT RAISE(ABORT, 'params are write-once');
END;

CREATE TABLE metrics (
  run_id     INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  stage      TEXT NOT NULL,
  key        TEXT NOT NULL,
  step       INTEGER NOT NULL,
  value      REAL,
  flag       TEXT CHECK (flag IN ('nan', 'inf', '-inf')),
  wall_time  REAL NOT NULL,
  PRIMARY KEY (run_id, stage, key, step)
) STRICT, WITHOUT ROWID;

CREATE TABLE samples (
  id                 INTEGER PRIMARY KEY,
  run_id             INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  stage              TEXT NOT NULL,
  step               INTEGER NOT NULL,
  task               TEXT NOT NULL,
  example_id         TEXT NOT NULL,
  prompt             TEXT NOT NULL,
  completion         TEXT NOT NULL,
  completion_tokens  INTEGER,
  finish_reason      TEXT,
  reward             REAL,
  rewards            TEXT NOT NULL DEFAULT '{}',
  correct            INTEGER CHECK (correct IN (0, 1)),
  advantage          REAL,
  created_at         REAL NOT NULL
) STRICT;
CREATE INDEX samples_by_run ON samples(run_id, stage, step);

CREATE TABLE artifacts (
  id          INTEGER PRIMARY KEY,
  run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  stage       TEXT NOT NULL,
  name        TEXT NOT NULL,
  path        TEXT NOT NULL,
  bytes       INTEGER NOT NULL,
  sha256      TEXT NOT NULL,
  created_at  REAL NOT NULL
) STRICT;

CREATE TABLE datasets (
  id      INTEGER PRIMARY KEY,
  run_id  INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  stage   TEXT NOT NULL,
  task    TEXT NOT NULL,
  split   TEXT NOT NULL,
  count   INTEGER NOT NULL,
  digest  TEXT NOT NULL,
  UNIQUE (run_id, stage, task, split)
) STRICT;

CREATE TABLE run_plugins (
  run_id          INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  kind            TEXT NOT NULL,
  name            TEXT NOT NULL,
  plugin_version  TEXT NOT NULL,
  interface       TEXT NOT NULL,
  library_path    TEXT NOT NULL,
  library_sha256  TEXT NOT NULL,
  PRIMARY KEY (run_id, kind, name)
) STRICT, WITHOUT ROWID;
)sql",
      // 2: the model each finished stage handed on (so a resumed run restarts later stages from it).
      R"sql(
ALTER TABLE stages ADD COLUMN output_model TEXT;
)sql",
      // 3: a run's identity, also written into its folder (runs/<id>-<uuid prefix>/run.json), so a
      // folder of another run (another store in the same folder, a recreated store) is never used.
      R"sql(
ALTER TABLE runs ADD COLUMN uuid TEXT;
CREATE UNIQUE INDEX runs_by_uuid ON runs(uuid) WHERE uuid IS NOT NULL;
)sql",
  };
  return kMigrations;
}

}  // namespace warmup
