// `warmup eval`: the paper's evaluation of one model on named tasks. Each task name is an eval
// preset that its domain installs next to its plugin library (plugins/eval_presets.h): the host
// knows no domain. Builds an experiment in memory (one `evaluate` stage over the tasks, each
// scored by its own reward through `task_rewards`, n samples per question, the paper's sampling
// and context cap), runs it through the same runner as `warmup run` (so the run, its samples and
// metrics land in the store), keeps the generated TOML as `eval.toml` in the run directory, and
// prints a paper-style table: one row for the model, one column per task, accuracy "mean ± std"
// in percent over the n sample-index runs.
// Does not compare several models (run it per model, then `warmup runs table`).
#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>

#include "config/experiment.h"
#include "plugins/eval_presets.h"
#include "plugins/registry.h"
#include "cli/options_util.h"
#include "config/toml_tree.h"
#include "runtime/runner.h"
#include "store/store.h"
#include "util/errors.h"
#include "util/log.h"
#include "util/table.h"

namespace warmup::cli {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  for (size_t b = 0; b <= s.size();) {
    size_t e = s.find(',', b);
    if (e == std::string::npos) e = s.size();
    std::string item = s.substr(b, e - b);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
    b = e + 1;
  }
  return out;
}

template <class T>
toml::array to_array(const std::vector<T>& v) {
  toml::array a;
  for (const auto& x : v) a.push_back(x);
  return a;
}

// The experiment for `tasks` (TOML). Every path in it is absolute.
toml::table build_experiment(const po::variables_map& vm, const std::vector<EvalTask>& tasks) {
  int64_t samples = vm["samples"].as<int64_t>();
  toml::table root;
  root.insert("experiment", toml::table{{"name", vm["experiment-name"].as<std::string>()},
                                        {"seed", vm["seed"].as<int64_t>()},
                                        {"tags", toml::array{"eval"}}});
  root.insert("model", toml::table{{"path", fs::absolute(vm["model"].as<std::string>()).lexically_normal().string()},
                                   {"dtype", vm["dtype"].as<std::string>()},
                                   {"device", vm["device"].as<std::string>()}});
  toml::table task_tables, reward_tables, stage_rewards, task_rewards;
  std::vector<std::string> names, group_by;
  for (const auto& t : tasks) {
    toml::table tt = t.options;
    if (t.plugin != t.instance) tt.insert("plugin", t.plugin);
    task_tables.insert(t.instance, std::move(tt));
    if (!reward_tables.contains(t.reward)) reward_tables.insert(t.reward, t.reward_options);
    stage_rewards.insert_or_assign(t.reward, 1.0);
    task_rewards.insert(t.instance, toml::array{t.reward});
    names.push_back(t.instance);
    if (t.split != "test") throw UsageError("task '" + t.spec + "': its preset (" + t.preset_file + ") evaluates split '" +
                                            t.split + "'; warmup eval evaluates one split for all tasks: test");
    for (const auto& g : t.group_by)
      if (std::find(group_by.begin(), group_by.end(), g) == group_by.end()) group_by.push_back(g);
  }
  root.insert("tasks", std::move(task_tables));
  root.insert("rewards", std::move(reward_tables));
  std::vector<int64_t> pass_at_k;
  for (const auto& k : split_list(vm["pass-at-k"].as<std::string>())) {
    int64_t v = 0;
    try {
      v = std::stoll(k);
    } catch (const std::exception&) {
      throw UsageError("--pass-at-k: '" + k + "' is not a number");
    }
    if (v < 1 || v > samples) throw UsageError("--pass-at-k: " + k + " must be in 1.." + std::to_string(samples));
    pass_at_k.push_back(v);
  }
  toml::table evaluate{{"completions", "model"},
                       {"temperature", vm["temperature"].as<double>()},
                       {"top_p", vm["top-p"].as<double>()},
                       {"top_k", vm["top-k"].as<int64_t>()},
                       {"max_model_len", vm["max-model-len"].as<int64_t>()},
                       {"max_new_tokens", vm["max-new-tokens"].as<int64_t>()},
                       {"seed", vm["seed"].as<int64_t>()},
                       {"max_error_rate", vm["max-error-rate"].as<double>()},
                       {"group_by", to_array(group_by)},
                       {"pass_at_k", to_array(pass_at_k)},
                       {"task_rewards", std::move(task_rewards)}};
  toml::table stage{{"name", "eval"},
                    {"algorithm", "evaluate"},
                    {"tasks", to_array(names)},
                    {"rewards", std::move(stage_rewards)},
                    {"eval", toml::table{{"split", "test"}, {"limit", vm["limit"].as<int64_t>()}, {"num_samples", samples}}},
                    {"evaluate", std::move(evaluate)}};
  root.insert("stages", toml::array{std::move(stage)});
  return root;
}

