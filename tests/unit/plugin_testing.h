// For plugin tests that load the real plugin libraries: the host's registry over the build's
// plugin directory (WARMUP_PLUGIN_DIR, a compile definition of the test target) and a PluginInit
// made from TOML text, as the runner makes them for [tasks.x] / [rewards.x].
#pragma once

#include <string>

#include "config/toml_tree.h"
#include "plugins/registry.h"
#include "warmup/sdk.h"

namespace warmup::testing {

struct NullHost : Host {
  void log(LogLevel, std::string_view, std::string_view) override {}
  void set_resolved_config(std::string_view, std::string_view) override {}
};

inline const PluginRegistry& registry() {
  static PluginRegistry reg = [] {
    PluginRegistry r;
    r.scan({WARMUP_PLUGIN_DIR});
    return r;
  }();
  return reg;
}

// `kind` is "task", "reward", ...; relative paths in the options resolve against `base_dir`.
inline PluginInit plugin_init(const std::string& kind, const std::string& text, const std::string& base_dir) {
  static NullHost host;
  PluginInit i = make_plugin_init(kind, "x", kind + "s.x", toml::parse(text), "test:1:1", 0, base_dir);
  i.host = &host;
  return i;
}

}  // namespace warmup::testing
