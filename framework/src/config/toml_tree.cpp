// See toml_tree.h.
#include "config/toml_tree.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "warmup/options.h"  // detail::suggest

namespace warmup {
namespace fs = std::filesystem;
using namespace std::string_view_literals;
namespace {

std::string display_path(const fs::path& p) {
  std::error_code ec;
  fs::path rel = fs::relative(p, fs::current_path(), ec);
  std::string r = rel.string();
  if (!ec && !r.empty() && r.rfind("../../", 0) != 0) return rel.lexically_normal().string();
  return p.lexically_normal().string();
}

// toml++ recurses once per part of a dotted key ([a.b.c...]); 50,000 parts overflow the stack.
// Keys of an experiment are a few levels deep: refuse lines whose key has more than this many.
constexpr int kMaxKeyDepth = 64;
constexpr uintmax_t kMaxTomlBytes = 16u << 20;

// The first line whose table header or dotted key (outside quotes) has more than kMaxKeyDepth
// parts, as (line, column), or (0, 0).
std::pair<size_t, size_t> too_deep_key(const std::string& text) {
  size_t line = 1, start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string_view l(text.data() + start, end - start);
    size_t first = l.find_first_not_of(" \t");
    if (first != std::string_view::npos && l[first] != '#') {
      int dots = 0;
      char quote = 0;
      for (size_t i = first; i < l.size(); ++i) {
        char c = l[i];
        if (quote) {
          if (c == quote) quote = 0;
          else if (c == '\\' && quote == '"') ++i;
        } else if (c == '"' || c == '\'') {
          quote = c;
        } else if (c == '.') {
          if (++dots >= kMaxKeyDepth) return {line, i - first + 1};
        } else if (c == '=' || (c == ']' && l[first] == '[')) {
          break;  // the key (or header) ends here
        }
      }
    }
    start = end + 1;
    ++line;
  }
  return {0, 0};
}

toml::table parse_file(const fs::path& file) {
  std::string shown = display_path(file);
  std::error_code ec;
  auto st = fs::status(file, ec);
  if (!fs::exists(st)) throw ConfigError(shown + ": no such file");
  if (fs::is_directory(st)) throw ConfigError(shown + ": is a directory, expected a TOML file");
  // A FIFO would block, /dev/zero never ends: only regular files of a sane size are read.
  if (!fs::is_regular_file(st)) throw ConfigError(shown + ": is not a regular file (a device, FIFO or socket), expected a TOML file");
  if (fs::file_size(file, ec) > kMaxTomlBytes)
    throw ConfigError(shown + ": is larger than " + std::to_string(kMaxTomlBytes >> 20) + " MiB, not an experiment file");
  std::ifstream in(file, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) throw ConfigError(shown + ": cannot be read");
  if (auto [l, c] = too_deep_key(text); l)
    throw ConfigError(shown + ":" + std::to_string(l) + ":" + std::to_string(c) + ": a key nested more than " +
                      std::to_string(kMaxKeyDepth) + " levels deep");
  try {
    return toml::parse(text, shown);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    throw ConfigError(shown + ":" + std::to_string(b.line) + ":" + std::to_string(b.column) +
                      ": " + std::string(e.description()));
  }
}

toml::table load_recursive(const fs::path& file, std::vector<fs::path>& chain) {
  fs::path canon = fs::weakly_canonical(file);
  if (std::find(chain.begin(), chain.end(), canon) != chain.end())
    throw ConfigError(display_path(file) + ": base files form a cycle");
  chain.push_back(canon);
  toml::table t = parse_file(file);
  toml::node* base = t.get("base");
  if (!base) {
    chain.pop_back();
    return t;
  }
  std::vector<std::pair<std::string, std::string>> bases;  // (path, origin)
  if (auto s = base->value_exact<std::string>()) {
    bases.emplace_back(*s, origin(*base));
  } else if (const toml::array* arr = base->as_array()) {
    for (const auto& e : *arr) {
      auto s2 = e.value_exact<std::string>();
      if (!s2) throw ConfigError(origin(e) + ": base: expected string, found " + type_name(e));
      bases.emplace_back(*s2, origin(e));
    }
  } else {
    throw ConfigError(origin(*base) + ": base: expected string or array of strings, found " +
                      type_name(*base));
  }
  toml::table merged;
  for (const auto& [rel, where] : bases) {
    fs::path p = file.parent_path() / rel;
    if (!fs::exists(p)) throw ConfigError(where + ": base file " + display_path(p) + " not found");
    deep_merge(merged, load_recursive(p, chain));
  }
  t.erase("base");
  deep_merge(merged, std::move(t));
  chain.pop_back();
  return merged;
}

bool is_named_table_array(const toml::node& n) {
  const toml::array* a = n.as_array();
  if (!a || a->empty()) return false;
  for (const auto& e : *a) {
    const toml::table* t = e.as_table();
    if (!t || !t->get("name") || !t->get("name")->is_string()) return false;
  }
  return true;
}

toml::table* find_named(toml::array& a, std::string_view name) {
  for (auto& e : a)
    if (auto* t = e.as_table(); t && t->get("name") && t->get("name")->value_or(""sv) == name)
      return t;
  return nullptr;
}

void origins_rec(const toml::node& n, const std::string& path,
                 std::map<std::string, std::string>& out) {
  if (!path.empty()) out[path] = origin(n);
  if (const toml::table* t = n.as_table()) {
    for (const auto& [k, v] : *t) origins_rec(v, path.empty() ? std::string(k.str()) : path + "." + std::string(k.str()), out);
  }
}

nlohmann::json to_json(const toml::node& n) {
  if (auto v = n.value_exact<std::string>()) return *v;
  if (auto v = n.value_exact<int64_t>()) return *v;
  if (auto v = n.value_exact<double>()) return *v;
  if (auto v = n.value_exact<bool>()) return *v;
  if (const toml::array* a = n.as_array()) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& e : *a) j.push_back(to_json(e));
    return j;
  }
  if (const toml::table* t = n.as_table()) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [k, v] : *t) j[std::string(k.str())] = to_json(v);
    return j;
  }
  std::ostringstream os;
  n.visit([&](const auto& x) { os << x; });
  return os.str();
}

