// `warmup score`: re-scores completions without a model. Each input JSONL line holds the
// completion and which example it answers:
//   example: "id" (ours, e.g. "mmlu_pro/test/70"), or the dataset's own id as other tools write
//            it: "question_id" (MMLU-Pro), "task_id" (HumanEval), "unique_id" (MATH), at the top
//            level or inside lm-evaluation-harness's "doc" (--log_samples); or "reference" (inline
//            gold; optional "id", "prompt", "metadata");
//   text:    "completion" (ours, human-eval, EvalPlus), "solution" (EvalPlus), "generated_text" /
//            "model_outputs" (MMLU-Pro's official scripts), "resps" (lm-eval: the first response).
//            HumanEval lines keyed by "task_id" with "completion" or "resps" are continuations of
//            the problem's prompt, as human-eval, EvalPlus and lm-eval run them: prompt + text.
// Each output line is the input plus "id" (ours, when the line had another key), "reward"
// (weighted total), "rewards" (per reward and its breakdown), "correct" (true/false/null),
// "extracted_answer" (what the reward took as the answer, null when none) and "error" (the
// rewards' reasons, "" when none). A line the verifier could not judge (its interpreter, sandbox
// or time budget failed: not the completion's fault) has "correct": null, "reward": null and the
// cause in "error"; such lines are counted apart, warned about, and past --max-error-rate the
// command exits 1 (the output is still written). The whole input is validated before anything is
// scored: a malformed line or an unknown id is a DataError naming file:line. Tasks are built with
// --seed, or the seed of --run (stored runs), else 0; the seed used is printed. Tasks: the
// eval presets (plugins/eval_presets.h: a domain installs them beside its library) or any task
// plugin with --reward.
// SIGINT/SIGTERM: no new line is started, the lines in flight finish (each within the reward's own
// time budget), the reward and task are closed (their sandboxes and work folders removed), nothing
// is written to --out, and the command exits 128 + the signal (130/143). A second signal, or no stop
// within 60 s, exits at once.
#include <signal.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "plugins/eval_presets.h"
#include "cli/options_util.h"
#include "config/toml_tree.h"
#include "plugins/registry.h"
#include "runtime/signals.h"
#include "store/store.h"
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
  std::string id;          // ours ("id"), or the dataset's own id (see native_key)
  std::string native_key;  // "" (ours) | "question_id" | "task_id" | "unique_id"
  std::string text_key;    // where the completion came from
  std::string text;        // the completion
};

// The dataset's own id keys other tools write, in the examples' metadata too.
const char* const kNativeKeys[] = {"question_id", "task_id", "unique_id"};

