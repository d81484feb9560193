// The SDK's Options: typed reads, defaults recorded in the resolved table, unknown keys and type
// errors reported at the key's file:line:col.
#include <doctest/doctest.h>

#include <cmath>

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

TEST_CASE("NaN and infinities are refused for every float key unless the plugin allows them") {
  RecordingHost host;
  PluginInit init = init_for("lr = inf\nt = nan\nw = -inf\nxs = [1.0, inf]\nok = 0.5\nfree = inf\n", &host);
  Options o(init);
  CHECK_THROWS_WITH_AS(o.get<double>("lr", 1e-6), "exp.toml:1:6: [tasks.demo] lr: must be a finite number, got inf",
                       ConfigError);
  CHECK_THROWS_WITH_AS(o.get<double>("t", 0.7), "exp.toml:2:5: [tasks.demo] t: must be a finite number, got nan",
                       ConfigError);
  CHECK_THROWS_WITH_AS(o.require<double>("w"), "exp.toml:3:5: [tasks.demo] w: must be a finite number, got -inf",
                       ConfigError);
  CHECK_THROWS_WITH_AS(o.get<std::vector<double>>("xs", {}),
                       "exp.toml:4:6: [tasks.demo] xs: element 1: must be a finite number, got inf", ConfigError);
  CHECK_THROWS_WITH_AS(o.optional<float>("t"), "exp.toml:2:5: [tasks.demo] t: must be a finite number, got nan",
                       ConfigError);
  CHECK(o.get<double>("ok", 1.0) == 0.5);
  CHECK(std::isinf(o.allow_nonfinite("free").get<double>("free", 1.0)));
}

TEST_CASE("bounds: the error names the bound and the value; defaults are checked too") {
  RecordingHost host;
  PluginInit init = init_for("lr = 5.0\nbatch = 4611686018427387904\nepochs = 1e300\nrate = inf\nsizes = [3, 0]\n"
                             "beta = 1.0\nfine = 0.25\n",
                             &host);
  Options o(init);
  CHECK_THROWS_WITH_AS(o.get<double>("lr", 1e-6, above(0).at_most(1)),
                       "exp.toml:1:6: [tasks.demo] lr must be > 0 and <= 1, got 5", ConfigError);
  CHECK_THROWS_WITH_AS(o.get<int64_t>("batch", 1, at_least(1).at_most(1024, "(rows)")),
                       "exp.toml:2:9: [tasks.demo] batch must be >= 1 and <= 1024 (rows), got 4611686018427387904",
                       ConfigError);
  CHECK_THROWS_WITH_AS(o.get<double>("epochs", 3.0, above(0).at_most(1e6)),
                       "exp.toml:3:10: [tasks.demo] epochs must be > 0 and <= 1000000, got 1e+300", ConfigError);
  // With only a lower bound, inf would pass it: refused as not finite, bound still named.
  CHECK_THROWS_WITH_AS(o.get<double>("rate", 1.0, at_least(0)),
                       "exp.toml:4:8: [tasks.demo] rate must be a finite number >= 0, got inf", ConfigError);
  CHECK_THROWS_WITH_AS(o.get<std::vector<int64_t>>("sizes", {}, at_least(1)),
                       "exp.toml:5:9: [tasks.demo] sizes must be >= 1, got 0", ConfigError);
  CHECK_THROWS_WITH_AS(o.get<double>("beta", 0.9, at_least(0).below(1)),
                       "exp.toml:6:8: [tasks.demo] beta must be >= 0 and < 1, got 1", ConfigError);
  CHECK_THROWS_WITH_AS(o.get<double>("absent", -1.0, at_least(0)),
                       "exp.toml:1:1: [tasks.demo] absent must be >= 0, got -1", ConfigError);
  CHECK(o.get<double>("fine", 0.5, above(0).at_most(1)) == 0.25);
  CHECK(o.get<int64_t>("missing", 7, at_least(1)) == 7);
}

TEST_CASE("fits_in_memory: the bound is what this machine's memory holds, and it is named") {
  uint64_t mem = machine_memory_bytes();
  CHECK(mem > (uint64_t(1) << 26));
  CHECK(memory_capacity(4096) == int64_t(mem / 4096));
  Bounds b = fits_in_memory(0, 4096, "puzzles of ~4 KiB");
  CHECK(b.contains(0));
  CHECK(b.contains(static_cast<long double>(mem / 4096)));
  CHECK(!b.contains(static_cast<long double>(mem / 4096) + 1));
  CHECK(!b.contains(1e12L * 1e6L));
  std::string d = b.describe(true);
  CHECK(d.find("must be >= 0 and <= " + std::to_string(mem / 4096) + " (puzzles of ~4 KiB in this machine's ") == 0);
  CHECK(d.find(" GiB of memory)") != std::string::npos);
}

TEST_CASE("safe names: what may become a path component") {
  for (const char* ok : {"sft-warmup", "eval_base", "kk", "mmlu_pro_physics", "a.b", "v1.2-x", "A"})
    CHECK_MESSAGE(is_safe_name(ok), ok);
  for (const char* bad : {"", ".", "..", "../../../escape-stage", "a/b", "/abs", "a..b", "sp ace", "tab\t",
                          "semi;colon", "uni\xc3\xa9", "back\\slash", "x\ny"})
    CHECK_MESSAGE(!is_safe_name(bad), bad);
  CHECK(!is_safe_name(std::string(129, 'a')));
  CHECK(is_safe_name(std::string(128, 'a')));
}