void flatten_rec(const toml::node& n, const std::string& key, std::vector<FlatValue>& out) {
  if (const toml::table* t = n.as_table()) {
    for (const auto& [k, v] : *t)
      flatten_rec(v, key.empty() ? std::string(k.str()) : key + "." + std::string(k.str()), out);
    return;
  }
  if (is_named_table_array(n)) {
    for (const auto& e : *n.as_array()) {
      const toml::table& t = *e.as_table();
      flatten_rec(t, key + "." + std::string(t.get("name")->value_or(""sv)), out);
    }
    return;
  }
  FlatValue f{key, type_name(n), "", 0};
  if (auto v = n.value_exact<std::string>()) f.text = *v;
  else if (auto i = n.value_exact<int64_t>()) f.integer = *i, f.number = double(*i), f.text = std::to_string(*i);
  else if (auto d = n.value_exact<double>()) f.number = *d, f.text = to_json(n).dump();
  else if (auto b = n.value_exact<bool>()) f.number = *b, f.text = *b ? "true" : "false";
  else f.text = to_json(n).dump();
  out.push_back(std::move(f));
}

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> segs;
  std::string cur;
  for (char c : path) {
    if (c == '.' || c == '[' || c == ']') {
      if (!cur.empty()) segs.push_back(cur), cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) segs.push_back(cur);
  return segs;
}

}  // namespace


toml::table load_toml_with_bases(const fs::path& file) {
  std::vector<fs::path> chain;
  return load_recursive(file, chain);
}

void deep_merge(toml::table& dst, toml::table&& src) {
  for (auto& [k, v] : src) {
    toml::node* existing = dst.get(k);
    if (existing && existing->is_table() && v.is_table()) {
      deep_merge(*existing->as_table(), std::move(*v.as_table()));
    } else if (existing && is_named_table_array(*existing) && is_named_table_array(v)) {
      toml::array& da = *existing->as_array();
      for (auto& e : *v.as_array()) {
        toml::table& st = *e.as_table();
        if (toml::table* match = find_named(da, st.get("name")->value_or(""sv)))
          deep_merge(*match, std::move(st));
        else
          da.push_back(std::move(st));
      }
    } else {
      dst.insert_or_assign(k, std::move(v));
    }
  }
}

std::string origin(const toml::node& node) {
  const auto& src = node.source();
  std::string file = src.path ? *src.path : std::string("<unknown>");
  if (file.rfind("--set ", 0) == 0) return file;
  return file + ":" + std::to_string(src.begin.line) + ":" + std::to_string(src.begin.column);
}

