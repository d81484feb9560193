// The plugin loader against real shared libraries built in tests/plugins: each broken library is
// reported with its reason while the good ones keep working.
#include <doctest/doctest.h>

#include <algorithm>

#include "config/toml_tree.h"
#include "helpers.h"
#include "plugins/registry.h"
#include "util/errors.h"
#include "warmup/sdk.h"

using namespace warmup;
namespace fs = std::filesystem;

namespace {

const fs::path kDir = WARMUP_TEST_PLUGIN_DIR;

std::string reason_for(const PluginRegistry& reg, const std::string& needle) {
  for (const auto& f : reg.failures())
    if (f.library.string().find(needle) != std::string::npos) return f.entry + ": " + f.reason;
  return "";
}

struct NullHost : Host {
  void log(LogLevel, std::string_view, std::string_view) override {}
  void set_resolved_config(std::string_view, std::string_view) override {}
};

PluginInit init_of(const std::string& text = "") {
  static NullHost host;
  PluginInit init = make_plugin_init("task", "x", "tasks.x", toml::parse(text, std::string("e.toml")), "e.toml:4:1", 0);
  init.host = &host;
  return init;
}

}  // namespace

TEST_CASE("a good plugin loads, lists its entries and creates working objects") {
  PluginRegistry reg;
  reg.scan({kDir / "good"});
  CHECK(reg.failures().empty());
  const PluginEntryInfo* t = reg.find("task", "good_task");
  REQUIRE(t);
  CHECK(t->plugin_version == "1.2.3");
  CHECK(t->interface_id == "warmup.task");
  CHECK(reg.find("reward", "good_reward"));
  auto task = reg.create<Task>("good_task", init_of("n = 4"), "e.toml:4:1");
  CHECK(task->examples("test").size() == 4);
  auto reward = reg.create<Reward>("good_reward", init_of(), "e.toml:4:1");
  CHECK(reward->score({"id", "p", "1", {}}, "1").value == 1.0);
}

TEST_CASE("every kind of broken library is reported with its reason") {
  PluginRegistry reg;
  reg.scan({kDir / "good", kDir / "duplicate", kDir / "wrong_abi", kDir / "newer_minor",
            kDir / "wrong_interface", kDir / "wrong_fingerprint", kDir / "missing_symbol"});
  CHECK(reason_for(reg, "test_wrong_abi") ==
        ": built for plugin ABI 2 (exports warmup_plugin_manifest_v2), host has ABI 1");
  CHECK(reason_for(reg, "test_newer_minor") == ": needs plugin ABI 1.10, host provides 1.3");
  CHECK(reason_for(reg, "test_wrong_interface") ==
        "task/future_task: implements warmup.task@99, host requires warmup.task@1");
  CHECK(reason_for(reg, "test_wrong_fingerprint").find(
            "build fingerprint mismatch: cxx11abi is '0' in the plugin but '1' in the host") != std::string::npos);
  CHECK(reason_for(reg, "test_missing_symbol") == ": missing symbol warmup_plugin_manifest_v1: not a warmup plugin");
  CHECK(reason_for(reg, "test_duplicate").find("task/good_task: duplicate task 'good_task': already provided by") == 0);
  // The host keeps working: good entries, and the valid entry next to the bad one, are usable.
  CHECK(reg.find("task", "good_task")->plugin_version == "1.2.3");  // first in search order wins
  CHECK(reg.find("reward", "iface_ok_reward"));
  CHECK(!reg.find("task", "future_task"));
  CHECK(!reg.find("task", "old_abi_task"));
  CHECK(reg.create<Task>("good_task", init_of(), "e.toml:4:1")->examples("test").size() == 3);
}

TEST_CASE("a file that is not a shared library is reported, not fatal") {
  test::TempDir d;
  d.write("garbage.so", "this is not an ELF file");
  PluginRegistry reg;
  reg.scan({d.path, kDir / "good"});
  CHECK(reason_for(reg, "garbage.so").find(": cannot load: ") == 0);
  CHECK(reg.find("task", "good_task"));
}

TEST_CASE("create failures and unknown names become PluginErrors with the config place") {
  PluginRegistry reg;
  reg.scan({kDir / "crashy", kDir / "good"});
  CHECK_THROWS_WITH_AS(reg.create<Task>("crashy", init_of(), "e.toml:4:1"),
                       "e.toml:4:1: task 'crashy' (libwarmup_task_test_crashy.so) failed in create: boom: cannot open the data",
                       PluginError);
  CHECK_THROWS_WITH_AS(reg.create<Reward>("raw_thrower", init_of(), "e.toml:4:1"),
                       doctest::Contains("failed in create: raw create threw"), PluginError);
  CHECK_THROWS_WITH_AS(reg.create<Task>("good_tsak", init_of(), "e.toml:9:2"),
                       "e.toml:9:2: unknown task plugin 'good_tsak' (did you mean 'good_task'?); available: crashy, good_task",
                       PluginError);
  // A config error raised by the plugin's Options already carries the file position.
  CHECK_THROWS_WITH_AS(reg.create<Task>("good_task", init_of("m = 1"), "e.toml:4:1"),
                       "e.toml:1:5: unknown key 'm' in [tasks.x] (did you mean 'n'?)", PluginError);
}

TEST_CASE("fingerprint comparison") {
  std::string host = host_fingerprint();
  CHECK(fingerprint_mismatch(host, host).empty());
  std::string no_torch = "sdk=1;stdlib=libstdc++;cxx11abi=1;json=3.11.2;torch=none;compiler=clang-19";
  CHECK(fingerprint_mismatch(no_torch, host).empty());  // no torch types used; compiler informational
  std::string other_torch = "sdk=1;stdlib=libstdc++;cxx11abi=1;json=3.11.2;torch=2.9.0;compiler=gcc-12";
  CHECK(fingerprint_mismatch(other_torch, host).find("torch is '2.9.0' in the plugin") == 0);
}

TEST_CASE("an absurd manifest is rejected before its entries are read") {
  // In this process (the unit tests do not probe in a child): these two load cleanly but lie.
  PluginRegistry reg;
  reg.scan({kDir / "absurd_count", kDir / "bad_name", kDir / "good"});
  CHECK(reason_for(reg, "test_absurd_count") == ": manifest claims 2147483648 entries (max 4096)");
  CHECK(reason_for(reg, "test_bad_name") ==
        ": manifest entry 0 has kind 'task', name '../evil?name', interface 'warmup.task' "
        "(each must match [A-Za-z0-9_.-]+)");
  CHECK(!reg.find("task", "absurd_count"));
  REQUIRE(reg.libraries().size() == 3);
  CHECK(reg.libraries()[0].rejected);
  CHECK(reg.libraries()[0].probe == "in-process");
  CHECK(!reg.libraries()[2].rejected);
  CHECK(reg.create<Task>("good_task", init_of(), "e.toml:4:1")->examples("test").size() == 3);
  // An experiment that needs a plugin nobody provides is told which libraries were rejected.
  std::string expected = "unknown task plugin 'absurd_count'; available: good_task; 2 libraries were rejected: " +
                         (kDir / "absurd_count" / "libwarmup_task_test_absurd_count.so").string() +
                         ": manifest claims 2147483648 entries (max 4096); ";
  CHECK_THROWS_WITH_AS(reg.create<Task>("absurd_count", init_of(), "e.toml:4:1"),
                       doctest::Contains(expected.c_str()), PluginError);
}

TEST_CASE("signal names") {
  CHECK(signal_name(11) == "SIGSEGV");
  CHECK(signal_name(6) == "SIGABRT");
  CHECK(signal_name(9) == "SIGKILL");
}
