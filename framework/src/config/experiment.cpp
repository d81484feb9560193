// Validation of the host-level experiment schema; see experiment.h.
#include "config/experiment.h"

#include <limits>
#include <set>

#include "config/toml_tree.h"
#include "warmup/options.h"

namespace warmup {
namespace fs = std::filesystem;
namespace {

// Names that become path components (stage, task, reward and teacher instance names): run_dir /
// <stage> / model, checkpoints/<stage>, files named after tasks. Letters, digits, '_', '.', '-',
// never "." or ".." or anything containing "..", so no name can leave the run directory.
void check_identifier(const std::string& s, const std::string& where, const std::string& what) {
  if (is_safe_name(s)) return;
  throw ConfigError(where + ": " + what + " '" + s + "' is not a valid name: use " + kSafeNameRule +
                    "; names become file and directory names in the run directory");
}

// Where a key of a table is written (its own position when toml++ kept it).
std::string key_origin(const toml::key& k, const toml::node& value) {
  const auto& src = k.source();
  if (src.path && src.begin.line > 0 && src.path->rfind("--set ", 0) != 0)
    return *src.path + ":" + std::to_string(src.begin.line) + ":" + std::to_string(src.begin.column);
  return origin(value);
}

// Typed read of a host key: absent -> nullopt; wrong type -> ConfigError at the value.
template <class T>
std::optional<T> read(const toml::table& t, const std::string& key, std::string_view context) {
  const toml::node* n = t.get(key);
  if (!n) return std::nullopt;
  std::string error;
  std::optional<T> v = detail::convert<T>(*n, error);
  if (!v) throw ConfigError(origin(*n) + ": " + std::string(context) + "." + key + ": " + error);
  return v;
}

const toml::table& table_at(const toml::table& parent, const std::string& key,
                            std::string_view context) {
  static const toml::table kEmpty;
  const toml::node* n = parent.get(key);
  if (!n) return kEmpty;
  if (!n->is_table())
    throw ConfigError(origin(*n) + ": " + std::string(context) + ": expected a table, found " +
                      type_name(*n));
  return *n->as_table();
}

// Names in a stage's `tasks`/`teachers`: a string or an array of strings.
std::vector<std::string> read_names(const toml::table& st, const std::string& key,
                                    std::string_view context) {
  const toml::node* n = st.get(key);
  if (!n) return {};
  if (auto s = n->value_exact<std::string>()) return {*s};
  auto v = read<std::vector<std::string>>(st, key, context);
  return *v;
}

void read_plugin_section(const toml::table& root, const std::string& section,
                         const std::string& kind, std::map<std::string, PluginSpec>& out) {
  const toml::table& sec = table_at(root, section, "[" + section + "]");
  for (const auto& [k, v] : sec) {
    std::string instance(k.str());
    check_identifier(instance, key_origin(k, v), "[" + section + "] instance");
    if (!v.is_table())
      throw ConfigError(origin(v) + ": [" + section + "] " + instance +
                        ": expected a table [" + section + "." + instance + "], found " + type_name(v));
    PluginSpec spec;
    spec.kind = kind;
    spec.instance = instance;
    spec.path = section + "." + instance;
    spec.origin = origin(v);
    spec.options = *v.as_table();  // copy loses sources: rebuild by moving below
    out.emplace(instance, std::move(spec));
  }
}

// [experiment]
void read_experiment_table(const toml::table& root, const std::string& file_origin, ExperimentConfig& cfg) {
  const toml::table& ex = table_at(root, "experiment", "[experiment]");
  check_keys(ex, {"name", "seed", "tags", "description"}, "[experiment]");
  auto name = read<std::string>(ex, "name", "experiment");
  if (!name || name->empty())
    throw ConfigError((root.get("experiment") ? origin(*root.get("experiment")) : file_origin) +
                      ": [experiment] name is required");
  cfg.name = *name;
  cfg.description = read<std::string>(ex, "description", "experiment").value_or("");
  int64_t seed = read<int64_t>(ex, "seed", "experiment").value_or(0);
  if (seed < 0) throw ConfigError(origin(*ex.get("seed")) + ": experiment.seed must be >= 0");
  cfg.seed = uint64_t(seed);
  cfg.tags = read<std::vector<std::string>>(ex, "tags", "experiment").value_or(std::vector<std::string>{});
}

void read_model(const toml::table& root, ExperimentConfig& cfg) {
  const toml::table& model = table_at(root, "model", "[model]");
  check_keys(model, {"path", "dtype", "device", "tokenizer", "init"}, "[model]");
  cfg.model.path = read<std::string>(model, "path", "model").value_or("");
  cfg.model.dtype = read<std::string>(model, "dtype", "model").value_or("auto");
  cfg.model.device = read<std::string>(model, "device", "model").value_or("auto");
  static const std::set<std::string> kDtypes = {"auto", "float32", "bfloat16", "float16"};
  if (!kDtypes.count(cfg.model.dtype))
    throw ConfigError(origin(*model.get("dtype")) + ": model.dtype must be auto, float32, bfloat16 or float16");
  if (auto tok = read<std::string>(model, "tokenizer", "model")) cfg.model.extra["tokenizer"] = *tok;
  if (!cfg.model.path.empty() && fs::path(cfg.model.path).is_relative() &&
      cfg.model.path.find("://") == std::string::npos)
    cfg.model.path = (cfg.base_dir / cfg.model.path).lexically_normal().string();

  if (const toml::node* init = model.get("init")) {
    const toml::table* it = init->as_table();
    if (!it) throw ConfigError(origin(*init) + ": model.init: expected a table {config = \"...\", seed = N}");
    check_keys(*it, {"config", "seed", "tokenizer"}, "[model] init");
    ModelInit mi;
    auto conf = read<std::string>(*it, "config", "model.init");
    if (!conf || conf->empty()) throw ConfigError(origin(*it) + ": model.init.config (a config.json) is required");
    if (!cfg.model.path.empty()) throw ConfigError(origin(*init) + ": model.init and model.path exclude each other");
    auto resolve_rel = [&](const std::string& p) {
      return fs::path(p).is_relative() ? (cfg.base_dir / p).lexically_normal().string() : p;
    };
    mi.config = resolve_rel(*conf);
    mi.seed = read<int64_t>(*it, "seed", "model.init").value_or(0);
    if (auto t = read<std::string>(*it, "tokenizer", "model.init"); t && !t->empty()) mi.tokenizer = resolve_rel(*t);
    cfg.model_init = mi;
  }

}

void read_plugins_and_instances(toml::table& root, ExperimentConfig& cfg) {
  const toml::table& plugins = table_at(root, "plugins", "[plugins]");
  check_keys(plugins, {"paths"}, "[plugins]");
  for (const auto& p : read<std::vector<std::string>>(plugins, "paths", "plugins").value_or(std::vector<std::string>{})) {
    fs::path pp(p);
    cfg.plugin_paths.push_back(pp.is_absolute() ? pp : (cfg.base_dir / pp).lexically_normal());
  }

  // [tasks.*], [rewards.*], [teachers.*]
  read_plugin_section(root, "tasks", "task", cfg.tasks);
  read_plugin_section(root, "rewards", "reward", cfg.rewards);
  read_plugin_section(root, "teachers", "teacher", cfg.teachers);
  for (auto [name, section] : {std::pair{"tasks", &cfg.tasks}, {"rewards", &cfg.rewards}, {"teachers", &cfg.teachers}}) {
    for (auto& [instance, spec] : *section) {
      // Move the original nodes (keeping their sources) instead of the copy made above. By key, not
      // by path: an instance name may hold a dot ([tasks."a.b"]).
      toml::table& live = *root.get_as<toml::table>(name)->get_as<toml::table>(instance);
      spec.options = toml::table{};
      for (auto& [k, v] : live) spec.options.insert_or_assign(k, std::move(v));
      live.clear();
      if (toml::node* p = spec.options.get("plugin")) {
        auto s = p->value_exact<std::string>();
        if (!s) throw ConfigError(origin(*p) + ": " + spec.path + ".plugin: expected string, found " + type_name(*p));
        spec.plugin = *s;
        check_identifier(spec.plugin, origin(*p), spec.path + ".plugin");
        spec.options.erase("plugin");
      } else {
        spec.plugin = instance;
      }
    }
  }

}

void read_stages(toml::table& root, const std::string& file_origin, ExperimentConfig& cfg) {
  const toml::node* stages_node = root.get("stages");
  if (!stages_node) throw ConfigError(file_origin + ": the experiment has no [[stages]]");
  const toml::array* stages = stages_node->as_array();
  if (!stages || stages->empty() || !stages->is_array_of_tables())
    throw ConfigError(origin(*stages_node) + ": stages: expected [[stages]] tables");
  std::set<std::string> names;
  for (size_t i = 0; i < stages->size(); ++i) {
    const toml::table& st = *stages->get(i)->as_table();
    std::string ctx = "stages[" + std::to_string(i) + "]";
    StageSpec s;
    s.origin = origin(st);
    auto sname = read<std::string>(st, "name", ctx);
    if (!sname || sname->empty()) throw ConfigError(s.origin + ": " + ctx + ": name is required");
    s.name = *sname;
    check_identifier(s.name, origin(*st.get("name")), "stage name");
    ctx = "stage '" + s.name + "'";
    if (!names.insert(s.name).second)
      throw ConfigError(s.origin + ": duplicate stage name '" + s.name + "'");
    auto algo = read<std::string>(st, "algorithm", ctx);
    if (!algo) throw ConfigError(s.origin + ": " + ctx + ": algorithm is required");
    s.algorithm = *algo;
    check_identifier(s.algorithm, origin(*st.get("algorithm")), ctx + ": algorithm");
    // A table named like the algorithm but not equal to it: the typo is more likely in `algorithm`
    // (algorithm = "evalute" with [stages.evaluate]) than in the table's name.
    static const std::set<std::string> kStageKeys = {"name", "algorithm", "tasks", "rewards", "teachers",
                                                     "eval", "description", "model_from"};
    for (const auto& [k, v] : st) {
      std::string key(k.str());
      if (key == s.algorithm || kStageKeys.count(key) || !v.is_table()) continue;
      if (detail::edit_distance(key, s.algorithm) <= 2)
        throw ConfigError(origin(*st.get("algorithm")) + ": " + ctx + ": algorithm = \"" + s.algorithm +
                          "\" but its options table is [" + key + "] (" + key_origin(k, v) + "): did you mean algorithm = \"" +
                          key + "\"?");
    }
    check_keys(st, {"name", "algorithm", s.algorithm, "tasks", "rewards", "teachers", "eval", "description", "model_from"},
               ctx);
    s.description = read<std::string>(st, "description", ctx).value_or("");
    if (s.name == "experiment") throw ConfigError(s.origin + ": 'experiment' is reserved (model_from = \"experiment\")");
    s.model_from = read<std::string>(st, "model_from", ctx).value_or("");
    if (!s.model_from.empty() && s.model_from != "experiment" && (s.model_from == s.name || !names.count(s.model_from)))
      throw ConfigError(origin(*st.get("model_from")) + ": " + ctx + ".model_from: '" + s.model_from +
                        "' is not an earlier stage (or \"experiment\" for the [model] itself)");
    s.tasks = read_names(st, "tasks", ctx);
    s.teachers = read_names(st, "teachers", ctx);
    for (const auto& [key, names] : {std::pair{"tasks", &s.tasks}, {"teachers", &s.teachers}})
      for (const auto& n : *names) check_identifier(n, origin(*st.get(key)), ctx + "." + key + ": entry");
    if (const toml::node* r = st.get("rewards")) {
      if (const toml::table* rt = r->as_table()) {
        for (const auto& [k, w] : *rt) {
          check_identifier(std::string(k.str()), key_origin(k, w), ctx + ": reward");
          auto weight = read<double>(*rt, std::string(k.str()), ctx + ".rewards");
          s.rewards.emplace_back(std::string(k.str()), *weight);
        }
      } else {
        for (const auto& n : read_names(st, "rewards", ctx)) {
          check_identifier(n, origin(*r), ctx + ": reward");
          s.rewards.emplace_back(n, 1.0);
        }
      }
    }
    const toml::table& ev = table_at(st, "eval", ctx + ".eval");
    check_keys(ev, {"split", "limit", "num_samples", "every_steps"}, ctx + " [eval]");
    s.eval.split = read<std::string>(ev, "split", ctx + ".eval").value_or("test");
    s.eval.limit = read<int64_t>(ev, "limit", ctx + ".eval").value_or(0);
    s.eval.num_samples = read<int64_t>(ev, "num_samples", ctx + ".eval").value_or(1);
    s.eval.every_steps = read<int64_t>(ev, "every_steps", ctx + ".eval").value_or(0);
    auto eval_bound = [&](const char* key, int64_t v, int64_t lo, int64_t hi, const char* why) {
      if (v >= lo && v <= hi) return;
      const toml::node* n = ev.get(key);
      throw ConfigError((n ? origin(*n) : origin(ev)) + ": " + ctx + ".eval." + key + " must be >= " + std::to_string(lo) +
                        " and <= " + std::to_string(hi) + why + ", got " + std::to_string(v));
    };
    eval_bound("limit", s.eval.limit, 0, std::numeric_limits<int64_t>::max(), "");
    eval_bound("num_samples", s.eval.num_samples, 1, 1024, " (the engine samples at most 1024 completions per prompt)");
    eval_bound("every_steps", s.eval.every_steps, 0, std::numeric_limits<int64_t>::max(), "");
    s.options_origin = s.origin;
    if (const toml::node* opt = st.get(s.algorithm)) {
      if (!opt->is_table())
        throw ConfigError(origin(*opt) + ": " + ctx + "." + s.algorithm + ": expected a table, found " + type_name(*opt));
      s.options_origin = origin(*opt);
    }
    // Every referenced instance must exist, or names a plugin used with its defaults.
    auto implicit = [&](std::map<std::string, PluginSpec>& m, const std::string& n,
                        const std::string& section, const std::string& kind, const std::string& key) {
      if (m.count(n)) return;
      PluginSpec spec{kind, n, n, section + "." + n, toml::table{}, origin(*st.get(key))};
      m.emplace(n, std::move(spec));
    };
    for (const auto& t : s.tasks) implicit(cfg.tasks, t, "tasks", "task", "tasks");
    for (const auto& [r, w] : s.rewards) implicit(cfg.rewards, r, "rewards", "reward", "rewards");
    for (const auto& t : s.teachers) implicit(cfg.teachers, t, "teachers", "teacher", "teachers");
    cfg.stages.push_back(std::move(s));
  }
  // Move stage option tables out last (keeps sources), now that validation is done.
  toml::array& live_stages = *root.get("stages")->as_array();
  for (size_t i = 0; i < live_stages.size(); ++i) {
    toml::table& st = *live_stages.get(i)->as_table();
    if (toml::node* opt = st.get(cfg.stages[i].algorithm))
      cfg.stages[i].options = std::move(*opt->as_table());
  }
}

}  // namespace

ExperimentConfig experiment_from_tree(toml::table tree, const fs::path& file, const fs::path& base_dir,
                                      const std::vector<std::string>& overrides) {
  ExperimentConfig cfg;
  cfg.file = file;
  cfg.base_dir = fs::absolute(base_dir).lexically_normal();
  cfg.tree = std::move(tree);
  for (const auto& o : overrides) apply_override(cfg.tree, o);
  toml::table& root = cfg.tree;
  const std::string file_origin = file.string() + ":1:1";
  check_keys(root, {"experiment", "model", "plugins", "tasks", "rewards", "teachers", "stages"},
             "the experiment");
  read_experiment_table(root, file_origin, cfg);
  read_model(root, cfg);
  read_plugins_and_instances(root, cfg);
  read_stages(root, file_origin, cfg);
  return cfg;
}

ExperimentConfig load_experiment(const fs::path& file, const std::vector<std::string>& overrides) {
  return experiment_from_tree(load_toml_with_bases(file), file, fs::absolute(file).parent_path(), overrides);
}

ExperimentConfig parse_experiment(const std::string& text, const std::string& source_name, const fs::path& base_dir,
                                  const std::vector<std::string>& overrides) {
  toml::table tree;
  try {
    tree = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    const auto& s = e.source();
    throw ConfigError(source_name + ":" + std::to_string(s.begin.line) + ":" + std::to_string(s.begin.column) + ": " +
                      std::string(e.description()));
  }
  if (tree.contains("base"))
    throw ConfigError(origin(*tree.get("base")) + ": base: an experiment given as text cannot merge files");
  return experiment_from_tree(std::move(tree), source_name, base_dir, overrides);
}

}  // namespace warmup
