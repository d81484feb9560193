// The report object (report_data.h): runs, metric series, the paper-style table and a selection of
// completions, read from the run store.
#include "report/report_data.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>

#include "store/store.h"
#include "util/build_info.h"
#include "util/process.h"

namespace warmup {

using nlohmann::json;

namespace {

// Splits "a/b/c" at '/'.
std::vector<std::string> split_key(const std::string& key) {
  std::vector<std::string> parts;
  for (size_t b = 0;;) {
    size_t e = key.find('/', b);
    parts.push_back(key.substr(b, e == std::string::npos ? std::string::npos : e - b));
    if (e == std::string::npos) return parts;
    b = e + 1;
  }
}

json run_header(Store& store, int64_t run) {
  json r = store.run_row(run);
  for (const char* k : {"tags", "overrides"}) r[k] = json_or_text(r[k]);
  r.erase("experiment_id");
  r.erase("config_hash");
  r.erase("pid_start");
  r["params"] = json::object();
  for (const auto& p : store.param_rows(run)) r["params"][p["key"].get<std::string>()] = p["value"];
  r["stages"] = store.stage_rows(run);
  r["plugins"] = json::array();
  for (auto p : store.plugin_rows(run)) {
    p.erase("interface");
    r["plugins"].push_back(std::move(p));
  }
  return r;
}

// `v` to `digits` significant digits, so the JSON carries "0.1234568", not 17 digits: the charts'
// precision (float32, the training's own), half the bytes of a series.
double round_significant(double v, int digits) {
  if (v == 0 || !std::isfinite(v) || std::fabs(v) < 1e-290) return v;  // (the scale would overflow)
  double scale = std::pow(10.0, digits - 1 - int(std::floor(std::log10(std::fabs(v)))));
  return std::round(v * scale) / scale;
}

// Metric points of one run -> series objects (appended to `out`) and the last value of each
// (stage, key) (appended to `last`, as eval_table reads them).
void add_series(int64_t run, const std::vector<Store::MetricPoint>& points, json& out, json& last) {
  for (size_t b = 0; b < points.size();) {
    size_t e = b;
    while (e < points.size() && points[e].stage == points[b].stage && points[e].key == points[b].key) ++e;
    json step = json::array(), value = json::array(), wall = json::array(), flag = json::object();
    for (size_t i = b; i < e; ++i) {
      step.push_back(points[i].step);
      value.push_back(points[i].value ? json(round_significant(*points[i].value, 7)) : json(nullptr));
      wall.push_back(std::round(points[i].wall_time * 100) / 100);
      if (!points[i].flag.empty()) flag[std::to_string(i - b)] = points[i].flag;
    }
    const auto& l = points[e - 1];
    last.push_back({{"run", run}, {"stage", l.stage}, {"key", l.key}, {"step", l.step},
                    {"value", l.value ? json(*l.value) : json(nullptr)}, {"flag", l.flag}});
    out.push_back({{"run", run}, {"stage", points[b].stage}, {"key", points[b].key}, {"step", std::move(step)},
                   {"value", std::move(value)}, {"wall_time", std::move(wall)}, {"flag", std::move(flag)}});
    b = e;
  }
}

std::string thousands(int64_t n) {
  std::string s = std::to_string(n), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return out;
}

json samples_object(Store& store, const std::vector<int64_t>& runs, const ReportOptions& opt) {
  std::vector<SampleKey> index;
  for (int64_t run : runs)
    for (auto& r : store.sample_refs(run)) index.push_back({r.id, run, std::move(r.stage), r.step, std::move(r.example_id)});
  std::vector<int64_t> ids = select_samples(index, opt.max_samples);
  json rows = json::array(), prompts = json::array();
  std::map<std::string, int64_t> prompt_index;
  int64_t cut = 0;
  // In batches: one statement binds the ids as a JSON array.
  for (size_t b = 0; b < ids.size(); b += 5000) {
    std::vector<int64_t> batch(ids.begin() + b, ids.begin() + std::min(ids.size(), b + 5000));
    for (auto& r : store.sample_rows_by_id(batch, opt.max_chars)) {
      std::string prompt = r["prompt"].get<std::string>();
      auto [it, fresh] = prompt_index.emplace(prompt, int64_t(prompts.size()));
      if (fresh) prompts.push_back(std::move(prompt));
      r["prompt"] = it->second;
      r["rewards"] = json_or_text(r["rewards"]);
      if (r["chars"].get<int64_t>() > opt.max_chars) ++cut;
      rows.push_back(std::move(r));
    }
  }
  std::string note;
  const int64_t total = int64_t(index.size()), shown = int64_t(rows.size());
  if (shown < total)
    note = "showing " + thousands(shown) + " of " + thousands(total) +
           " completions (whole steps spread over each stage; --max-samples raises the cap; "
           "`warmup runs export RUN --what samples` has every one)";
  if (cut)
    note += std::string(note.empty() ? "" : "; ") + thousands(cut) + " completions cut at " + thousands(opt.max_chars) +
            " characters (--max-chars)";
  return {{"total", total}, {"included", shown}, {"note", note}, {"max_chars", opt.max_chars},
          {"prompts", std::move(prompts)}, {"rows", std::move(rows)}};
}

}  // namespace

json json_or_text(const json& v) {
  if (!v.is_string()) return v;
  json j = json::parse(v.get<std::string>(), nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? v : j;
}

std::vector<int64_t> select_samples(const std::vector<SampleKey>& index, int64_t max) {
  std::vector<int64_t> out;
  if (int64_t(index.size()) <= max) {
    for (const auto& s : index) out.push_back(s.id);
    std::sort(out.begin(), out.end());
    return out;
  }
  if (max <= 0) return out;
  // (run, stage) -> step -> groups (example id -> ids), each in order of first appearance.
  using Groups = std::vector<std::pair<std::string, std::vector<int64_t>>>;
  std::vector<std::pair<std::pair<int64_t, std::string>, std::map<int64_t, Groups>>> stages;
  for (const auto& s : index) {
    auto key = std::make_pair(s.run, s.stage);
    auto it = std::find_if(stages.begin(), stages.end(), [&](const auto& x) { return x.first == key; });
    if (it == stages.end()) it = stages.insert(stages.end(), {key, {}});
    Groups& groups = it->second[s.step];
    auto g = std::find_if(groups.begin(), groups.end(), [&](const auto& x) { return x.first == s.example_id; });
    if (g == groups.end()) g = groups.insert(groups.end(), {s.example_id, {}});
    g->second.push_back(s.id);
  }
  const double total = double(index.size());
  for (const auto& [key, steps] : stages) {
    int64_t n = 0;
    for (const auto& [step, groups] : steps)
      for (const auto& g : groups) n += int64_t(g.second.size());
    int64_t quota = std::max<int64_t>(1, int64_t(std::floor(double(max) * double(n) / total)));
    std::vector<const Groups*> by_step;
    for (const auto& [step, groups] : steps) by_step.push_back(&groups);
    // m steps evenly spaced from the first to the last, filled group by group up to the quota.
    const size_t k = by_step.size();
    size_t m = std::clamp<size_t>(size_t(std::llround(double(k) * double(quota) / double(n))), 1, k);
    std::set<size_t> chosen;
    for (size_t j = 0; j < m; ++j) chosen.insert(m == 1 ? 0 : size_t(std::llround(double(j) * double(k - 1) / double(m - 1))));
    int64_t taken = 0;
    for (size_t i : chosen)
      for (const auto& g : *by_step[i]) {
        if (taken > 0 && taken + int64_t(g.second.size()) > quota) break;
        out.insert(out.end(), g.second.begin(), g.second.end());
        taken += int64_t(g.second.size());
      }
  }
  std::sort(out.begin(), out.end());
  return out;
}

json eval_table(const json& metrics, const json& stages, bool several_runs) {
  // (run, stage) -> key -> {value, flag}
  std::map<std::pair<int64_t, std::string>, std::map<std::string, const json*>> last;
  std::vector<std::string> tasks;
  // task -> group -> values (as first seen)
  std::map<std::string, std::map<std::string, std::vector<std::string>>> groups;
  std::vector<std::pair<std::string, std::string>> group_order;  // (task, group)
  for (const auto& m : metrics) {
    const std::string key = m["key"].get<std::string>();
    last[{m["run"].get<int64_t>(), m["stage"].get<std::string>()}][key] = &m;
    auto p = split_key(key);
    if (p[0] != "eval" || p.back() != "accuracy") continue;
    if (p.size() == 3) {
      if (std::find(tasks.begin(), tasks.end(), p[1]) == tasks.end()) tasks.push_back(p[1]);
    } else if (p.size() == 4 && p[2].find('=') != std::string::npos) {
      std::string g = p[2].substr(0, p[2].find('=')), v = p[2].substr(p[2].find('=') + 1);
      auto& vals = groups[p[1]][g];
      if (vals.empty()) group_order.emplace_back(p[1], g);
      if (std::find(vals.begin(), vals.end(), v) == vals.end()) vals.push_back(v);
    }
  }
  // The cell for metrics under `prefix` ("eval/kk" or "eval/kk/n_people=3") of one stage.
  auto cell = [](const std::map<std::string, const json*>& vals, const std::string& prefix) -> json {
    auto get = [&](const std::string& name) -> const json* {
      auto it = vals.find(prefix + "/" + name);
      return it == vals.end() ? nullptr : it->second;
    };
    const json* mean = get("accuracy_mean");
    const json* std = mean ? get("accuracy_std") : nullptr;
    if (!mean) mean = get("accuracy");
    if (!mean) return nullptr;
    const json* count = get("count");
    json c = {{"mean", (*mean)["value"]}, {"std", std ? (*std)["value"] : json(nullptr)},
              {"count", count ? (*count)["value"] : json(nullptr)}, {"key", (*mean)["key"]}};
    if (!(*mean)["flag"].get<std::string>().empty()) c["flag"] = (*mean)["flag"];
    return c;
  };
  // One row per stage that has a cell for some column: column -> the metrics prefix of its cell.
  auto table_rows = [&](const std::vector<std::string>& columns, const std::function<std::string(const std::string&)>& prefix) {
    json rows = json::array();
    for (const auto& s : stages) {
      int64_t run = s["run"].get<int64_t>();
      std::string stage = s["stage"].get<std::string>();
      auto it = last.find({run, stage});
      if (it == last.end()) continue;
      json cells = json::object();
      for (const auto& col : columns)
        if (json c = cell(it->second, prefix(col)); !c.is_null()) cells[col] = std::move(c);
      if (cells.empty()) continue;
      std::string label = several_runs ? "run " + std::to_string(run) + " " + stage : stage;
      rows.push_back({{"run", run}, {"stage", stage}, {"label", label}, {"cells", std::move(cells)}});
    }
    return rows;
  };
  json rows = table_rows(tasks, [](const std::string& t) { return "eval/" + t; });
  json breakdowns = json::array();
  for (const auto& [task, group] : group_order) {
    std::vector<std::string> values = groups[task][group];
    auto number = [](const std::string& v) { return std::strtod(v.c_str(), nullptr); };  // (no throw: 1e999 is inf)
    bool numeric = std::all_of(values.begin(), values.end(), [](const std::string& v) {
      char* end = nullptr;
      std::strtod(v.c_str(), &end);
      return !v.empty() && end && *end == '\0';
    });
    if (numeric)
      std::stable_sort(values.begin(), values.end(),
                       [&](const std::string& a, const std::string& b) { return number(a) < number(b); });
    else
      std::sort(values.begin(), values.end());
    json brows = table_rows(values, [&, t = task, g = group](const std::string& v) { return "eval/" + t + "/" + g + "=" + v; });
    breakdowns.push_back({{"task", task}, {"group", group}, {"values", values}, {"rows", std::move(brows)}});
  }
  return {{"tasks", tasks}, {"rows", std::move(rows)}, {"breakdowns", std::move(breakdowns)}};
}

json report_data(Store& store, const std::vector<int64_t>& runs, const ReportOptions& opt) {
  json data = {{"format", 1},
               {"generated_at", unix_now()},
               {"warmup_version", build_info().version + " (git " + build_info().git_commit + ")"},
               {"store", std::filesystem::absolute(store.path()).lexically_normal().string()},
               {"live", false},
               {"refresh_s", 0},
               {"api", ""},
               {"charts_library", false},
               {"charts_note", ""}};
  json run_rows = json::array(), series = json::array(), last = json::array(), stages = json::array();
  for (int64_t run : runs) {
    json header = run_header(store, run);
    for (const auto& s : header["stages"]) stages.push_back({{"run", run}, {"stage", s["name"]}});
    run_rows.push_back(std::move(header));
    add_series(run, store.metric_points(run), series, last);
  }
  json table = eval_table(last, stages, runs.size() > 1);
  // Samples per example of evaluate stages (the paper's n): with one, a std is no spread at all.
  auto annotate = [&](json& rows) {
    for (auto& row : rows) {
      for (const auto& r : run_rows) {
        if (r["id"] != row["run"]) continue;
        auto p = r["params"].find("stages." + row["stage"].get<std::string>() + ".eval.num_samples");
        if (p == r["params"].end() || !p->is_number_integer()) continue;
        for (auto& [task, c] : row["cells"].items()) {
          c["n_samples"] = *p;
          if (p->get<int64_t>() == 1) c["std"] = nullptr;
        }
      }
    }
  };
  annotate(table["rows"]);
  for (auto& b : table["breakdowns"]) annotate(b["rows"]);
  data["runs"] = std::move(run_rows);
  data["series"] = std::move(series);
  data["table"] = std::move(table);
  if (opt.samples) {
    data["samples"] = samples_object(store, runs, opt);
  } else {  // live polls: how many there are, so the page fetches them when that changes
    int64_t n = 0;
    for (int64_t run : runs) n += store.sample_count(run);
    data["samples"] = nullptr;
    data["samples_total"] = n;
  }
  return data;
}

}  // namespace warmup
