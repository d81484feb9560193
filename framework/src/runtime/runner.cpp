// See runner.h. Order matters: everything that can be validated (config, plugins and their
// options) is validated before a run row exists, so a bad input never leaves a row 'running'.
#include "runtime/runner.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fstream>
#include <iostream>
#include <atomic>
#include <csignal>
#include <mutex>
#include <set>

#include "config/experiment.h"
#include "config/toml_tree.h"
#include <torch/cuda.h>
#include "dist/process_group.h"
#include "model/checkpoint.h"
#include "plugins/registry.h"
#include "runtime/host_policy.h"
#include "runtime/resume_overrides.h"
#include "runtime/signals.h"
#include "runtime/stage_context.h"
#include "runtime/validate.h"
#include "store/store.h"
#include "util/build_info.h"
#include "util/errors.h"
#include "util/log.h"
#include "util/process.h"
#include "util/sha256.h"
#include "util/table.h"

#include <nlohmann/json.hpp>

namespace warmup {
namespace fs = std::filesystem;
namespace {

// warmup::Host for plugin objects: logging and resolved-config collection.
class HostImpl final : public Host {
 public:
  void log(LogLevel level, std::string_view instance, std::string_view message) override {
    log_line(level, instance, message);
  }
  void set_resolved_config(std::string_view instance, std::string_view toml) override {
    std::lock_guard<std::mutex> lock(mu_);
    resolved_[std::string(instance)] = std::string(toml);
  }
  // The plugin's resolved table, or its given options if it never reported one.
  toml::table resolved(const std::string& instance, const toml::table& given) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = resolved_.find(instance);
    if (it == resolved_.end()) return given;
    return toml::parse(it->second);
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::string> resolved_;
};

struct Instances {
  std::map<std::string, PluginPtr<Task>> tasks;
  std::map<std::string, PluginPtr<Reward>> rewards;
  std::map<std::string, PluginPtr<Teacher>> teachers;
  std::vector<PluginPtr<Algorithm>> algorithms;  // one per stage
  std::vector<PluginUse> used;
};

PluginUse use_of(const PluginEntryInfo& e) {
  return {e.kind, e.name, e.plugin_version, e.interface_id + "@" + std::to_string(e.interface_version),
          e.library.string(), ""};
}

template <class I>
void create_section(const PluginRegistry& reg, HostImpl& host, const ExperimentConfig& cfg,
                    const std::map<std::string, PluginSpec>& specs,
                    std::map<std::string, PluginPtr<I>>& out, std::vector<PluginUse>& used) {
  for (const auto& [instance, spec] : specs) {
    PluginInit init = make_plugin_init(spec.kind, spec.plugin, spec.path, spec.options, spec.origin, cfg.seed,
                                       cfg.base_dir.string());
    init.host = &host;
    out.emplace(instance, reg.create<I>(spec.plugin, init, spec.origin));
    used.push_back(use_of(*reg.find(spec.kind, spec.plugin)));
  }
}

Instances create_all(const PluginRegistry& reg, HostImpl& host, const ExperimentConfig& cfg) {
  // Unknown names first, so a typo is reported before any plugin does work in its constructor.
  for (const auto* section : {&cfg.tasks, &cfg.rewards, &cfg.teachers})
    for (const auto& [i, spec] : *section) reg.require(spec.kind, spec.plugin, spec.origin);
  for (const auto& st : cfg.stages) reg.require("algorithm", st.algorithm, st.origin);

  Instances in;
  create_section(reg, host, cfg, cfg.tasks, in.tasks, in.used);
  create_section(reg, host, cfg, cfg.rewards, in.rewards, in.used);
  create_section(reg, host, cfg, cfg.teachers, in.teachers, in.used);
  for (const auto& st : cfg.stages) {
    PluginInit init = make_plugin_init("algorithm", st.algorithm, "stages." + st.name + "." + st.algorithm,
                                       st.options, st.options_origin, cfg.seed, cfg.base_dir.string());
    init.host = &host;
    in.algorithms.push_back(reg.create<Algorithm>(st.algorithm, init, st.options_origin));
    in.used.push_back(use_of(*reg.find("algorithm", st.algorithm)));
  }
  return in;
}

toml::array string_array(const std::vector<std::string>& v) {
  toml::array a;
  for (const auto& s : v) a.push_back(s);
  return a;
}

// The fully resolved config: host sections with defaults, plugin tables as the plugins resolved them.
toml::table resolve(const ExperimentConfig& cfg, const HostImpl& host) {
  toml::table root;
  toml::table ex{{"name", cfg.name}, {"seed", int64_t(cfg.seed)}, {"tags", string_array(cfg.tags)}};
  if (!cfg.description.empty()) ex.insert("description", cfg.description);
  root.insert("experiment", std::move(ex));
  toml::table model{{"dtype", cfg.model.dtype}, {"device", cfg.model.device}};
  if (cfg.model_init)
    model.insert("init", toml::table{{"config", cfg.model_init->config}, {"seed", cfg.model_init->seed},
                                     {"tokenizer", cfg.model_init->tokenizer}});
  else
    model.insert("path", cfg.model.path);
  if (cfg.model.extra.contains("tokenizer")) model.insert("tokenizer", cfg.model.extra["tokenizer"].get<std::string>());
  root.insert("model", std::move(model));
  std::vector<std::string> paths;
  for (const auto& p : cfg.plugin_paths) paths.push_back(p.string());
  root.insert("plugins", toml::table{{"paths", string_array(paths)}});
  for (const auto& [section, specs] : {std::pair{"tasks", &cfg.tasks}, {"rewards", &cfg.rewards},
                                       {"teachers", &cfg.teachers}}) {
    if (specs->empty()) continue;
    toml::table sec;
    for (const auto& [instance, spec] : *specs) {
      toml::table t = host.resolved(spec.path, spec.options);
      t.insert("plugin", spec.plugin);
      sec.insert(instance, std::move(t));
    }
    root.insert(section, std::move(sec));
  }
  toml::array stages;
  for (const auto& st : cfg.stages) {
    toml::table t{{"name", st.name}, {"algorithm", st.algorithm}, {"tasks", string_array(st.tasks)},
                  {"teachers", string_array(st.teachers)}};
    if (!st.description.empty()) t.insert("description", st.description);
    if (!st.model_from.empty()) t.insert("model_from", st.model_from);
    toml::table rewards;
    for (const auto& [r, w] : st.rewards) rewards.insert(r, w);
    t.insert("rewards", std::move(rewards));
    t.insert("eval", toml::table{{"split", st.eval.split}, {"limit", st.eval.limit},
                                 {"num_samples", st.eval.num_samples}, {"every_steps", st.eval.every_steps}});
    t.insert(st.algorithm, host.resolved("stages." + st.name + "." + st.algorithm, st.options));
    stages.push_back(std::move(t));
  }
  root.insert("stages", std::move(stages));
  return root;
}

// [model] init: the from-scratch model lives in the run directory; a resumed run reuses it.
std::string init_model(const ModelInit& init, const fs::path& run_dir, const std::string& dtype) {
  fs::path dir = run_dir / "model-init";
  if (fs::exists(dir / "config.json") && fs::exists(dir / "model.safetensors")) return dir.string();
  fs::path tmp = run_dir / "model-init.tmp";
  fs::remove_all(tmp);
  ModelConfig c = create_model_dir(init.config, tmp, uint64_t(init.seed), dtype, init.tokenizer);
  fs::remove_all(dir);
  fs::rename(tmp, dir);
  log_info("initialised a " + std::to_string(c.num_parameters()) + "-parameter model from " + init.config +
           " (seed " + std::to_string(init.seed) + ") in " + dir.string());
  return dir.string();
}

// Writes `text` to `path` through a temporary file, fsynced, then renamed over it. Throws
// StoreError naming the file when any step fails (a full disk included).
void write_file_synced(const fs::path& path, const std::string& text) {
  fs::path tmp = path;
  tmp += ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  bool ok = f && std::fwrite(text.data(), 1, text.size(), f) == text.size() && std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
  int err = errno;
  if (f && std::fclose(f) != 0) ok = false, err = errno;
  std::error_code ec;
  if (ok) fs::rename(tmp, path, ec);
  if (!ok || ec) {
    fs::remove(tmp, ec);
    throw StoreError(path.string() + ": cannot write: " + std::strerror(ok ? ec.value() : err));
  }
}

// A resumed run's folder must be that run's: its run.json names the same run (uuid) and config
// hash; folders of runs made before uuids existed must hold a config.toml with the row's hash.
void check_run_folder(const fs::path& dir, int64_t id, const std::string& uuid, const std::string& config_hash,
                      const fs::path& store) {
  std::string who = "run " + std::to_string(id) + " of " + store.string();
  fs::path config = dir / "config.toml", ident = dir / "run.json";
  if (!fs::exists(config)) throw UsageError(who + ": its folder " + dir.string() + " has no config.toml");
  if (fs::exists(ident)) {
    std::ifstream in(ident);
    auto j = nlohmann::json::parse(in, nullptr, false);
    std::string got_uuid = j.is_object() ? j.value("uuid", "") : "", got_hash = j.is_object() ? j.value("config_hash", "") : "";
    if (got_uuid != uuid || got_hash != config_hash)
      throw UsageError(who + " (uuid " + (uuid.empty() ? "none" : uuid) + ", config " + config_hash.substr(0, 12) +
                       ") does not own its folder " + dir.string() + ": " + ident.string() + " names uuid " +
                       (got_uuid.empty() ? "none" : got_uuid) + ", config " + got_hash.substr(0, 12) +
                       " (another store's run, or a recreated store); not resuming from it");
  } else if (!uuid.empty()) {
    throw UsageError(who + ": its folder " + dir.string() + " has no run.json; not resuming from a folder of unknown identity");
  }
  std::ifstream in(config, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (sha256_hex(text) != config_hash)
    throw UsageError(who + ": " + config.string() + " has config hash " + sha256_hex(text).substr(0, 12) + ", the run " +
                     config_hash.substr(0, 12) + " (the folder holds another run's config); not resuming from it");
}

// Closes `run` as failed (and its stage, when stage_id > 0) unless it is no longer running. When
// the store write fails (a full disk, a broken connection), it is retried once on a fresh
// connection to the store, so a failed run is not left 'running'. Never throws: the caller is
// already reporting the failure; a close that fails twice is logged.
void close_run_failed(Store* store, const fs::path& store_path, int64_t run, int64_t stage_id,
                      const std::string& stage_error, const std::string& msg) {
  auto close = [&](Store& s) {
    auto rec = s.run_record(run);
    if (!rec || rec->status != "running") return;
    if (stage_id > 0) s.end_stage(stage_id, "failed", stage_error);
    s.end_run(run, "failed", msg);
  };
  std::string first;
  if (store) {
    try {
      close(*store);
      return;
    } catch (const std::exception& e) {
      first = e.what();
    }
    log_warn("run " + std::to_string(run) + ": marking it failed in the store failed (" + first +
             "); retrying on a fresh connection");
  }
  try {
    Store fresh(store_path);
    close(fresh);
  } catch (const std::exception& e) {
    log_line(LogLevel::kError, "", "run " + std::to_string(run) + " could not be marked failed in " +
                                       store_path.string() + ": " + e.what() +
                                       " (it stays 'running' until a later `warmup run` reaps it)");
  }
}

// What a resumed run brings: its finished stages (name -> model handed on) and the values
// `--set` changed in its config (check_resume_overrides).
struct ResumeState {
  std::map<std::string, std::string> finished_stages;
  std::vector<FlatValue> amended;
};

// A multi-process run: rank 0 tells the other ranks what to run once its run exists (the resolved
// config, the run's id and folder, the stages already finished), or why it will not run.
struct Handoff {
  ProcessGroupHost* pg = nullptr;  // null: one process
  bool sent = false;
  void send(const nlohmann::json& j) {
    if (!pg || sent) return;
    sent = true;
    pg->broadcast_bytes(j.dump(), 0);
  }
};

RunResult run_claimed(const RunOptions& opt, ExperimentConfig cfg, const fs::path& experiment_file,
                      std::optional<Store>& store, const ResumeState& resumed, SignalWatcher& signals,
                      std::atomic<int64_t>& current_run, Handoff& handoff);
RunResult run_follower(const RunOptions& opt, ProcessGroupHost& pg, SignalWatcher& signals);

// The class of a failure, so a follower rank exits as rank 0 does (2 for bad input, else 1).
std::string error_kind(const std::exception& e) {
  if (dynamic_cast<const ConfigError*>(&e)) return "config";
  if (dynamic_cast<const DataError*>(&e)) return "data";
  if (dynamic_cast<const UsageError*>(&e)) return "usage";
  if (dynamic_cast<const PluginError*>(&e)) return "plugin";
  return "other";
}

// Rank 0 failed: the other ranks learn why (the handoff, if they still wait for it; the store's
// failure record otherwise). Never throws: the failure being reported is what the user must see.
void tell_followers(Handoff& handoff, ProcessGroupHost& pg, const std::exception& e) noexcept {
  pg.report_failure(e.what());
  try {
    handoff.send({{"error", e.what()}, {"kind", error_kind(e)}});
  } catch (...) {
  }
}

// The stages still to run, each validated with what it will be given (see validate.h).
std::vector<std::string> validate_stages(const PluginRegistry& reg, const ExperimentConfig& cfg, const Instances& in,
                                         const std::map<std::string, std::string>& finished_stages,
                                         const fs::path& store) {
  std::vector<StageToValidate> todo;
  for (size_t i = 0; i < cfg.stages.size(); ++i) {
    const StageSpec& st = cfg.stages[i];
    if (finished_stages.count(st.name)) continue;
    StageToValidate s;
    s.plan.stage_name = st.name;
    for (const auto& t : st.tasks) s.plan.tasks.push_back({t, in.tasks.at(t).get()});
    for (const auto& [r, w] : st.rewards) s.plan.rewards.push_back({r, w, in.rewards.at(r).get()});
    for (const auto& t : st.teachers) s.plan.teachers.push_back({t, in.teachers.at(t).get()});
    s.plan.eval = st.eval;
    s.plan.model = cfg.model;
    if (cfg.model_init || (i > 0 && st.model_from != "experiment")) s.plan.model.path.clear();  // made by the run
    s.algorithm = in.algorithms[i].get();
    s.abi_minor = reg.find("algorithm", st.algorithm)->abi_minor;
    todo.push_back(std::move(s));
  }
  return validate_experiment(cfg, todo, store);
}

// Both entry points: `given` is an experiment already loaded; else options.experiment or the
// resumed run's stored config is loaded here.
RunResult run_impl(const RunOptions& opt, std::optional<ExperimentConfig> given) {
  // Signals are routed to the watcher before anything else starts threads (plugins, torch pools).
  // Until the run row exists a forced stop has nothing to close; afterwards it marks the run.
  std::atomic<int64_t> current_run{0};
  fs::path store_path = opt.store;
  SignalWatcher signals(opt.grace_seconds, [&current_run, store_path](int sig) {
    if (current_run == 0) return;
    try {
      Store s(store_path);
      s.end_run(current_run, "interrupted",
                std::string("stopped by ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") + " (forced)");
    } catch (...) {
    }
  });

  // torchrun's environment (or `warmup run --nproc-per-node`): join the ranks. Rank 0 runs the
  // run as one process would and records it; the others follow its handoff (run_follower).
  std::unique_ptr<ProcessGroupHost> pg;
  if (auto env = opt.distributed && !opt.dry_run ? DistEnv::from_environment() : std::nullopt; env) {
    set_log_rank(env->rank, env->world_size);
    pg = std::make_unique<ProcessGroupHost>(*env, dist_timeout_from_environment());
    log_line(LogLevel::kDebug, "", "rank " + std::to_string(env->rank) + " of " + std::to_string(env->world_size) +
                                       " joined the process group at " + env->master_addr + ":" +
                                       std::to_string(env->master_port));
    if (env->rank != 0) {
      try {
        return run_follower(opt, *pg, signals);
      } catch (const std::exception& e) {
        pg->report_failure(e.what());
        throw;
      }
    }
  }
  Handoff handoff{pg.get()};

  fs::path experiment_file = opt.experiment;
  std::vector<std::string> overrides = opt.overrides;
  std::optional<Store> store;
  std::map<std::string, std::string> finished_stages;  // resumed run: stage -> model it handed on
  bool claimed = false;  // a resumed run is ours: failures from here on close it as failed
  fs::path base_dir;  // a resumed run's relative paths are relative to its experiment file's folder
  std::vector<FlatValue> amended;  // values --set changes in a resumed run's config
  try {
  if (opt.resume) {
    store.emplace(opt.store);
    store->reap_dead_runs();
    int64_t id = *opt.resume;
    std::string who = "run " + std::to_string(id) + " of " + opt.store.string();
    std::string status, config_hash, host;
    std::optional<std::string> run_dir;
    int64_t pid = 0;
    {  // the read is finished before the claim (an open read would turn the UPDATE into SQLITE_BUSY)
      auto rec = store->run_record(id);
      if (!rec) throw UsageError("run " + std::to_string(id) + " not found in " + opt.store.string());
      status = rec->status, config_hash = rec->config_hash, pid = rec->pid, host = rec->host, run_dir = rec->run_dir;
    }
    if (status == "finished") throw UsageError(who + " already finished");
    if (status == "running") throw UsageError(who + " is running (pid " + std::to_string(pid) + " on " + host + ")");
    if (!run_dir) throw UsageError(who + " has no run folder (it failed before its first stage); start a new run");
    fs::path dir = *run_dir;
    check_run_folder(dir, id, store->run_uuid(id), config_hash, opt.store);
    experiment_file = dir / "config.toml";
    std::string config_file = store->run_row(id).value("config_file", "");
    base_dir = !config_file.empty() && fs::path(config_file).is_absolute() ? fs::path(config_file).parent_path() : dir;
    if (!opt.overrides.empty()) {
      std::set<std::string> started;
      for (const auto& row : store->stage_rows(id)) started.insert(row.value("name", ""));
      amended = check_resume_overrides(load_toml_with_bases(experiment_file), opt.overrides, base_dir, started, who);
    }
    // Claim it before any other work: of two resumes started together, one goes on. A dry run
    // only looks: it claims nothing.
    if (!opt.dry_run) {
      if (!store->resume_run(id))
        throw UsageError(who + " was claimed by another process just now (a concurrent --resume); not resuming it twice");
      claimed = true;
    }
    finished_stages = store->finished_stages(id);
  }
  } catch (const std::exception& e) {
    if (pg) tell_followers(handoff, *pg, e);
    throw;
  }
  try {
    ExperimentConfig cfg = given        ? std::move(*given)
                           : opt.resume ? experiment_from_tree(load_toml_with_bases(experiment_file), experiment_file,
                                                                base_dir, overrides)
                                        : load_experiment(experiment_file, overrides);
    return run_claimed(opt, std::move(cfg), experiment_file, store, {finished_stages, amended}, signals, current_run,
                       handoff);
  } catch (const std::exception& e) {
    if (pg) tell_followers(handoff, *pg, e);
    // A run of ours that failed anywhere (a resumed run's set-up, a store write between stages) is
    // not left 'running'.
    int64_t ours = claimed ? *opt.resume : current_run.load();
    if (ours > 0) close_run_failed(store ? &*store : nullptr, opt.store, ours, 0, "", e.what());
    throw;
  }
}

enum class FailureKind { other, config, data };  // bad input found while running: exit 2

struct StageOutcome {
  std::string error;  // "" = the stage finished
  FailureKind kind = FailureKind::other;
  std::string output_model;
  std::map<std::string, double> last_metrics;
};

// Runs one stage's algorithm in its context; an exception becomes the outcome's error.
StageOutcome run_stage(Store* store, Algorithm& algorithm, StageSetup setup) {
  StageOutcome out;
  HostStageContext ctx(store, std::move(setup));
  try {
    algorithm.run(ctx);
    ctx.flush();
  } catch (const std::exception& e) {
    out.error = e.what();
    if (out.error.empty()) out.error = "unknown error";
    if (dynamic_cast<const ConfigError*>(&e)) out.kind = FailureKind::config;
    else if (dynamic_cast<const DataError*>(&e)) out.kind = FailureKind::data;
  }
  progress_clear();  // a stage that failed or was stopped leaves no bar behind
  out.output_model = ctx.output_model();
  out.last_metrics = ctx.last_metrics();
  return out;
}

// A new run: its store row, params and plugins, and its folder (config.toml, run.json). A failure
// after the row exists marks the run failed and is rethrown.
std::pair<int64_t, fs::path> start_new_run(const RunOptions& opt, const ExperimentConfig& cfg, Store& store,
                                           const std::string& config_text, const toml::table& resolved,
                                           const std::vector<PluginUse>& used) {
  int64_t run = 0;
  fs::path run_dir;
  RunStart rs;
  rs.experiment = cfg.name;
  rs.name = opt.name;
  rs.config_toml = config_text;
  rs.config_hash = sha256_hex(config_text);
  rs.config_file = fs::absolute(opt.experiment.empty() ? cfg.file : opt.experiment).string();
  rs.overrides_json = nlohmann::json(opt.overrides).dump();
  rs.git_commit = build_info().git_commit;
  rs.warmup_version = build_info().version;
  rs.device = device_summary();
  rs.torch_version = build_info().torch_version;
  rs.seed = cfg.seed;
  rs.tags_json = nlohmann::json(cfg.tags).dump();
  run = store.create_run(rs);
  // Namespaced by the run's uuid: another store in this folder, or a recreated store, has its
  // own run 1 and never shares (or reuses) this folder.
  std::string uuid = store.run_uuid(run);
  run_dir = fs::absolute(store.path()).parent_path() / "runs" / (std::to_string(run) + "-" + uuid.substr(0, 8));
  try {
    if (fs::exists(run_dir)) throw StoreError(run_dir.string() + ": a run folder already exists there; not reusing it");
    fs::create_directories(run_dir);
    write_file_synced(run_dir / "config.toml", config_text);
    write_file_synced(run_dir / "run.json", nlohmann::json{{"store", fs::absolute(store.path()).string()},
                                                            {"run_id", run}, {"uuid", uuid},
                                                            {"config_hash", rs.config_hash}}.dump(2) + "\n");
    store.set_run_dir(run, run_dir.string());
    store.write_params(run, flatten(resolved));
    store.add_plugins(run, used);
  } catch (const std::exception& e) {
    store.end_run(run, "failed", e.what());
    throw;
  }
  return {run, run_dir};
}

// A resumed run whose config --set changed: the store row, config.toml and run.json say so.
void amend_resumed_run(Store& store, int64_t run, const fs::path& run_dir, const std::string& config_text,
                       const RunOptions& opt, const std::vector<FlatValue>& amended) {
  std::string hash = sha256_hex(config_text);
  fs::path ident = run_dir / "run.json", config = run_dir / "config.toml";
  nlohmann::json j = nlohmann::json::object();
  if (std::ifstream in(ident); in) j = nlohmann::json::parse(in, nullptr, false);
  if (!j.is_object()) j = nlohmann::json::object();
  const nlohmann::json old_ident = j;
  std::string old_config;
  if (std::ifstream in(config, std::ios::binary); in) old_config.assign(std::istreambuf_iterator<char>(in), {});
  j["config_hash"] = hash;
  // The folder's files are replaced (each by an atomic rename) inside the store's transaction: a
  // failure rolls the store back and puts the old files back, so store and folder keep agreeing.
  store.amend_run_config(run, config_text, hash, opt.overrides, amended, [&] {
    try {
      write_file_synced(config, config_text);
      write_file_synced(ident, j.dump(2) + "\n");
    } catch (...) {
      try {
        write_file_synced(config, old_config);
        write_file_synced(ident, old_ident.dump(2) + "\n");
      } catch (...) {
      }
      throw;
    }
  });
  std::string keys;
  for (const auto& f : amended) keys += (keys.empty() ? "" : ", ") + f.key + " = " + f.text;
  log_info("run " + std::to_string(run) + ": config amended on resume: " + keys);
}

// What the stage loop needs: the run as rank 0 (or a one-process run) made it, or as a follower
// rank was told (store null: nothing is recorded there).
struct StageLoop {
  const RunOptions& opt;
  const ExperimentConfig& cfg;
  Instances& in;
  Store* store;
  int64_t run;
  fs::path run_dir;
  const std::map<std::string, std::string>& finished_stages;
  SignalWatcher& signals;
  Distributed* dist;
};

// Runs the stages not yet finished, in order; `model` is the experiment's model (its path made by
// [model] init already).
RunResult run_stages(StageLoop& L, ModelSpec model, RunResult& result) {
  auto& finals = result.final_metrics;
  Store* store = L.store;
  const auto& cfg = L.cfg;
  const auto& opt = L.opt;
  const auto& finished_stages = L.finished_stages;
  auto& signals = L.signals;
  const int64_t run = L.run;
  auto interrupted = [&] {
    result.status = "interrupted";
    result.exit_code = 128 + (signals.signal_number() ? signals.signal_number() : SIGTERM);
    return result;
  };
  // One GPU per local rank (torchrun's convention): "cuda" and "auto" (on a machine with CUDA)
  // become cuda:LOCAL_RANK.
  if (L.dist && (model.device == "cuda" || (model.device == "auto" && torch::cuda::is_available())))
    model.device = "cuda:" + std::to_string(L.dist->local_rank());
  const std::string experiment_model = model.path;
  std::map<std::string, std::string> stage_models;  // stage -> the model it ended with
  std::shared_ptr<Policy> policy;  // loaded by the first stage that asks; kept while the path holds
  auto use_model = [&](const std::string& path) {
    if (path == model.path) return;
    model.path = path;  // later stages load this model
    policy.reset();
  };
  for (size_t i = 0; i < cfg.stages.size(); ++i) {
    const StageSpec& st = cfg.stages[i];
    if (!st.model_from.empty())
      use_model(st.model_from == "experiment" ? experiment_model : stage_models.at(st.model_from));
    if (auto f = finished_stages.find(st.name); f != finished_stages.end()) {
      if (!f->second.empty()) use_model(f->second);
      stage_models[st.name] = model.path;
      continue;
    }
    StageSetup setup;
    setup.run_id = run;
    setup.stage_name = st.name;
    setup.seed = cfg.seed;
    for (const auto& t : st.tasks) setup.tasks.push_back({t, L.in.tasks.at(t).get()});
    for (const auto& [r, w] : st.rewards) setup.rewards.push_back({r, w, L.in.rewards.at(r).get()});
    for (const auto& t : st.teachers) setup.teachers.push_back({t, L.in.teachers.at(t).get()});
    setup.eval = st.eval;
    setup.model = model;
    setup.run_dir = L.run_dir;
    setup.resuming = opt.resume.has_value();
    setup.stop_requested = [&signals] { return signals.stop_requested(); };
    setup.policy = &policy;
    setup.distributed = L.dist;
    int64_t stage_id = store ? store->begin_stage(run, int(i), st.name, st.algorithm) : 0;
    log_info("stage " + std::to_string(i + 1) + "/" + std::to_string(cfg.stages.size()) + " '" +
             st.name + "' (" + st.algorithm + ")");
    auto [error, kind, output_model, last] = run_stage(store, *L.in.algorithms[i], std::move(setup));
    if (!error.empty()) {
      std::string msg = "stage '" + st.name + "' (" + st.algorithm + ") failed: " + error;
      if (store) {
        close_run_failed(store, opt.store, run, stage_id, error, msg);
        msg += " [run " + std::to_string(run) + " marked failed]";
      }
      if (kind == FailureKind::config) throw ConfigError(msg);
      if (kind == FailureKind::data) throw DataError(msg);
      throw std::runtime_error(msg);
    }
    // Several ranks: the stage's algorithm stopped on every rank when any was signalled (it agrees on
    // that), so every rank closes the stage the same way, signalled here or not.
    bool stop = signals.stop_requested();
    if (L.dist && L.dist->world_size() > 1) stop = all_reduce_sum(*L.dist, {stop ? 1.0 : 0.0})[0] > 0;
    if (stop) {
      int sig = signals.signal_number();
      std::string why = sig ? std::string("stopped by ") + (sig == SIGINT ? "SIGINT" : "SIGTERM")
                            : std::string("stopped: another rank was signalled");
      if (!store) return interrupted();
      store->end_stage(stage_id, "interrupted", why);
      store->end_run(run, "interrupted", why + " during stage '" + st.name + "'");
      log_warn("run " + std::to_string(run) + " interrupted; resume with: warmup run --resume " +
               std::to_string(run) + " --store " + opt.store.string());
      return interrupted();
    }
    if (store) store->end_stage(stage_id, "finished", "", output_model);
    if (!output_model.empty()) use_model(output_model);
    stage_models[st.name] = model.path;
    finals.emplace_back(st.name, std::move(last));
  }
  if (store) store->end_run(run, "finished", "");
  result.status = "finished";
  return result;
}

RunResult run_claimed(const RunOptions& opt, ExperimentConfig cfg, const fs::path& experiment_file,
                      std::optional<Store>& store, const ResumeState& resumed, SignalWatcher& signals,
                      std::atomic<int64_t>& current_run, Handoff& handoff) {
  const auto& finished_stages = resumed.finished_stages;
  PluginRegistry reg;
  reg.scan(plugin_search_path(opt.plugin_dirs, cfg.plugin_paths));
  for (const auto& f : reg.failures())
    log_line(LogLevel::kDebug, "", "plugin library " + f.library.string() + " rejected: " + f.reason);
  HostImpl host;
  Instances in = create_all(reg, host, cfg);
  toml::table resolved = resolve(cfg, host);
  std::string config_text = to_toml(resolved);

  RunResult result;
  result.resolved_toml = config_text;
  result.problems = validate_stages(reg, cfg, in, finished_stages, opt.store);
  if (handoff.pg && handoff.pg->world_size() > 1)
    for (const auto& st : cfg.stages)
      if (!finished_stages.count(st.name) && reg.find("algorithm", st.algorithm)->abi_minor < 9)
        result.problems.push_back("stages." + st.name + ": algorithm '" + st.algorithm + "' (" +
                                  reg.find("algorithm", st.algorithm)->library.string() +
                                  ") was built with plugin ABI 1." +
                                  std::to_string(reg.find("algorithm", st.algorithm)->abi_minor) +
                                  ", before multi-process runs (1.9): rebuild it, or run with one process");
  if (opt.dry_run) {
    result.status = "dry_run";
    result.exit_code = result.problems.empty() ? 0 : 2;
    return result;
  }
  if (!result.problems.empty()) throw ConfigError(problems_text(result.problems));

  if (!store) {
    store.emplace(opt.store);
    store->reap_dead_runs();
  }
  std::map<std::string, std::string> lib_sha;
  for (auto& u : in.used) {
    if (!lib_sha.count(u.library_path)) lib_sha[u.library_path] = sha256_path(u.library_path);
    u.library_sha256 = lib_sha[u.library_path];
  }

  int64_t run = 0;
  fs::path run_dir;
  if (opt.resume) {
    run = *opt.resume;  // claimed above
    run_dir = experiment_file.parent_path();
    if (!resumed.amended.empty()) amend_resumed_run(*store, run, run_dir, config_text, opt, resumed.amended);
    log_info("resuming run " + std::to_string(run) + " (" + std::to_string(finished_stages.size()) +
             " finished stages skipped)");
  } else {
    std::tie(run, run_dir) = start_new_run(opt, cfg, *store, config_text, resolved, in.used);
    if (opt.on_run_folder) opt.on_run_folder(run, run_dir);
    log_info("run " + std::to_string(run) + " of experiment '" + cfg.name + "' started (" +
             std::to_string(cfg.stages.size()) + " stages, store " + opt.store.string() + ")");
  }

  current_run = run;
  result.run_id = run;
  result.run_dir = run_dir;
  auto interrupted = [&] {
    result.status = "interrupted";
    result.exit_code = 128 + signals.signal_number();
    return result;
  };
  if (signals.stop_requested()) {
    store->end_run(run, "interrupted", "stopped by a signal before the first stage");
    handoff.send({{"stopped", true}});
    return interrupted();
  }

  ModelSpec model = cfg.model;
  if (cfg.model_init) model.path = init_model(*cfg.model_init, run_dir, cfg.model.dtype);
  if (handoff.pg) {
    handoff.pg->set("run", fs::absolute(opt.store).string() + "\n" + std::to_string(run));
    handoff.send({{"config", config_text}, {"base_dir", cfg.base_dir.string()}, {"run", run},
                  {"run_dir", run_dir.string()}, {"model", model.path}, {"finished", finished_stages},
                  {"resuming", opt.resume.has_value()}});
  }
  StageLoop loop{opt, cfg, in, &*store, run, run_dir, finished_stages, signals, handoff.pg};
  return run_stages(loop, model, result);
}


// A rank other than 0: waits for rank 0's handoff, then runs the same stages on the same config
// without a store (rank 0 records the run).
RunResult run_follower(const RunOptions& opt, ProcessGroupHost& pg, SignalWatcher& signals) {
  nlohmann::json h = nlohmann::json::parse(pg.broadcast_bytes("", 0));
  RunResult result;
  result.follower = true;
  if (h.contains("error")) {
    std::string msg = "rank 0 did not start the run: " + h["error"].get<std::string>(), kind = h.value("kind", "");
    if (kind == "config") throw ConfigError(msg);
    if (kind == "data") throw DataError(msg);
    if (kind == "usage") throw UsageError(msg);
    if (kind == "plugin") throw PluginError(msg);
    throw std::runtime_error(msg);
  }
  if (h.value("stopped", false)) {
    result.status = "interrupted";
    result.exit_code = 128 + (signals.signal_number() ? signals.signal_number() : SIGTERM);
    return result;
  }
  fs::path run_dir = h.at("run_dir").get<std::string>();
  ExperimentConfig cfg = parse_experiment(h.at("config").get<std::string>(), (run_dir / "config.toml").string(),
                                          h.at("base_dir").get<std::string>(), {});
  std::map<std::string, std::string> finished = h.at("finished").get<std::map<std::string, std::string>>();
  RunOptions o = opt;
  if (h.at("resuming").get<bool>() && !o.resume) o.resume = h.at("run").get<int64_t>();
  PluginRegistry reg;
  reg.scan(plugin_search_path(o.plugin_dirs, cfg.plugin_paths));
  HostImpl host;
  Instances in = create_all(reg, host, cfg);
  result.run_id = h.at("run").get<int64_t>();
  result.run_dir = run_dir;
  ModelSpec model = cfg.model;
  model.path = h.at("model").get<std::string>();
  StageLoop loop{o, cfg, in, nullptr, result.run_id, run_dir, finished, signals, &pg};
  return run_stages(loop, model, result);
}

}  // namespace

std::string problems_text(const std::vector<std::string>& problems) {
  std::string text = std::to_string(problems.size()) + (problems.size() == 1 ? " problem" : " problems") +
                     " found before the run started (nothing ran):";
  for (const auto& p : problems) text += "\n  " + p;
  return text;
}

RunResult run_experiment(const RunOptions& opt) { return run_impl(opt, std::nullopt); }

RunResult run_experiment(ExperimentConfig config, const RunOptions& opt) {
  if (opt.resume) throw UsageError("run_experiment: a resumed run takes its config from the store");
  return run_impl(opt, std::move(config));
}

void print_run_summary(const RunResult& r, const fs::path& store, std::ostream& out) {
  TextTable t({"stage", "metric", "value"});
  for (const auto& [stage, m] : r.final_metrics)
    for (const auto& [k, v] : m) t.add({stage, k, format_number(v)});
  if (!t.empty()) t.print(out);
  out << "run " << r.run_id << " finished; store " << store.string() << " (warmup runs show " << r.run_id << ")\n";
}

}  // namespace warmup
