// Exports of a run for other trackers (export.h).
#include "report/export.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "report/report_data.h"
#include "store/store.h"
#include "util/errors.h"
#include "util/sha256.h"

namespace warmup {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr size_t kMlflowMaxParamValue = 6000;  // mlflow/utils/validation.py MAX_PARAM_VAL_LENGTH

void write_text(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream f(path, std::ios::binary);
  f << text;
  if (!f) throw UsageError(path.string() + ": cannot write");
}

// A YAML scalar: JSON's double-quoted strings are YAML too (ASCII only: YAML folds U+2028).
std::string yaml_string(const std::string& s) { return json(s).dump(-1, ' ', true, json::error_handler_t::replace); }

// `s` with each invalid UTF-8 sequence replaced by U+FFFD (MLflow reads its files as UTF-8).
std::string valid_utf8(const std::string& s) {
  return json::parse(json(s).dump(-1, ' ', false, json::error_handler_t::replace)).get<std::string>();
}

// A file name for `full` not yet in `owner` (or owned by `full`): MLflow's characters, and
// "_2", "_3"... when two keys map to one name, or when a name would be both a file and a folder
// ("m/x" and "m/x/y"): the file store cannot hold both.
std::string unique_name(const std::string& full, std::map<std::string, std::string>& owner) {
  for (const auto& [given, who] : owner)
    if (who == full) return given;  // each row of a metric to the same file
  std::string name = mlflow_name(full);
  for (int n = 2;; ++n) {
    if (n > 10000) throw std::runtime_error("cannot name " + full + " in the MLflow export");
    bool changed = false;
    for (const auto& [other, who] : owner) {
      if (who == full) continue;
      if (name.starts_with(other + "/")) {  // under a file: rename the folder part
        name = other + "_" + std::to_string(n) + name.substr(other.size());
        changed = true;
        break;
      }
      if (other == name || other.starts_with(name + "/")) {  // the same file, or a folder
        name = name + "_" + std::to_string(n);
        changed = true;
        break;
      }
    }
    if (!changed) break;
  }
  owner[name] = full;
  return name;
}

// A uuid as the store has it (hex digits and dashes), or "" for anything else.
std::string clean_uuid(const std::string& u) {
  if (u.empty() || u.find_first_not_of("0123456789abcdefABCDEF-") != std::string::npos) return "";
  std::string out = u;
  std::erase(out, '-');
  return out;
}

long long ms(double unix_s) { return std::llround(unix_s * 1000.0); }

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// A param or tag value as MLflow stores it: strings as they are, everything else as JSON.
std::string value_text(const json& v) {
  return valid_utf8(v.is_string() ? v.get<std::string>() : v.dump(-1, ' ', false, json::error_handler_t::replace));
}

// MLflow's RunStatus numbers (mlflow/protos/service.proto).
int mlflow_status(const std::string& status) {
  if (status == "running") return 1;
  if (status == "finished") return 3;
  if (status == "failed") return 4;
  return 5;  // interrupted: KILLED
}


}  // namespace

std::string mlflow_name(const std::string& key) {
  std::string out;
  for (char c : key) {
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-' || c == '/' || c == ' ' || c == ':';
    out += ok ? c : c == '=' ? ':' : '_';
  }
  // The name is a path under the run's folder (and MLflow refuses names that are not their own
  // normal form): no empty, "." or ".." segment, so no key can point outside.
  std::string norm, seg;
  for (size_t i = 0; i <= out.size(); ++i) {
    if (i < out.size() && out[i] != '/') {
      seg += out[i];
      continue;
    }
    if (seg == "." || seg == "..") seg = std::string(seg.size(), '_');
    if (!seg.empty()) norm += (norm.empty() ? "" : "/") + seg;
    seg.clear();
  }
  return norm.empty() ? "_" : norm;
}

