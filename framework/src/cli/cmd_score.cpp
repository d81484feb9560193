// `warmup score`: re-scores completions without a model. Each input JSONL line holds
// {"id": example id, "completion": ...} (the example is looked up in the task's splits) or
// {"reference": inline gold, "completion": ...} (optional "id", "prompt", "metadata"); each output
// line is the input plus "reward" (weighted total), "rewards" (per reward and its breakdown),
// "correct" (true/false/null) and "error" (the rewards' reasons, "" when none). The whole input is
// validated before anything is scored: a malformed line or an unknown id is a DataError naming
// file:line. Tasks: the paper's short names (see eval_tasks.h) or any task plugin with --reward.
#include <atomic>
#include <fstream>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/eval_tasks.h"
#include "cli/options_util.h"
#include "config/toml_tree.h"
#include "plugins/registry.h"
#include "util/errors.h"
#include "util/log.h"
#include "warmup/sdk.h"

namespace warmup::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;  // output keeps the input's key order

class CliHost final : public Host {
 public:
  void log(LogLevel level, std::string_view instance, std::string_view message) override {
    log_line(level, instance, message);
  }
  void set_resolved_config(std::string_view, std::string_view) override {}
};

struct Line {
  size_t number = 0;
  json in;
  std::optional<Example> inline_example;  // "reference" given
};

std::vector<Line> read_lines(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw UsageError(path + ": cannot read");
  std::vector<Line> out;
  std::string text;
  for (size_t n = 1; std::getline(f, text); ++n) {
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::string where = path + ":" + std::to_string(n);
    Line l;
    l.number = n;
    try {
      l.in = json::parse(text);
    } catch (const json::parse_error& e) {
      throw DataError(where + ": not valid JSON: " + e.what());
    }
    if (!l.in.is_object()) throw DataError(where + ": expected a JSON object");
    if (!l.in.contains("completion") || !l.in["completion"].is_string())
      throw DataError(where + ": needs \"completion\" (a string)");
    if (l.in.contains("id") && !l.in["id"].is_string()) throw DataError(where + ": \"id\" must be a string");
    if (l.in.contains("prompt") && !l.in["prompt"].is_string()) throw DataError(where + ": \"prompt\" must be a string");
    if (l.in.contains("reference")) {
      const json& r = l.in["reference"];
      if (r.is_null()) throw DataError(where + ": \"reference\" is null");
      Example e;
      e.id = l.in.value("id", where);
      e.prompt = l.in.value("prompt", "");
      e.reference = r.is_string() ? r.get<std::string>() : r.dump();
      if (l.in.contains("metadata")) {
        if (!l.in["metadata"].is_object()) throw DataError(where + ": \"metadata\" must be an object");
        e.metadata = nlohmann::json::parse(l.in["metadata"].dump());
      }
      l.inline_example = std::move(e);
    } else if (!l.in.contains("id")) {
      throw DataError(where + ": needs \"id\" (an example id) or \"reference\" (the gold answer)");
    }
    out.push_back(std::move(l));
  }
  return out;
}

}  // namespace

