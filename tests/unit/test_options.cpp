// The SDK's Options: typed reads, defaults recorded in the resolved table, unknown keys and type
// errors reported at the key's file:line:col.
#include <doctest/doctest.h>

#include "config/toml_tree.h"
#include "warmup/options.h"

using namespace warmup;

namespace {

struct RecordingHost : Host {
  std::string resolved;
  void log(LogLevel, std::string_view, std::string_view) override {}
  void set_resolved_config(std::string_view, std::string_view toml) override { resolved = toml; }
};

PluginInit init_for(const std::string& text, RecordingHost* host) {
  toml::table t = toml::parse(text, std::string("exp.toml"));
  PluginInit init = make_plugin_init("task", "demo", "tasks.demo", t, "exp.toml:1:1", 5);
  init.host = host;
  return init;
}

}  // namespace

TEST_CASE("typed reads, defaults and the resolved table") {
  RecordingHost host;
  PluginInit init = init_for("count = 3\nratio = 2\nnames = [\"a\", \"b\"]\nsub = { k = true }\n", &host);
  Options o(init);
  CHECK(o.get<int64_t>("count", 1) == 3);
  CHECK(o.get<double>("ratio", 0.5) == 2.0);  // integer accepted for float
  CHECK(o.get<std::vector<std::string>>("names", {}) == std::vector<std::string>{"a", "b"});
  CHECK(o.get<bool>("sub.k", false) == true);
  CHECK(o.get<std::string>("mode", "fast") == "fast");  // default
  CHECK(o.seed() == 5);
  o.finish();
  toml::table r = toml::parse(host.resolved);
  CHECK(r["mode"].value<std::string>() == "fast");
  CHECK(r["count"].value<int64_t>() == 3);
  CHECK(r["ratio"].is_floating_point());
  CHECK(r.at_path("sub.k").value<bool>() == true);
}

TEST_CASE("unknown keys are rejected at their place with a suggestion") {
  RecordingHost host;
  PluginInit init = init_for("count = 3\ncuont = 4\nextra = 1\n", &host);
  Options o(init);
  o.get<int64_t>("count", 1);
  try {
    o.finish();
    FAIL("finish() accepted unknown keys");
  } catch (const ConfigError& e) {
    std::string msg = e.what();
    CHECK(msg.find("exp.toml:2:9: unknown key 'cuont' in [tasks.demo] (did you mean 'count'?)") == 0);
    CHECK(msg.find("also unknown: extra (exp.toml:3:9)") != std::string::npos);
  }
  CHECK(host.resolved.empty());
}

TEST_CASE("type errors, range errors and required keys") {
  RecordingHost host;
  PluginInit init = init_for("count = \"many\"\nsmall = 300\nlist = [1, \"x\"]\n", &host);
  Options o(init);
  CHECK_THROWS_WITH_AS(o.get<int64_t>("count", 1), "exp.toml:1:9: [tasks.demo] count: expected integer, found string", ConfigError);
  CHECK_THROWS_WITH_AS(o.get<int8_t>("small", 1), "exp.toml:2:9: [tasks.demo] small: integer 300 out of range", ConfigError);
  CHECK_THROWS_WITH_AS(o.get<std::vector<int64_t>>("list", {}),
                       "exp.toml:3:8: [tasks.demo] list: element 1: expected integer, found string", ConfigError);
  CHECK_THROWS_WITH_AS(o.require<std::string>("path"),
                       "exp.toml:1:1: [tasks.demo] missing required key 'path' (string)", ConfigError);
  CHECK_THROWS_WITH_AS(o.fail("count", "must be > 0"), "exp.toml:1:9: [tasks.demo] count must be > 0", ConfigError);
}