std::string percent(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", 100.0 * v);
  return buf;
}

// One row for the model: "mean ± std" of accuracy per task (percent), then mean response tokens.
void print_table(Store& store, int64_t run, const std::string& label, const std::vector<EvalTask>& tasks) {
  std::vector<std::string> header{"model"}, row{label}, tokens{"tokens"}, errors{"not judged"};
  bool any_tokens = false, any_errors = false;
  for (const auto& t : tasks) {
    std::map<std::string, double> m;
    for (const auto& [key, value] : store.metric_values(run, "eval", "eval/" + t.instance + "/*"))
      m[key.substr(6 + t.instance.size())] = value;
    header.push_back(t.spec);
    row.push_back(m.count("accuracy_mean") ? percent(m["accuracy_mean"]) + " ± " + percent(m["accuracy_std"]) : "-");
    any_tokens |= m.count("response_tokens_mean") > 0;
    tokens.push_back(m.count("response_tokens_mean") ? format_number(std::round(m["response_tokens_mean"])) : "-");
    any_errors |= m.count("errors") && m["errors"] > 0;
    errors.push_back(m.count("errors") ? format_number(m["errors"]) : "-");
  }
  TextTable table(header);
  table.add(row);
  if (any_tokens) table.add(tokens);
  if (any_errors) table.add(errors);
  std::cout << "\naccuracy (%), mean ± std over sample-index runs; tokens = mean response length"
            << (any_errors ? "; not judged = completions the verifier failed on, left out of the accuracy" : "") << "\n";
  table.print(std::cout);
}

}  // namespace