int cmd_score(const Args& args) {
  po::options_description opts("options");
  std::vector<std::string> task_opts, reward_opts, dirs;
  opts.add_options()
      ("task,t", po::value<std::string>()->required(), ("task: " + known_paper_tasks() + ", or a task plugin with --reward").c_str())
      ("reward,r", po::value<std::string>(), "reward plugin (default: the paper task's evaluation reward)")
      ("task-option", po::value<std::vector<std::string>>(&task_opts)->composing(), "task option key=value (repeatable)")
      ("reward-option", po::value<std::vector<std::string>>(&reward_opts)->composing(), "reward option key=value (repeatable)")
      ("in,i", po::value<std::string>()->required(), "JSONL: {\"id\"|\"reference\", \"completion\"[, \"prompt\"]}")
      ("out,o", po::value<std::string>()->required(), "JSONL: each input line plus reward, rewards, correct, error")
      ("data", po::value<std::string>()->default_value(default_data_dir()), "data directory laid out as shared/data ($WARMUP_DATA)")
      ("python", po::value<std::string>()->default_value(""), "interpreter for HumanEval+ code (needs numpy)")
      ("jobs,j", po::value<int>()->default_value(4), "lines scored concurrently")
      ("plugin-dir,P", po::value<std::vector<std::string>>(&dirs)->composing(), "search this directory for plugins first");
  po::variables_map vm;
  if (!parse(args, "usage: warmup score --task NAME [--reward NAME] [--task-option k=v]... --in FILE.jsonl --out FILE.jsonl",
             opts, vm))
    return 0;
  const std::string task_spec = vm["task"].as<std::string>(), in_path = vm["in"].as<std::string>();
  if (!is_paper_task(task_spec) && !vm.count("reward"))
    throw UsageError("task '" + task_spec + "' is not one of " + known_paper_tasks() +
                     ": name a task plugin's --reward to use it");
  std::vector<Line> lines = read_lines(in_path);
  bool need_task = false;
  for (const auto& l : lines) need_task |= !l.inline_example;

  // The task and reward instances, as an experiment would configure them.
  PaperTask pt;
  if (is_paper_task(task_spec)) {
    pt = paper_task(task_spec, vm["data"].as<std::string>(), need_task, vm["python"].as<std::string>());
  } else {
    pt.spec = pt.instance = pt.plugin = task_spec;
  }
  if (vm.count("reward") && vm["reward"].as<std::string>() != pt.reward)
    pt.reward = vm["reward"].as<std::string>(), pt.reward_options = toml::table{};
  for (const auto& o : task_opts) apply_option(pt.options, o, "--task-option");
  for (const auto& o : reward_opts) apply_option(pt.reward_options, o, "--reward-option");

  std::vector<fs::path> cli_dirs(dirs.begin(), dirs.end());
  PluginRegistry reg;
  reg.scan(plugin_search_path(cli_dirs, {}));
  CliHost host;
  std::string cwd = fs::current_path().string();
  PluginInit rinit = make_plugin_init("reward", pt.reward, "rewards." + pt.reward, pt.reward_options,
                                      "--reward-option", 0, cwd);
  rinit.host = &host;
  PluginPtr<Reward> reward = reg.create<Reward>(pt.reward, rinit, "--reward " + pt.reward);

  std::map<std::string, Example> by_id;
  if (need_task) {
    PluginInit tinit = make_plugin_init("task", pt.plugin, "tasks." + pt.instance, pt.options, "--task-option", 0, cwd);
    tinit.host = &host;
    PluginPtr<Task> task = reg.create<Task>(pt.plugin, tinit, "--task " + task_spec);
    std::string splits;
    for (const auto& s : task->splits()) {
      for (auto& e : task->examples(s)) by_id.emplace(e.id, std::move(e));
      splits += (splits.empty() ? "" : ", ") + s;
    }
    for (const auto& l : lines)
      if (!l.inline_example && !by_id.count(l.in["id"].get<std::string>()))
        throw DataError(in_path + ":" + std::to_string(l.number) + ": unknown example id '" +
                        l.in["id"].get<std::string>() + "' (task " + task_spec + ", splits " + splits + ")");
  }

  std::vector<WeightedReward> rewards{{pt.reward, 1.0, reward.get()}};
  std::vector<Score> scores(lines.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t k; (k = next++) < lines.size();) {
      const Line& l = lines[k];
      const Example& ex = l.inline_example ? *l.inline_example : by_id.at(l.in["id"].get<std::string>());
      scores[k] = score_all(rewards, ex, l.in["completion"].get<std::string>());
    }
  };
  std::vector<std::thread> pool;
  for (int w = 1; w < std::min<int>(std::max(1, vm["jobs"].as<int>()), int(lines.size())); ++w) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();

  const std::string out_path = vm["out"].as<std::string>();
  std::ofstream out(out_path);
  if (!out) throw UsageError(out_path + ": cannot write");
  double total = 0;
  int64_t known = 0, correct = 0;
  for (size_t k = 0; k < lines.size(); ++k) {
    json o = lines[k].in;
    const Score& s = scores[k];
    o["reward"] = s.total;
    o["rewards"] = json(s.parts);
    o["correct"] = s.correct ? json(*s.correct) : json(nullptr);
    o["error"] = s.error;
    out << o.dump() << "\n";
    total += s.total;
    if (s.correct) ++known, correct += *s.correct;
  }
  out.close();
  if (!out) throw std::runtime_error(out_path + ": write failed");
  std::string msg = "scored " + std::to_string(lines.size()) + " line(s) of " + in_path + " with " + pt.reward +
                    ": reward mean " + std::to_string(lines.empty() ? 0.0 : total / double(lines.size()));
  if (known) msg += ", correct " + std::to_string(correct) + "/" + std::to_string(known);
  log_info(msg + " -> " + out_path);
  return 0;
}

}  // namespace warmup::cli
