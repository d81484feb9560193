// For plugin tests: load plugin libraries straight from a build directory and make a PluginInit
// from TOML text, as the host does for an experiment's [tasks.x] / [rewards.x] / ... table. Needs
// only the SDK (and dlopen, in glibc): a plugin's tests link none of the host's code.
//
//   warmup::testing::PluginLibraries libs(WARMUP_PLUGIN_DIR);        // every *.so in the folder
//   auto task = libs.create<warmup::Task>("math", warmup::testing::plugin_init("task",
//                                         "test = \"math500_head.jsonl\"", FIXTURE_DIR));
//
// Errors: PluginError (no such plugin, interface mismatch, create failed: the plugin's message,
// which for configuration errors starts with "test:LINE:COL"), toml::parse_error (bad TOML text).
#pragma once

#include <dlfcn.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

#include "abi.h"
#include "host.h"
#include "types.h"

namespace warmup::testing {

// A Host that drops logs and resolved configs.
struct NullHost : Host {
  void log(LogLevel, std::string_view, std::string_view) override {}
  void set_resolved_config(std::string_view, std::string_view) override {}
};

inline Host& null_host() {
  static NullHost host;
  return host;
}

namespace detail {

inline void origins(const toml::table& t, const std::string& prefix, std::map<std::string, std::string>& out) {
  for (const auto& [k, v] : t) {
    std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    const auto& src = v.source();
    out[key] = (src.path ? *src.path : std::string("test")) + ":" + std::to_string(src.begin.line) + ":" +
               std::to_string(src.begin.column);
    if (const toml::table* sub = v.as_table()) origins(*sub, key, out);
  }
}

}  // namespace detail

// What the host passes a `kind` plugin ("task", "reward", "algorithm", "teacher") configured by
// `toml_text` (the plugin's own table); positions read "test:LINE:COL", relative paths in the
// options resolve against `base_dir`.
inline PluginInit plugin_init(const std::string& kind, const std::string& toml_text, const std::string& base_dir,
                              uint64_t seed = 0) {
  toml::table t = toml::parse(toml_text, std::string("test"));
  PluginInit init;
  init.base_dir = base_dir;
  init.kind = kind;
  init.plugin = "x";
  init.instance = kind + "s.x";
  init.config_toml = toml_text;
  detail::origins(t, "", init.config_origins);
  init.table_origin = "test:1:1";
  init.seed = seed;
  init.host = &null_host();
  return init;
}

template <class I>
using TestPluginPtr = std::unique_ptr<I, std::function<void(I*)>>;

// The plugin libraries (*.so) of one folder, loaded with dlopen (in name order; the first entry of
// a kind/name wins). Libraries stay loaded for the process, as in the host.
class PluginLibraries {
 public:
  explicit PluginLibraries(const std::filesystem::path& dir) : dir_(dir) {
    std::vector<std::filesystem::path> libs;
    for (const auto& e : std::filesystem::directory_iterator(dir))
      if (e.path().extension() == ".so") libs.push_back(e.path());
    std::sort(libs.begin(), libs.end());
    for (const auto& p : libs) {
      void* h = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!h) {
        failures_.push_back(p.string() + ": " + dlerror());
        continue;
      }
      auto fn = reinterpret_cast<warmup_manifest_fn>(dlsym(h, WARMUP_ENTRY_SYMBOL));
      const warmup_plugin_manifest* m = fn ? fn() : nullptr;
      if (!m || m->abi_major != WARMUP_ABI_MAJOR || m->abi_minor > WARMUP_ABI_MINOR) {
        failures_.push_back(p.string() + ": no manifest of ABI " + std::to_string(WARMUP_ABI_MAJOR) + ".<=" +
                            std::to_string(WARMUP_ABI_MINOR));
        continue;
      }
      for (size_t i = 0; i < m->entry_count; ++i) entries_.push_back({p, m->entries[i]});
    }
  }

  // Creates plugin `name` of I's kind (I = Task, Reward, Algorithm, Teacher). Throws PluginError,
  // whose message starts with `where` unless the plugin's own does (configuration errors).
  template <class I>
  TestPluginPtr<I> create(const std::string& name, const PluginInit& init, const std::string& where = "test") const {
    const Entry* e = nullptr;
    for (const auto& x : entries_)
      if (std::string_view(x.entry.kind) == I::kKind && name == x.entry.name) {
        e = &x;
        break;
      }
    if (!e) {
      std::string why = "no " + std::string(I::kKind) + " plugin '" + name + "' in " + dir_.string();
      for (const auto& f : failures_) why += "; " + f;
      throw PluginError(why);
    }
    if (std::string_view(e->entry.interface_id) != I::kInterfaceId || e->entry.interface_version != I::kInterfaceVersion)
      throw PluginError(e->library.string() + ": " + name + " implements " + e->entry.interface_id + " v" +
                        std::to_string(e->entry.interface_version) + ", expected " + I::kInterfaceId + " v" +
                        std::to_string(I::kInterfaceVersion));
    char err[4096] = {0};
    void* obj = e->entry.create(&init, err, sizeof(err));
    if (!obj) {
      std::string reason = err[0] ? err : "create returned null";
      if (reason.rfind(where + ":", 0) == 0) throw PluginError(reason);
      throw PluginError(where + ": " + I::kKind + " '" + name + "' (" + e->library.filename().string() +
                        ") failed in create: " + reason);
    }
    warmup_destroy_fn destroy = e->entry.destroy;
    return TestPluginPtr<I>(static_cast<I*>(obj), [destroy](I* p) { destroy(static_cast<void*>(p)); });
  }

  const std::vector<std::string>& failures() const { return failures_; }

 private:
  struct Entry {
    std::filesystem::path library;
    warmup_plugin_entry entry;
  };
  std::filesystem::path dir_;
  std::vector<Entry> entries_;
  std::vector<std::string> failures_;
};

#ifdef WARMUP_PLUGIN_DIR
// The build's plugin libraries (WARMUP_PLUGIN_DIR: a compile definition of the test target),
// loaded once per test program.
inline const PluginLibraries& build_plugins() {
  static const PluginLibraries libs(WARMUP_PLUGIN_DIR);
  return libs;
}
#endif

}  // namespace warmup::testing