int cmd_eval(const Args& args) {
  po::options_description opts("options");
  std::vector<std::string> sets, dirs;
  opts.add_options()
      ("model,m", po::value<std::string>()->required(), "Hugging Face model directory")
      ("tasks", po::value<std::string>()->required(),
       "comma-separated eval presets, found in the plugin directories (`warmup plugins` lists them), e.g. math500,kk")
      ("samples", po::value<int64_t>()->default_value(4), "samples per question (the paper: 4)")
      ("temperature", po::value<double>()->default_value(0.7, "0.7"), "sampling temperature")
      ("top-p", po::value<double>()->default_value(0.95, "0.95"), "nucleus sampling mass")
      ("top-k", po::value<int64_t>()->default_value(0), "0 = off")
      ("max-model-len", po::value<int64_t>()->default_value(4096), "prompt + completion cap in tokens")
      ("max-new-tokens", po::value<int64_t>()->default_value(0), "completion cap; 0 = what max-model-len leaves")
      ("limit", po::value<int64_t>()->default_value(0), "first N questions per task; 0 = all")
      ("pass-at-k", po::value<std::string>()->default_value("1"), "k values of pass@k, comma-separated (<= samples)")
      ("data", po::value<std::string>()->default_value(default_data_dir()), "data directory laid out as shared/data ($WARMUP_DATA)")
      ("python", po::value<std::string>()->default_value(""), "interpreter for rewards that run code (e.g. humaneval_plus; needs numpy)")
      ("seed", po::value<int64_t>()->default_value(0), "sampling seed (question i, sample j: seed + 1000 i + j)")
      ("max-error-rate", po::value<double>()->default_value(0.01, "0.01"),
       "fail when more than this fraction of a task's completions could not be judged (verifier errors: not counted as wrong)")
      ("dtype", po::value<std::string>()->default_value("auto"), "auto | float32 | bfloat16 | float16")
      ("device", po::value<std::string>()->default_value("auto"), "auto | cpu | cuda | cuda:N")
      ("label", po::value<std::string>()->default_value(""), "row label of the table (default: the model folder name)")
      ("experiment-name", po::value<std::string>()->default_value("eval"), "[experiment] name")
      ("name", po::value<std::string>()->default_value(""), "run name")
      ("set,s", po::value<std::vector<std::string>>(&sets)->composing(), "override a value of the built experiment (repeatable)")
      ("out-toml", po::value<std::string>(), "also write the built experiment here (re-run it with `warmup run`)")
      ("dry-run,n", "print the built experiment, check that it resolves, run nothing")
      ("store", po::value<std::string>()->default_value(default_store()), kStoreHelp)
      ("plugin-dir,P", po::value<std::vector<std::string>>(&dirs)->composing(), "search this directory for plugins first");
  po::variables_map vm;
  if (!parse(args, "usage: warmup eval --model DIR --tasks math500,humaneval_plus,mmlu_pro:physics,kk [--samples 4] "
                   "[--temperature 0.7] [--top-p 0.95] [--max-model-len 4096] [--limit N] [--data DIR] [--store DB] "
                   "[--out-toml FILE] [--dry-run]",
             opts, vm))
    return 0;
  if (vm["samples"].as<int64_t>() < 1) throw UsageError("--samples must be >= 1");
  std::vector<fs::path> cli_dirs(dirs.begin(), dirs.end());
  EvalPresets presets;
  presets.scan(plugin_search_path(cli_dirs, {}));
  std::vector<EvalTask> tasks;
  std::set<std::string> seen;
  for (const auto& spec : split_list(vm["tasks"].as<std::string>())) {
    EvalTask t = presets.instantiate(spec, vm["data"].as<std::string>(), true, vm["python"].as<std::string>());
    if (!seen.insert(t.instance).second) throw UsageError("--tasks names '" + spec + "' twice");
    tasks.push_back(std::move(t));
  }
  if (tasks.empty()) throw UsageError("--tasks is empty (eval presets: " + presets.known() + ")");
  std::ostringstream built;  // shortest round-tripping floats (0.7, not 0.69999999999999996)
  built << toml::toml_formatter(build_experiment(vm, tasks), toml::format_flags::relaxed_float_precision);
  std::string text = built.str();
  text = "# built by `warmup eval` (the paper's evaluation protocol); re-run with `warmup run`\n" + text + "\n";
  if (vm.count("out-toml")) {
    fs::path file = fs::absolute(vm["out-toml"].as<std::string>());
    std::ofstream f(file);
    if (!(f << text)) throw UsageError("--out-toml " + file.string() + ": cannot write");
    log_info("wrote " + file.string());
  }

  RunOptions ro;
  if (vm.count("out-toml")) ro.experiment = fs::absolute(vm["out-toml"].as<std::string>());
  ro.store = vm["store"].as<std::string>();
  for (const auto& d : dirs) ro.plugin_dirs.emplace_back(d);
  ro.name = vm["name"].as<std::string>();
  ro.overrides = sets;
  ro.dry_run = vm.count("dry-run") > 0;
  ro.on_run_folder = [&text](int64_t, const fs::path& dir) {  // kept with the run, whatever happens
    std::ofstream keep(dir / "eval.toml");
    if (!(keep << text)) log_warn("could not keep eval.toml in " + dir.string());
  };
  const std::string kWhere = " [in the experiment built by warmup eval: see it with --dry-run --out-toml FILE]";
  RunResult result;
  try {
    // Every path in the text is absolute; the source name is what error messages cite.
    result = run_experiment(parse_experiment(text, "eval.toml", fs::current_path(), sets), ro);
  } catch (const ConfigError& e) {
    throw ConfigError(e.what() + kWhere);
  }
  if (result.status == "dry_run") {
    std::cout << text;  // checked above; the built experiment is what a user edits
    if (!result.problems.empty()) std::cerr << "error: " << problems_text(result.problems) << "\n";
    return result.exit_code;
  }
  if (result.status != "finished") return result.exit_code;
  print_run_summary(result, ro.store, std::cout);
  std::string label = vm["label"].as<std::string>();
  if (label.empty()) label = fs::absolute(vm["model"].as<std::string>()).lexically_normal().filename().string();
  if (label.empty()) label = fs::absolute(vm["model"].as<std::string>()).lexically_normal().parent_path().filename().string();
  Store store(ro.store);
  const int64_t run = result.run_id;
  print_table(store, run, label, tasks);
  std::cout << "run " << run << " in " << ro.store.string() << " (warmup runs show " << run << " --store "
            << ro.store.string() << ")\n";
  return 0;
}

}  // namespace warmup::cli