fs::path export_mlflow(Store& store, int64_t run, const fs::path& root_in) {
  const fs::path root = fs::absolute(root_in).lexically_normal();
  json r = store.run_row(run);
  const std::string experiment = r["experiment"].get<std::string>();
  const std::string exp_id = std::to_string(std::strtoull(sha256_hex(experiment).substr(0, 15).c_str(), nullptr, 16));
  // The folder name: never a path from the store (a corrupt or crafted uuid), always hex.
  std::string uuid = clean_uuid(r["uuid"].is_string() ? r["uuid"].get<std::string>() : "");
  if (uuid.empty()) uuid = sha256_hex(fs::absolute(store.path()).string() + "#" + std::to_string(run)).substr(0, 32);

  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) throw UsageError(root.string() + ": cannot create: " + ec.message());
  const fs::path exp_dir = root / exp_id;
  const double created = r["started_at"].get<double>();
  if (!fs::exists(exp_dir / "meta.yaml"))
    write_text(exp_dir / "meta.yaml",
               "artifact_location: " + yaml_string("file://" + exp_dir.string()) + "\ncreation_time: " +
                   std::to_string(ms(created)) + "\nexperiment_id: '" + exp_id + "'\nlast_update_time: " +
                   std::to_string(ms(created)) + "\nlifecycle_stage: active\nname: " + yaml_string(experiment) + "\n");
  const fs::path dir = exp_dir / uuid;
  fs::remove_all(dir, ec);  // an earlier export of this run
  const char* user = std::getenv("USER");
  write_text(dir / "meta.yaml",
             "artifact_uri: " + yaml_string("file://" + (dir / "artifacts").string()) + "\nend_time: " +
                 (r["ended_at"].is_null() ? std::string("null") : std::to_string(ms(r["ended_at"].get<double>()))) +
                 "\nentry_point_name: ''\nexperiment_id: '" + exp_id + "'\nlifecycle_stage: active\nrun_id: " + uuid +
                 "\nrun_name: " + yaml_string(r["name"].get<std::string>()) +
                 "\nsource_name: ''\nsource_type: 4\nsource_version: ''\nstart_time: " + std::to_string(ms(created)) +
                 "\nstatus: " + std::to_string(mlflow_status(r["status"].get<std::string>())) +
                 "\ntags: []\nuser_id: " + yaml_string(user && *user ? user : "unknown") + "\n");

  std::map<std::string, std::string> param_owner;
  for (const auto& p : store.param_rows(run)) {
    std::string v = value_text(p["value"]);
    if (v.size() > kMlflowMaxParamValue) v = valid_utf8(v.substr(0, kMlflowMaxParamValue));  // (a cut character too)
    write_text(dir / "params" / unique_name(p["key"].get<std::string>(), param_owner), v);
  }
  const std::pair<const char*, const char*> tags[] = {
      {"mlflow.runName", "name"}, {"mlflow.source.git.commit", "git_commit"}, {"warmup.status", "status"},
      {"warmup.host", "host"}, {"warmup.device", "device"}, {"warmup.torch_version", "torch_version"},
      {"warmup.version", "warmup_version"}, {"warmup.config_file", "config_file"}, {"warmup.tags", "tags"},
      {"warmup.overrides", "overrides"}, {"warmup.run_dir", "run_dir"}, {"warmup.error", "error"}};
  for (const auto& [tag, col] : tags)
    if (!r[col].is_null()) write_text(dir / "tags" / tag, value_text(r[col]));
  write_text(dir / "tags" / "warmup.run_id", std::to_string(run));

  // One file per (stage, key): lines "<timestamp ms> <value> <step>".
  std::map<std::string, std::string> files;
  std::map<std::string, std::string> owner;  // file name -> the stage/key it holds
  for (const auto& m : store.metric_rows(run)) {
    std::string name = unique_name(m["stage"].get<std::string>() + "/" + m["key"].get<std::string>(), owner);
    // NULL without a flag (the schema allows it) is NaN, as MLflow writes a missing value.
    std::string value = m["flag"].is_string() ? m["flag"].get<std::string>()
                        : m["value"].is_number() ? number(m["value"].get<double>()) : "nan";
    files[name] += std::to_string(ms(m["wall_time"].get<double>())) + " " + value + " " + std::to_string(m["step"].get<int64_t>()) + "\n";
  }
  for (const auto& [name, lines] : files) write_text(dir / "metrics" / name, lines);

  write_text(dir / "artifacts" / "config.toml", r["config"].get<std::string>());
  std::string samples;
  for (auto& s : store.sample_rows(run)) {
    s["rewards"] = json_or_text(s["rewards"]);
    samples += s.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  }
  write_text(dir / "artifacts" / "samples.jsonl", samples);
  return dir;
}

void export_jsonl(Store& store, int64_t run, const std::string& what, std::ostream& os) {
  static const std::set<std::string> kWhat = {"all", "metrics", "samples", "params"};
  if (!kWhat.count(what)) throw UsageError("--what must be metrics, samples, params or all, got '" + what + "'");
  // {"type": "...", then the row's fields}: "type" first whatever the fields are called.
  auto line = [&](const char* type, const json& row) {
    std::string fields = row.dump(-1, ' ', false, json::error_handler_t::replace);
    os << "{\"type\":\"" << type << "\"" << (fields.size() > 2 ? "," : "") << fields.substr(1) << "\n";
  };
  json r = store.run_row(run);
  for (const char* k : {"tags", "overrides"}) r[k] = json_or_text(r[k]);
  line("run", r);
  const bool all = what == "all";
  if (all)
    for (const auto& s : store.stage_rows(run)) line("stage", s);
  if (all || what == "params")
    for (auto p : store.param_rows(run)) {
      p["value_type"] = std::move(p["type"]);  // "type" names the line
      p.erase("type");
      line("param", p);
    }
  if (all || what == "metrics")
    for (const auto& m : store.metric_rows(run)) line("metric", m);
  if (all || what == "samples")
    for (auto& s : store.sample_rows(run)) {
      s["rewards"] = json_or_text(s["rewards"]);
      line("sample", s);
    }
  if (all) {
    for (const auto& a : store.artifact_rows(run)) line("artifact", a);
    for (const auto& d : store.dataset_rows(run)) line("dataset", d);
    for (const auto& p : store.plugin_rows(run)) line("plugin", p);
  }
  if (!os) throw UsageError("cannot write the export");
}

}  // namespace warmup