std::map<std::string, std::string> origins(const toml::table& t) {
  std::map<std::string, std::string> out;
  origins_rec(t, "", out);
  return out;
}

std::string to_toml(const toml::table& t) {
  std::ostringstream os;
  os << toml::toml_formatter(t, toml::format_flags::none);
  return os.str();
}

std::string type_name(const toml::node& n) { return detail::type_name(n); }

void check_keys(const toml::table& t, const std::vector<std::string>& allowed,
                std::string_view context) {
  for (const auto& [k, v] : t) {
    std::string key(k.str());
    if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
    std::set<std::string> known(allowed.begin(), allowed.end());
    throw ConfigError(origin(v) + ": unknown key '" + key + "' in " + std::string(context) +
                      detail::suggest(key, known));
  }
}

PluginInit make_plugin_init(std::string kind, std::string plugin, std::string instance,
                            const toml::table& options, std::string table_origin, uint64_t seed,
                            std::string base_dir) {
  PluginInit init;
  init.base_dir = std::move(base_dir);
  init.kind = std::move(kind);
  init.plugin = std::move(plugin);
  init.instance = std::move(instance);
  init.config_toml = to_toml(options);
  init.config_origins = origins(options);
  init.table_origin = std::move(table_origin);
  init.seed = seed;
  return init;
}

std::vector<FlatValue> flatten(const toml::table& t) {
  std::vector<FlatValue> out;
  flatten_rec(t, "", out);
  return out;
}

void apply_override(toml::table& root, std::string_view assignment) {
  size_t eq = assignment.find('=');
  if (eq == std::string_view::npos || eq == 0)
    throw ConfigError("--set " + std::string(assignment) + ": expected path=value");
  std::string path(assignment.substr(0, eq));
  std::string text(assignment.substr(eq + 1));
  std::string where = "--set " + std::string(assignment);
  std::vector<std::string> segs = split_path(path);
  if (segs.empty()) throw ConfigError(where + ": empty path");

  toml::node* cur = &root;
  for (size_t i = 0; i + 1 < segs.size(); ++i) {
    const std::string& s = segs[i];
    toml::node* next = nullptr;
    if (toml::table* t = cur->as_table()) {
      next = t->get(s);
      if (!next) next = &t->insert_or_assign(s, toml::table{}).first->second;
    } else if (toml::array* a = cur->as_array()) {
      bool numeric = !s.empty() && std::all_of(s.begin(), s.end(), ::isdigit);
      if (numeric && std::stoul(s) < a->size()) next = a->get(std::stoul(s));
      else if (!numeric) next = find_named(*a, s);
      if (!next) throw ConfigError(where + ": no element '" + s + "' in array '" + segs[i - 1] + "'");
    } else {
      throw ConfigError(where + ": '" + s + "' is inside a " + type_name(*cur) + ", not a table");
    }
    cur = next;
  }
  toml::table* parent = cur->as_table();
  if (!parent) throw ConfigError(where + ": cannot set inside a " + type_name(*cur));
  const std::string& key = segs.back();
  toml::node* existing = parent->get(key);

  std::optional<toml::table> parsed;
  try {
    parsed = toml::parse("v = " + text, where);
  } catch (const toml::parse_error&) {
  }
  toml::node* value = parsed ? parsed->get("v") : nullptr;
  // Over a string, a number stays text (--set experiment.name=123); a boolean stays a boolean, so
  // an option that takes a bool or a string (bf16 = "auto") can be switched to false.
  if (!value || (existing && existing->is_string() && !value->is_string() && !value->is_boolean())) {
    if (existing && !existing->is_string())
      throw ConfigError(where + ": expected " + type_name(*existing) + ", found '" + text +
                        "' (not a TOML " + type_name(*existing) + ")");
    toml::table literal;  // plain text becomes a string; reparse so its origin is the --set
    literal.insert("v", text);
    parsed = toml::parse(to_toml(literal), where);
    value = parsed->get("v");
  }
  if (existing && existing->type() != value->type() && !(existing->is_string() && value->is_boolean())) {
    if (existing->is_floating_point() && value->is_integer()) {
      toml::table conv = toml::parse("v = " + std::to_string(*value->value<int64_t>()) + ".0", where);
      parent->insert_or_assign(key, std::move(*conv.get("v")));
      return;
    }
    throw ConfigError(where + ": expected " + type_name(*existing) + ", found " + type_name(*value));
  }
  parent->insert_or_assign(key, std::move(*value));
}

}  // namespace warmup