// An id value as text: strings as they are, integers (MMLU-Pro's question_id) in decimal.
std::optional<std::string> id_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  return std::nullopt;
}

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
    // The completion.
    for (const char* k : {"completion", "solution", "generated_text", "model_outputs", "resps"}) {
      if (!l.in.contains(k)) continue;
      const json* v = &l.in[k];
      if (std::string(k) == "resps") {  // lm-eval: [[text, ...], ...] (or [text, ...])
        if (v->is_array() && !v->empty() && (*v)[0].is_array() && !(*v)[0].empty()) v = &(*v)[0][0];
        else if (v->is_array() && !v->empty()) v = &(*v)[0];
      }
      if (!v->is_string()) throw DataError(where + ": \"" + k + "\" must be a string (the completion)");
      l.text_key = k, l.text = v->get<std::string>();
      break;
    }
    if (l.text_key.empty())
      throw DataError(where + ": needs \"completion\" (a string; or solution, generated_text, model_outputs, resps)");
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
      out.push_back(std::move(l));
      continue;
    }
    if (l.in.contains("id")) {
      l.id = l.in["id"].get<std::string>();
    } else {
      const json* doc = l.in.contains("doc") && l.in["doc"].is_object() ? &l.in["doc"] : nullptr;  // lm-eval
      for (const char* k : kNativeKeys) {
        const json* v = l.in.contains(k) ? &l.in[k] : doc && doc->contains(k) ? &(*doc)[k] : nullptr;
        if (!v) continue;
        auto t = id_text(*v);
        if (!t) throw DataError(where + ": \"" + k + "\" must be a string or an integer");
        l.id = *t, l.native_key = k;
        break;
      }
      if (l.native_key.empty())
        throw DataError(where + ": needs \"id\" (an example id), the dataset's own id (question_id, task_id, "
                                "unique_id; also inside lm-eval's \"doc\") or \"reference\" (the gold answer)");
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
      ("task,t", po::value<std::string>()->required(), "an eval preset (`warmup plugins` lists them), or a task plugin with --reward")
      ("reward,r", po::value<std::string>(), "reward plugin (default: the eval preset's reward)")
      ("task-option", po::value<std::vector<std::string>>(&task_opts)->composing(), "task option key=value (repeatable)")
      ("reward-option", po::value<std::vector<std::string>>(&reward_opts)->composing(), "reward option key=value (repeatable)")
      ("in,i", po::value<std::string>()->required(), "JSONL: {\"id\"|\"question_id\"|\"task_id\"|\"unique_id\"|\"reference\", \"completion\"[, \"prompt\"]}")
      ("out,o", po::value<std::string>()->required(), "JSONL: each input line plus reward, rewards, correct, extracted_answer, error")
      ("data", po::value<std::string>()->default_value(default_data_dir()), "data directory laid out as shared/data ($WARMUP_DATA)")
      ("python", po::value<std::string>()->default_value(""), "interpreter for rewards that run code (their preset's python_option, else the reward option `interpreter`)")
      ("seed", po::value<int64_t>(), "experiment seed the tasks are built with (generated puzzles, split assignment); default: --run's, else 0")
      ("run", po::value<std::string>(), "take the seed of this stored run (id, or 'latest')")
      ("store", po::value<std::string>()->default_value(default_store()), kStoreHelp)
      ("max-error-rate", po::value<double>()->default_value(0.01, "0.01"),
       "exit 1 when more than this fraction of lines could not be judged (verifier errors, correct: null)")
      ("reward-workers,j", po::value<int>()->default_value(4), "lines scored concurrently (evaluate and grpo: reward_workers)")
      ("jobs", po::value<int>(), "old name of --reward-workers")
      ("plugin-dir,P", po::value<std::vector<std::string>>(&dirs)->composing(), "search this directory for plugins first");
  po::variables_map vm;
  if (!parse(args, "usage: warmup score --task NAME [--reward NAME] [--task-option k=v]... [--seed N | --run RUN] "
                   "--in FILE.jsonl --out FILE.jsonl",
             opts, vm))
    return 0;
  // Before any thread starts (the signal mask is inherited). Declared before the plugins, so that
  // they are closed (and their work folders removed) before it is.
  SignalWatcher signals(60.0, [](int) {});
  auto interrupted = [&](size_t done, size_t total) {
    int sig = signals.signal_number();
    log_warn(std::string("interrupted by ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") + " after scoring " +
             std::to_string(done) + " of " + std::to_string(total) + " line(s): nothing written to " +
             vm["out"].as<std::string>());
    return 128 + sig;
  };
  const std::string task_spec = vm["task"].as<std::string>(), in_path = vm["in"].as<std::string>();
  std::vector<fs::path> cli_dirs(dirs.begin(), dirs.end());
  const std::vector<fs::path> search = plugin_search_path(cli_dirs, {});
  EvalPresets presets;
  presets.scan(search);
  const EvalPreset* preset = presets.find(task_spec);
  if (!preset && !vm.count("reward"))
    throw UsageError("task '" + task_spec + "' is not an eval preset (eval presets: " + presets.known() +
                     "): name a task plugin's --reward to use it");
  const double max_error_rate = vm["max-error-rate"].as<double>();
  if (!(max_error_rate >= 0.0 && max_error_rate <= 1.0))
    throw UsageError("--max-error-rate must be in [0, 1], got " + std::to_string(max_error_rate));
  if (vm.count("seed") && vm.count("run")) throw UsageError("give --seed or --run, not both");
  std::vector<Line> lines = read_lines(in_path);
  bool need_task = false;
  for (const auto& l : lines) need_task |= !l.inline_example;

  // The seed tasks are built with, as a run builds them (runner.cpp: the experiment seed).
  uint64_t seed = 0;
  std::string seed_from = "default";
  if (vm.count("seed")) {
    if (vm["seed"].as<int64_t>() < 0) throw UsageError("--seed must be >= 0");
    seed = uint64_t(vm["seed"].as<int64_t>()), seed_from = "--seed";
  } else if (vm.count("run")) {
    std::string store_path = vm["store"].as<std::string>(), spec = vm["run"].as<std::string>();
    if (!fs::exists(store_path)) throw UsageError("--run " + spec + ": no store at " + store_path + " (--store DB)");
    Store st(store_path);
    int64_t id = st.resolve_run(spec, "--run " + spec);
    seed = st.run_record(id)->seed, seed_from = "run " + std::to_string(id);
  }

  // The task and reward instances, as an experiment would configure them.
  const std::string python = vm["python"].as<std::string>();
  EvalTask pt;
  if (preset) {
    // With --task-option the options may stand in for the data (kk: generate_test = N): the
    // task itself then says what is missing.
    pt = presets.instantiate(task_spec, vm["data"].as<std::string>(), need_task && task_opts.empty());
  } else {
    pt.spec = pt.instance = pt.plugin = task_spec;
  }
  if (vm.count("reward") && vm["reward"].as<std::string>() != pt.reward)
    pt.reward = vm["reward"].as<std::string>(), pt.reward_options = toml::table{};
  // After the reward is settled (a --reward of another name resets its options): a reward that
  // runs no code refuses the key instead of ignoring it.
  if (!python.empty())
    pt.reward_options.insert_or_assign(preset && !preset->python_option.empty() ? preset->python_option : "interpreter", python);
  for (const auto& o : task_opts) apply_option(pt.options, o, "--task-option");
  for (const auto& o : reward_opts) apply_option(pt.reward_options, o, "--reward-option");

  PluginRegistry reg;
  reg.scan(search);
  CliHost host;
  std::string cwd = fs::current_path().string();
  PluginInit rinit = make_plugin_init("reward", pt.reward, "rewards." + pt.reward, pt.reward_options,
                                      "--reward-option", seed, cwd);
  rinit.host = &host;
  PluginPtr<Reward> reward = reg.create<Reward>(pt.reward, rinit, "--reward " + pt.reward);

  std::map<std::string, Example> by_id;
  std::map<std::string, std::map<std::string, std::vector<const Example*>>> by_native;  // key -> id -> examples
  if (need_task) {
    log_info("building task " + task_spec + " with seed " + std::to_string(seed) + " (" + seed_from + ")");
    PluginInit tinit = make_plugin_init("task", pt.plugin, "tasks." + pt.instance, pt.options, "--task-option", seed, cwd);
    tinit.host = &host;
    PluginPtr<Task> task = reg.create<Task>(pt.plugin, tinit, "--task " + task_spec);
    std::string splits;
    for (const auto& s : task->splits()) {
      for (auto& e : task->examples(s)) by_id.emplace(e.id, std::move(e));
      splits += (splits.empty() ? "" : ", ") + s;
    }
    for (const auto& [id, e] : by_id)
      for (const char* k : kNativeKeys)
        if (e.metadata.is_object() && e.metadata.contains(k))
          if (auto t = id_text(json::parse(e.metadata[k].dump()))) by_native[k][*t].push_back(&e);
    for (auto& l : lines) {
      if (l.inline_example) continue;
      std::string where = in_path + ":" + std::to_string(l.number);
      if (l.native_key.empty()) {
        if (!by_id.count(l.id))
          throw DataError(where + ": unknown example id '" + l.id + "' (task " + task_spec + ", splits " + splits + ")");
        continue;
      }
      auto& idx = by_native[l.native_key];
      auto it = idx.find(l.id);
      if (it == idx.end())
        throw DataError(where + ": unknown " + l.native_key + " '" + l.id + "' (task " + task_spec + ", splits " +
                        splits + (idx.empty() ? "; its examples carry no " + l.native_key : "") + ")");
      if (it->second.size() > 1)
        throw DataError(where + ": " + l.native_key + " '" + l.id + "' names " + std::to_string(it->second.size()) +
                        " examples (" + it->second[0]->id + ", " + it->second[1]->id + "): give \"id\"");
      const Example& e = *it->second[0];
      // human-eval / EvalPlus / lm-eval: a completion continues the problem's prompt.
      if (l.native_key == "task_id" && (l.text_key == "completion" || l.text_key == "resps") &&
          e.metadata.contains("prompt") && e.metadata["prompt"].is_string())
        l.text = e.metadata["prompt"].get<std::string>() + l.text;
      l.id = e.id;
    }
  }

  if (signals.stop_requested()) return interrupted(0, lines.size());
  std::vector<WeightedReward> rewards{{pt.reward, 1.0, reward.get()}};
  std::vector<Score> scores;
  const int workers = vm.count("jobs") ? vm["jobs"].as<int>() : vm["reward-workers"].as<int>();
  size_t done = score_parallel(
      rewards, lines.size(),
      [&](size_t k) -> const Example& { return lines[k].inline_example ? *lines[k].inline_example : by_id.at(lines[k].id); },
      [&](size_t k) -> const std::string& { return lines[k].text; }, scores, workers,
      [&] { return signals.stop_requested(); });
  if (signals.stop_requested()) return interrupted(done, lines.size());

  const std::string out_path = vm["out"].as<std::string>();
  std::ofstream out(out_path);
  if (!out) throw UsageError(out_path + ": cannot write");
  double total = 0;
  int64_t known = 0, correct = 0, errors = 0;
  std::string first_error;
  for (size_t k = 0; k < lines.size(); ++k) {
    json o = lines[k].in;
    const Score& s = scores[k];
    if (!lines[k].inline_example && !o.contains("id")) o["id"] = lines[k].id;
    o["reward"] = s.errored ? json(nullptr) : json(s.total);
    o["rewards"] = json(s.parts);
    o["correct"] = s.correct ? json(*s.correct) : json(nullptr);
    o["extracted_answer"] = s.extracted_answer ? json(*s.extracted_answer) : json(nullptr);
    o["error"] = s.error;
    out << o.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    if (s.errored) {
      if (!errors++) first_error = in_path + ":" + std::to_string(lines[k].number) + ": " + s.error;
      continue;
    }
    total += s.total;
    if (s.correct) ++known, correct += *s.correct;
  }
  out.close();
  if (!out) throw std::runtime_error(out_path + ": write failed");
  int64_t judged = int64_t(lines.size()) - errors;
  std::string msg = "scored " + std::to_string(lines.size()) + " line(s) of " + in_path + " with " + pt.reward +
                    ": reward mean " + std::to_string(judged ? total / double(judged) : 0.0);
  if (known) msg += ", correct " + std::to_string(correct) + "/" + std::to_string(known);
  if (errors) msg += ", " + std::to_string(errors) + " not judged (verifier errors, correct: null)";
  log_info(msg + " -> " + out_path);
  if (errors) {
    double rate = double(errors) / double(lines.size());
    std::string head = std::to_string(errors) + " of " + std::to_string(lines.size()) +
                       " line(s) could not be judged: the verifier failed, not the completions (first: " + first_error + ")";
    if (rate > max_error_rate)
      throw std::runtime_error(head + "; error rate " + std::to_string(rate) + " > --max-error-rate " +
                               std::to_string(max_error_rate));
    log_warn("WARNING: " + head + "; they are not counted as wrong");
  }
  return 0;
}

}  // namespace warmup::cli
