// Services the host gives every plugin object, and what a plugin receives when it is created.
//
// Plugins never link spdlog or SQLite: they log and report through these virtual interfaces,
// which the host implements. Nothing here owns plugin objects.
#pragma once

#include <cstdint>
#include <map>
#include <sstream>
#include <string>
#include <string_view>

#include "types.h"

namespace warmup {

class Host {
 public:
  virtual ~Host() = default;
  // Logs one line attributed to the calling plugin instance.
  virtual void log(LogLevel level, std::string_view instance, std::string_view message) = 0;
  // The plugin's configuration with every default filled in (TOML text); stored with the run.
  virtual void set_resolved_config(std::string_view instance, std::string_view toml) = 0;
};

// Everything a plugin's constructor gets.
struct PluginInit {
  std::string kind;      // "task" | "reward" | "algorithm" | "teacher"
  std::string plugin;    // registry name of the plugin, e.g. "exact_match"
  std::string instance;  // config path of this instance, e.g. "rewards.exact" or "stages.eval.evaluate"
  std::string config_toml;  // the plugin's own sub-table only, as TOML text
  std::map<std::string, std::string> config_origins;  // dotted key -> "file:line:col"
  std::string table_origin;  // where the sub-table is declared (or the stage, if implicit)
  uint64_t seed = 0;         // experiment seed
  Host* host = nullptr;      // never null when created by the host
  // ABI 1.1: directory of the experiment file; resolve relative data paths against it.
  std::string base_dir;
};

// Small convenience for plugins: `Log log(init); log.info() << "loaded " << n;`
class Log {
 public:
  explicit Log(const PluginInit& init) : host_(init.host), instance_(init.instance) {}
  class Line {
   public:
    Line(Host* host, const std::string& instance, LogLevel level)
        : host_(host), instance_(instance), level_(level) {}
    Line(const Line&) = delete;
    ~Line() {
      if (host_) host_->log(level_, instance_, os_.str());
    }
    template <class T>
    Line& operator<<(const T& v) {
      os_ << v;
      return *this;
    }

   private:
    Host* host_;
    const std::string& instance_;
    LogLevel level_;
    std::ostringstream os_;
  };
  Line debug() const { return Line(host_, instance_, LogLevel::kDebug); }
  Line info() const { return Line(host_, instance_, LogLevel::kInfo); }
  Line warn() const { return Line(host_, instance_, LogLevel::kWarn); }
  Line error() const { return Line(host_, instance_, LogLevel::kError); }

 private:
  Host* host_;
  std::string instance_;
};

}  // namespace warmup
