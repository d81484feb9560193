// `warmup runs [list|show|compare|export]`: reading the run store.
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <map>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "cli/options_util.h"
#include "report/export.h"
#include "store/store.h"
#include "util/errors.h"
#include "util/log.h"
#include "util/process.h"
#include "util/table.h"

namespace warmup::cli {
namespace {

using nlohmann::json;

std::string cell(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number()) return format_number(v.get<double>());
  return v.dump();
}

std::string metric_value(const json& m) {
  return m["flag"].is_null() ? cell(m["value"]) : m["flag"].get<std::string>();
}

// The run's row plus what `what` names: "all" (stages, params, metrics, artifacts, datasets,
// plugins, samples), "summary" (all but the samples: show, compare), or one of "metrics",
// "samples", "params".
json run_json(Store& store, int64_t run, const std::string& what) {
  static const std::set<std::string> kWhat = {"all", "summary", "metrics", "samples", "params"};
  if (!kWhat.count(what))
    throw UsageError("--what must be metrics, samples, params or all, got '" + what + "'");
  const bool all = what == "all" || what == "summary";
  json j = store.run_row(run);
  if (all) j["stages"] = store.stage_rows(run);
  if (all || what == "params") {
    j["params"] = json::object();
    for (const auto& p : store.param_rows(run)) j["params"][p["key"].get<std::string>()] = p["value"];
  }
  if (all || what == "metrics") j["metrics"] = store.metric_rows(run);
  if (all) {
    j["artifacts"] = store.artifact_rows(run);
    j["datasets"] = store.dataset_rows(run);
    j["plugins"] = store.plugin_rows(run);
  }
  if (what == "all" || what == "samples") {
    j["samples"] = store.sample_rows(run);
    for (auto& s : j["samples"]) s["rewards"] = json::parse(s["rewards"].get<std::string>());
  }
  return j;
}

int list(Store& store, const po::variables_map& vm) {
  TextTable t({"id", "experiment", "name", "status", "started", "duration", "stages", "samples", "seed", "tags"});
  for (const auto& r : store.list_runs(vm["status"].as<std::string>(), vm["experiment"].as<std::string>(),
                                       vm["limit"].as<int64_t>())) {
    double end = r.ended_at ? *r.ended_at : unix_now();
    t.add({std::to_string(r.id), r.experiment, r.name, r.status, format_time(r.started_at),
           format_duration(end - r.started_at) + (r.ended_at ? "" : "+"), std::to_string(r.finished_stages),
           std::to_string(r.samples), std::to_string(r.seed), r.tags});
  }
  if (t.empty()) std::cout << "no runs in " << store.path().string() << "\n";
  else t.print(std::cout);
  return 0;
}

int show(Store& store, int64_t run) {
  json j = run_json(store, run, "summary");
  double start = j["started_at"].get<double>();
  double end = j["ended_at"].is_null() ? unix_now() : j["ended_at"].get<double>();
  std::cout << "run " << run << "  " << cell(j["name"]) << "  [" << cell(j["status"]) << "]\n"
            << "  experiment  " << cell(j["experiment"]) << "\n"
            << "  started     " << format_time(start) << "  (" << format_duration(end - start) << ")\n"
            << "  config      " << cell(j["config_file"]) << "  sha256 " << cell(j["config_hash"]).substr(0, 12) << "\n"
            << "  overrides   " << cell(j["overrides"]) << "\n"
            << "  build       warmup " << cell(j["warmup_version"]) << " git " << cell(j["git_commit"])
            << ", torch " << cell(j["torch_version"]) << "\n"
            << "  host        " << cell(j["host"]) << " pid " << cell(j["pid"]) << ", " << cell(j["device"]) << "\n"
            << "  seed        " << cell(j["seed"]) << "   tags " << cell(j["tags"]) << "\n"
            << "  run dir     " << cell(j["run_dir"]) << "\n";
  if (!j["error"].is_null()) std::cout << "  error       " << cell(j["error"]) << "\n";

  TextTable stages({"#", "stage", "algorithm", "status", "duration", "error"});
  for (const auto& s : j["stages"]) {
    double e = s["ended_at"].is_null() ? unix_now() : s["ended_at"].get<double>();
    stages.add({cell(s["idx"]), cell(s["name"]), cell(s["algorithm"]), cell(s["status"]),
                format_duration(e - s["started_at"].get<double>()), s["error"].is_null() ? "" : cell(s["error"])});
  }
  std::cout << "\nstages\n";
  stages.print(std::cout);

  TextTable metrics({"stage", "metric", "step", "value"});
  for (const auto& m : store.latest_metric_rows(run))
    metrics.add({cell(m["stage"]), cell(m["key"]), cell(m["step"]), metric_value(m)});
  std::cout << "\nmetrics (latest step)\n";
  if (metrics.empty()) std::cout << "  none\n"; else metrics.print(std::cout);

  if (!j["datasets"].empty()) {
    TextTable d({"stage", "task", "split", "count", "digest"});
    for (const auto& x : j["datasets"])
      d.add({cell(x["stage"]), cell(x["task"]), cell(x["split"]), cell(x["count"]), cell(x["digest"]).substr(0, 16)});
    std::cout << "\ndatasets\n";
    d.print(std::cout);
  }
  if (!j["artifacts"].empty()) {
    TextTable a({"stage", "name", "bytes", "sha256", "path"});
    for (const auto& x : j["artifacts"])
      a.add({cell(x["stage"]), cell(x["name"]), cell(x["bytes"]), cell(x["sha256"]).substr(0, 16), cell(x["path"])});
    std::cout << "\nartifacts\n";
    a.print(std::cout);
  }
  TextTable p({"kind", "name", "version", "library"});
  for (const auto& x : j["plugins"]) p.add({cell(x["kind"]), cell(x["name"]), cell(x["plugin_version"]), cell(x["library_path"])});
  std::cout << "\nplugins\n";
  p.print(std::cout);
  std::cout << "\nparams (" << j["params"].size() << ")\n";
  for (const auto& [k, v] : j["params"].items()) std::cout << "  " << k << " = " << cell(v) << "\n";
  return 0;
}

int compare(Store& store, const std::vector<int64_t>& runs, bool all_params) {
  std::vector<json> js;
  for (int64_t r : runs) js.push_back(run_json(store, r, "summary"));
  std::vector<std::string> header = {""};
  for (int64_t r : runs) header.push_back("run " + std::to_string(r));
  TextTable t(header);
  auto row = [&](const std::string& label, auto get) {
    std::vector<std::string> r = {label};
    for (const auto& j : js) r.push_back(get(j));
    t.add(r);
  };
  row("experiment", [](const json& j) { return cell(j["experiment"]); });
  row("status", [](const json& j) { return cell(j["status"]); });
  std::set<std::string> keys;
  for (const auto& j : js) for (const auto& [k, v] : j["params"].items()) keys.insert(k);
  for (const auto& k : keys) {
    std::set<std::string> values;
    for (const auto& j : js) values.insert(j["params"].contains(k) ? j["params"][k].dump() : "-");
    if (values.size() > 1 || all_params)
      row(k, [&](const json& j) { return j["params"].contains(k) ? cell(j["params"][k]) : std::string("-"); });
  }
  std::map<std::string, std::vector<std::string>> metrics;  // "stage/key" -> value per run
  for (size_t i = 0; i < runs.size(); ++i)
    for (const auto& m : store.latest_metric_rows(runs[i])) {
      auto& v = metrics[cell(m["stage"]) + ": " + cell(m["key"])];
      v.resize(runs.size(), "-");
      v[i] = metric_value(m);
    }
  for (auto& [k, v] : metrics) {
    v.resize(runs.size(), "-");
    std::vector<std::string> r = {k};
    r.insert(r.end(), v.begin(), v.end());
    t.add(r);
  }
  t.print(std::cout);
  return 0;
}

std::string csv_field(const json& v) {
  std::string s = v.is_string() ? v.get<std::string>() : v.is_null() ? "" : v.dump();
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

// Deletes runs with their run folders, after a confirmation on a terminal (or --yes).
int delete_runs(const std::filesystem::path& path, const std::vector<int64_t>& runs, bool yes) {
  Store store(path);  // writable: a read-only store cannot lose runs
  store.reap_dead_runs();
  std::vector<std::pair<int64_t, std::string>> doomed;  // id, run folder
  for (int64_t id : runs) {
    auto rec = store.run_record(id);
    if (!rec) throw UsageError("run " + std::to_string(id) + " not found in " + path.string());
    if (rec->status == "running")
      throw UsageError("run " + std::to_string(id) + " is running (pid " + std::to_string(rec->pid) + " on " + rec->host +
                       "): stop it first");
    doomed.emplace_back(id, rec->run_dir.value_or(""));
    std::cout << "run " << id << "  " << rec->status << (doomed.back().second.empty() ? "" : "  " + doomed.back().second)
              << "\n";
  }
  if (!yes) {
    if (!::isatty(STDIN_FILENO))
      throw UsageError("warmup runs delete: not a terminal, nothing deleted; pass --yes to delete without asking");
    std::cout << "delete " << doomed.size() << " run(s) and their folders? [y/N] " << std::flush;
    std::string answer;
    std::getline(std::cin, answer);
    if (answer != "y" && answer != "Y" && answer != "yes") {
      std::cout << "nothing deleted\n";
      return 1;
    }
  }
  for (const auto& [id, dir] : doomed) {
    if (!store.delete_run(id)) throw UsageError("run " + std::to_string(id) + " started running again; not deleted");
    std::error_code ec;
    if (!dir.empty()) std::filesystem::remove_all(dir, ec);
    if (ec) log_warn("run " + std::to_string(id) + " deleted from the store; its folder " + dir + " not removed: " + ec.message());
    else log_info("deleted run " + std::to_string(id) + (dir.empty() ? "" : " and " + dir));
  }
  return 0;
}

int export_run(Store& store, int64_t run, const std::string& format, const std::string& what,
               const std::string& out_path) {
  if (format == "mlflow") {
    if (out_path.empty()) throw UsageError("--format mlflow writes a folder: give --out DIR (e.g. mlruns)");
    if (what != "all") throw UsageError("--format mlflow exports the whole run: leave out --what");
    auto dir = export_mlflow(store, run, out_path);
    log_info("exported run " + std::to_string(run) + " to " + dir.string() +
             " (MLflow file store: MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri " + out_path + ")");
    return 0;
  }
  std::ofstream file;
  if (!out_path.empty()) {
    file.open(out_path);
    if (!file) throw UsageError(out_path + ": cannot write");
  }
  std::ostream& os = out_path.empty() ? std::cout : file;
  if (format == "json") {
    if (what == "summary") throw UsageError("--what must be metrics, samples, params or all, got 'summary'");
    os << run_json(store, run, what).dump(2) << "\n";
    return 0;
  }
  if (format == "jsonl") {
    export_jsonl(store, run, what, os);
    return 0;
  }
  if (format != "csv") throw UsageError("--format must be csv, json, jsonl or mlflow, got '" + format + "'");
  json data;
  std::vector<std::string> cols;
  if (what == "samples") {
    data = store.sample_rows(run);
    cols = {"stage", "step", "task", "example_id", "prompt", "completion", "completion_tokens", "finish_reason", "reward", "rewards", "correct", "advantage"};
  } else if (what == "params") {
    data = store.param_rows(run);
    cols = {"key", "value", "type"};
  } else if (what == "metrics") {
    data = store.metric_rows(run);
    cols = {"stage", "key", "step", "value", "flag", "wall_time"};
  } else if (what == "all") {
    throw UsageError("--format csv writes one table: give --what metrics, samples or params (or --format json for all)");
  } else {
    throw UsageError("--what must be metrics, samples or params for CSV, got '" + what + "'");
  }
  std::string sep;
  for (const auto& c : cols) os << sep << c, sep = ",";
  os << "\n";
  for (const auto& r : data) {
    sep.clear();
    for (const auto& c : cols) os << sep << csv_field(r[c]), sep = ",";
    os << "\n";
  }
  return 0;
}

// Column headers without the part every selected key shares: "eval/kk/n_people=3/accuracy" and
// "eval/kk/n_people=4/accuracy" become "n_people=3" and "n_people=4" (cut at '/' boundaries).
std::vector<std::string> short_headers(const std::vector<std::string>& keys) {
  if (keys.size() < 2) return keys;
  auto parts = [](const std::string& k) {
    std::vector<std::string> p;
    for (size_t b = 0;;) {
      size_t e = k.find('/', b);
      p.push_back(k.substr(b, e == std::string::npos ? std::string::npos : e - b));
      if (e == std::string::npos) return p;
      b = e + 1;
    }
  };
  std::vector<std::vector<std::string>> ps;
  size_t shortest = SIZE_MAX;
  for (const auto& k : keys) ps.push_back(parts(k)), shortest = std::min(shortest, ps.back().size());
  size_t pre = 0, suf = 0;
  auto same = [&](auto at) {
    for (const auto& p : ps) if (at(p) != at(ps[0])) return false;
    return true;
  };
  while (pre + 1 < shortest && same([&](const auto& p) { return p[pre]; })) ++pre;
  while (pre + suf + 1 < shortest && same([&](const auto& p) { return p[p.size() - 1 - suf]; })) ++suf;
  std::vector<std::string> out;
  for (const auto& p : ps) {
    std::string h;
    for (size_t i = pre; i < p.size() - suf; ++i) h += (h.empty() ? "" : "/") + p[i];
    out.push_back(h);
  }
  return out;
}

// `warmup runs table`: one row per (run, stage) with metrics matching the patterns, one column per
// metric key (its last value), e.g. accuracy per number of people for each arm of an experiment.
int table(Store& store, const std::vector<int64_t>& runs, const std::string& patterns) {
  std::vector<std::string> globs;
  for (size_t b = 0; b <= patterns.size();) {
    size_t e = patterns.find(',', b);
    if (e == std::string::npos) e = patterns.size();
    if (e > b) globs.push_back(patterns.substr(b, e - b));
    b = e + 1;
  }
  if (globs.empty()) throw UsageError("warmup runs table: --metrics needs at least one pattern");
  std::vector<std::string> keys;                                         // column order: first seen
  std::vector<std::pair<std::string, std::map<std::string, std::string>>> rows_;  // label -> key -> value
  for (int64_t run : runs) {
    json metrics = store.latest_metric_rows(run);  // ordered by stage, key
    json stages = store.stage_rows(run);
    // Keys matching each pattern, in pattern order (one query per pattern, not per metric).
    std::vector<std::string> matched;
    for (const auto& g : globs) {
      for (const auto& key : store.metric_keys(run, g))
        if (std::find(matched.begin(), matched.end(), key) == matched.end()) matched.push_back(key);
    }
    for (const auto& st : stages) {
      std::string stage = st["name"].get<std::string>();
      std::map<std::string, std::string> vals;
      for (const auto& key : matched)
        for (const auto& m : metrics) {
          if (m["stage"] != stage || m["key"] != key) continue;
          vals[key] = metric_value(m);
          if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(key);
        }
      if (!vals.empty())
        rows_.emplace_back(runs.size() > 1 ? "run " + std::to_string(run) + " " + stage : stage, std::move(vals));
    }
  }
  if (rows_.empty()) throw UsageError("warmup runs table: no metric matches '" + patterns + "'");
  std::vector<std::string> header = {runs.size() > 1 ? "run stage" : "stage"};
  for (const auto& h : short_headers(keys)) header.push_back(h);
  TextTable t(header);
  for (const auto& [label, vals] : rows_) {
    std::vector<std::string> r = {label};
    for (const auto& k : keys) r.push_back(vals.count(k) ? vals.at(k) : "-");
    t.add(std::move(r));
  }
  t.print(std::cout);
  return 0;
}

}  // namespace

int cmd_runs(const Args& args) {
  po::options_description opts("options");
  std::vector<std::string> targets;
  opts.add_options()
      ("action", po::value<std::string>()->default_value("list"), "list | show | compare | table | export | delete")
      ("runs", po::value<std::vector<std::string>>(&targets), "run ids (or 'latest')")
      ("store", po::value<std::string>()->default_value(default_store()), kStoreHelp)
      ("limit", po::value<int64_t>()->default_value(50), "list: at most N runs, newest first")
      ("status", po::value<std::string>()->default_value(""), "list: only runs with this status")
      ("experiment", po::value<std::string>()->default_value(""), "list: only this experiment")
      ("all-params", "compare: show params that are equal too")
      ("metrics", po::value<std::string>()->default_value("eval/*"),
       "table: metric keys to show, glob patterns separated by commas")
      ("format", po::value<std::string>()->default_value("json"),
       "export: csv | json | jsonl (one object per line) | mlflow (MLflow's file store under --out DIR)")
      ("what", po::value<std::string>()->default_value("all"), "export: metrics | samples | params | all")
      ("out,o", po::value<std::string>()->default_value(""), "export: write to FILE instead of stdout")
      ("yes,y", "delete: do not ask");
  po::positional_options_description pos;
  pos.add("action", 1).add("runs", -1);
  po::variables_map vm;
  if (!parse(args,
             "usage: warmup runs [list] [--store DB] [--status S] [--experiment NAME] [--limit N]\n"
             "       warmup runs show RUN\n"
             "       warmup runs compare RUN RUN...\n"
             "       warmup runs table RUN... [--metrics 'eval/*/accuracy,...']  (rows: stages, columns: metrics)\n"
             "       warmup runs export RUN --format csv|json|jsonl [--what metrics|samples|params|all] [--out FILE]\n"
             "       warmup runs export RUN... --format mlflow --out DIR   (MLflow's file store layout, e.g. DIR = mlruns)\n"
             "       warmup runs delete RUN... [--yes]   (with their run folders)\n"
             "RUN is a run id or 'latest'.",
             opts, vm, &pos))
    return 0;
  std::string action = vm["action"].as<std::string>();
  std::filesystem::path path = vm["store"].as<std::string>();
  if (!std::filesystem::exists(path)) throw UsageError(path.string() + ": no such store (run an experiment first)");
  if (action == "delete") {
    if (targets.empty()) throw UsageError("warmup runs delete: expected one or more RUNs");
    std::vector<int64_t> runs;
    {
      Store reader(path, Store::ReadOnly{});
      for (const auto& t : targets) runs.push_back(reader.resolve_run(t));
    }
    return delete_runs(path, runs, vm.count("yes") > 0);
  }
  // Every action only reads: a store on a read-only file, folder or medium is opened read-only
  // (then runs whose process died are shown as their row says, not reaped).
  std::unique_ptr<Store> opened;
  try {
    opened = std::make_unique<Store>(path);
    opened->reap_dead_runs();
  } catch (const StoreError&) {
    opened = std::make_unique<Store>(path, Store::ReadOnly{});
  }
  Store& store = *opened;
  std::vector<int64_t> runs;
  for (const auto& t : targets) runs.push_back(store.resolve_run(t));
  if (action == "list") {
    static const std::set<std::string> kStatuses = {"", "running", "finished", "failed", "interrupted"};
    if (!kStatuses.count(vm["status"].as<std::string>()))
      throw UsageError("--status '" + vm["status"].as<std::string>() + "': a run is running, finished, failed or interrupted");
    return list(store, vm);
  }
  if (action == "show") {
    if (runs.size() != 1) throw UsageError("warmup runs show: expected one RUN");
    return show(store, runs[0]);
  }
  if (action == "compare") {
    if (runs.size() < 2) throw UsageError("warmup runs compare: expected two or more RUNs");
    return compare(store, runs, vm.count("all-params") > 0);
  }
  if (action == "table") {
    if (runs.empty()) throw UsageError("warmup runs table: expected one or more RUNs");
    return table(store, runs, vm["metrics"].as<std::string>());
  }
  if (action == "export") {
    if (runs.empty()) throw UsageError("warmup runs export: expected a RUN");
    const std::string format = vm["format"].as<std::string>();
    if (format == "mlflow") {  // one folder holds many runs
      for (int64_t r : runs) export_run(store, r, format, vm["what"].as<std::string>(), vm["out"].as<std::string>());
      return 0;
    }
    if (runs.size() != 1) throw UsageError("warmup runs export: expected one RUN (several with --format mlflow)");
    return export_run(store, runs[0], vm["format"].as<std::string>(), vm["what"].as<std::string>(),
                      vm["out"].as<std::string>());
  }
  throw UsageError("warmup runs: unknown action '" + action + "' (list, show, compare, table, export, delete)");
}

}  // namespace warmup::cli
