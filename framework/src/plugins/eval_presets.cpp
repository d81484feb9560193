// See eval_presets.h.
#include "plugins/eval_presets.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "config/toml_tree.h"
#include "util/errors.h"
#include "warmup/options.h"

namespace warmup {
namespace fs = std::filesystem;
namespace {

constexpr const char* kSuffix = ".eval.toml";

bool is_preset_file(const fs::path& p) {
  std::string n = p.filename().string();
  return n.size() > std::string(kSuffix).size() && n.ends_with(kSuffix);
}

std::string want_string(const toml::table& t, const char* key, const std::string& ctx, bool required) {
  const toml::node* n = t.get(key);
  if (!n) {
    if (required) throw ConfigError(origin(t) + ": " + ctx + "." + key + " is required");
    return "";
  }
  auto s = n->value_exact<std::string>();
  if (!s) throw ConfigError(origin(*n) + ": " + ctx + "." + key + ": expected a string, found " + type_name(*n));
  return *s;
}

std::vector<std::string> want_strings(const toml::table& t, const char* key, const std::string& ctx) {
  std::vector<std::string> out;
  const toml::node* n = t.get(key);
  if (!n) return out;
  const toml::array* a = n->as_array();
  if (!a) throw ConfigError(origin(*n) + ": " + ctx + "." + key + ": expected an array of strings, found " + type_name(*n));
  for (const auto& e : *a) {
    auto s = e.value_exact<std::string>();
    if (!s) throw ConfigError(origin(e) + ": " + ctx + "." + key + ": expected strings, found " + type_name(e));
    out.push_back(*s);
  }
  return out;
}

toml::table want_table(const toml::table& t, const char* key, const std::string& ctx) {
  const toml::node* n = t.get(key);
  if (!n) return {};
  if (!n->is_table()) throw ConfigError(origin(*n) + ": " + ctx + "." + key + ": expected a table, found " + type_name(*n));
  return *n->as_table();
}

EvalPreset read_preset(const std::string& name, const toml::table& t, const fs::path& file) {
  std::string ctx = "[" + name + "]";
  check_keys(t, {"description", "aliases", "task", "split", "reward", "group_by", "argument", "python_option",
                 "options", "data", "reward_options"},
             ctx);
  EvalPreset p;
  p.name = name;
  p.file = file;
  p.origin = origin(t);
  p.description = want_string(t, "description", ctx, false);
  p.aliases = want_strings(t, "aliases", ctx);
  p.task = want_string(t, "task", ctx, true);
  p.reward = want_string(t, "reward", ctx, true);
  if (std::string s = want_string(t, "split", ctx, false); !s.empty()) p.split = s;
  p.group_by = want_strings(t, "group_by", ctx);
  p.python_option = want_string(t, "python_option", ctx, false);
  if (const toml::node* a = t.get("argument")) {
    const toml::table* at = a->as_table();
    if (!at) throw ConfigError(origin(*a) + ": " + ctx + ".argument: expected a table {option = \"KEY\"}");
    check_keys(*at, {"option", "list", "name"}, ctx + ".argument");
    p.argument_option = want_string(*at, "option", ctx + ".argument", true);
    p.argument_name = want_string(*at, "name", ctx + ".argument", false);
    if (p.argument_name.empty()) p.argument_name = "VALUE";
    if (const toml::node* l = at->get("list")) {
      auto b = l->value_exact<bool>();
      if (!b) throw ConfigError(origin(*l) + ": " + ctx + ".argument.list: expected a boolean");
      p.argument_list = *b;
    }
  }
  p.options = want_table(t, "options", ctx);
  p.data = want_table(t, "data", ctx);
  for (const auto& [k, v] : p.data)
    if (!v.is_string()) throw ConfigError(origin(v) + ": " + ctx + ".data." + std::string(k.str()) +
                                          ": expected a path (string) relative to --data");
  p.reward_options = want_table(t, "reward_options", ctx);
  for (const auto& n : p.aliases)
    if (!is_safe_name(n)) throw ConfigError(p.origin + ": " + ctx + ": alias '" + n + "' is not a valid name: use " + kSafeNameRule);
  return p;
}

std::string instance_name(const std::string& s) {
  std::string out;
  for (char c : s) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-') ? c : '_';
  return out;
}

}  // namespace

void EvalPresets::scan(const std::vector<fs::path>& dirs) {
  for (const auto& dir : dirs) {
    searched_.push_back(dir);
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (is_preset_file(e.path())) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    std::map<std::string, std::string> here;  // name -> origin, within this directory
    for (const auto& f : files) {
      toml::table root;
      try {
        root = toml::parse_file(f.string());
      } catch (const toml::parse_error& e) {
        const auto& s = e.source();
        throw ConfigError(f.string() + ":" + std::to_string(s.begin.line) + ":" + std::to_string(s.begin.column) +
                          ": " + std::string(e.description()));
      }
      for (const auto& [k, v] : root) {
        std::string name(k.str());
        if (!v.is_table()) throw ConfigError(origin(v) + ": eval preset '" + name + "': expected a table [" + name + "]");
        if (!is_safe_name(name))
          throw ConfigError(origin(v) + ": eval preset '" + name + "' is not a valid name: use " + kSafeNameRule);
        EvalPreset p = read_preset(name, *v.as_table(), f);
        std::vector<std::string> keys{p.name};
        keys.insert(keys.end(), p.aliases.begin(), p.aliases.end());
        for (const auto& key : keys)
          if (auto [it, fresh] = here.emplace(key, p.origin); !fresh)
            throw ConfigError(p.origin + ": eval preset name '" + key + "' is also defined at " + it->second);
        bool shadowed = by_name_.count(p.name) > 0;  // an earlier directory has it: that one wins
        if (shadowed) continue;
        presets_.push_back(std::move(p));
        for (const auto& key : keys) by_name_.emplace(key, presets_.size() - 1);
      }
    }
  }
}

const EvalPreset* EvalPresets::find(const std::string& name) const {
  auto it = by_name_.find(name.substr(0, name.find(':')));
  return it == by_name_.end() ? nullptr : &presets_[it->second];
}

std::string EvalPresets::known() const {
  std::vector<std::string> names;
  for (const auto& p : presets_) names.push_back(p.name + (p.argument_option.empty() ? "" : "[:" + p.argument_name + "]"));
  std::sort(names.begin(), names.end());
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out.empty() ? "none found: no *.eval.toml in the plugin directories" : out;
}

EvalTask EvalPresets::instantiate(const std::string& spec, const fs::path& data, bool need_data,
                                  const std::string& python) const {
  size_t colon = spec.find(':');
  std::string arg = colon == std::string::npos ? "" : spec.substr(colon + 1);
  const EvalPreset* p = find(spec);
  if (!p) throw UsageError("unknown task '" + spec + "' (eval presets: " + known() + ")");
  if (colon != std::string::npos && p->argument_option.empty())
    throw UsageError("task '" + spec + "': " + p->name + " takes no ':VALUE' (preset " + p->origin + ")");
  if (colon != std::string::npos && arg.empty()) throw UsageError("task '" + spec + "': empty " + p->argument_name);
  if (data.empty() && need_data && !p->data.empty())
    throw UsageError("task '" + spec + "' needs its data: pass --data DIR (laid out as shared/data) or set $WARMUP_DATA");
  EvalTask t;
  t.spec = spec;
  t.instance = arg.empty() ? p->name : instance_name(p->name + "_" + arg);
  t.plugin = p->task;
  t.options = p->options;
  t.split = p->split;
  t.reward = p->reward;
  t.reward_options = p->reward_options;
  t.group_by = p->group_by;
  t.preset_file = p->file.string();
  if (!data.empty()) {
    for (const auto& [k, v] : p->data) {
      fs::path path = fs::absolute(data / *v.value<std::string>()).lexically_normal();
      if (!fs::exists(path))
        throw UsageError("task '" + spec + "': " + path.string() + " not found (--data " + data.string() +
                         " is laid out as " + p->name + "'s preset says, " + origin(v) + ")");
      t.options.insert_or_assign(k, path.string());
    }
  }
  if (!arg.empty()) {
    if (p->argument_list) t.options.insert_or_assign(p->argument_option, toml::array{arg});
    else t.options.insert_or_assign(p->argument_option, arg);
  }
  if (!python.empty() && !p->python_option.empty()) t.reward_options.insert_or_assign(p->python_option, python);
  return t;
}

}  // namespace warmup
