// The plugin loader against real shared libraries built in tests/abi_plugins: each broken library is
// reported with its reason while the good ones keep working.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <new>

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

TEST_CASE("a reward built with ABI 1.3 still loads and its results are read with the 1.3 layout") {
  PluginRegistry reg;
  reg.scan({kDir / "minor3_reward"});
  CHECK(reg.failures().empty());
  REQUIRE(reg.find("reward", "minor3_reward"));
  auto reward = reg.create<Reward>("minor3_reward", init_of(), "e.toml:4:1");
  for (int i = 0; i < 200; ++i) {  // garbage read past a 1.3 result would show up as a status or an answer
    RewardResult ok = reward->score({"id", "p", "yes", {}}, "yes");
    CHECK(ok.value == 2.0);
    CHECK(ok.correct == true);
    CHECK(ok.breakdown == std::map<std::string, double>{{"length", 3.0}});
    CHECK(ok.error.empty());
    CHECK(ok.status == RewardStatus::kScored);
    CHECK(!ok.extracted_answer);
    RewardResult bad = reward->score({"id", "p", "yes", {}}, std::string(100, 'n'));
    CHECK(bad.value == -1.0);
    CHECK(bad.correct == false);
    CHECK(bad.error == "differs from the reference 'yes'");
    CHECK(!bad.errored());
  }
  // The result built straight into memory full of 0xff bytes (guaranteed copy elision): read with
  // the 1.4 layout, the fields a 1.3 plugin never constructs would be garbage there.
  alignas(RewardResult) unsigned char buf[sizeof(RewardResult)];
  std::memset(buf, 0xff, sizeof buf);
  RewardResult* direct = new (buf) RewardResult(reward->score({"id", "p", "yes", {}}, "yes"));
  CHECK(direct->status == RewardStatus::kScored);
  CHECK(!direct->extracted_answer.has_value());
  CHECK(direct->value == 2.0);
  direct->~RewardResult();
  // Through score_all as a stage uses it.
  std::vector<WeightedReward> rs{{"old", 0.5, reward.get()}};
  Score s = score_all(rs, {"id", "p", "yes", {}}, "no");
  CHECK(s.total == -0.5);
  CHECK(s.correct == false);
  CHECK(!s.errored);
  CHECK(s.error == "old: differs from the reference 'yes'");
}

TEST_CASE("score_all: a reward that could not judge makes the completion an error, never wrong") {
  struct Fixed : Reward {
    RewardResult r;
    RewardResult score(const Example&, const std::string&) const override { return r; }
  };
  Fixed right, broken, thrower_base;
  right.r.value = 1.0, right.r.correct = true, right.r.extracted_answer = "42";
  broken.r.fail_harness("interpreter lacks numpy");
  struct Thrower : Reward {
    RewardResult score(const Example&, const std::string&) const override { throw std::runtime_error("boom"); }
  } thrower;
  Score ok = score_all({{"a", 1.0, &right}}, {}, "x");
  CHECK(ok.total == 1.0);
  CHECK(ok.correct == true);
  CHECK(ok.extracted_answer == "42");
  Score e = score_all({{"a", 1.0, &right}, {"b", 1.0, &broken}}, {}, "x");
  CHECK(e.errored);
  CHECK(!e.correct);
  CHECK(e.total == 0.0);
  CHECK(e.error == "b: interpreter lacks numpy");
  CHECK(e.extracted_answer == "42");
  Score t = score_all({{"t", 1.0, &thrower}}, {}, "x");
  CHECK(t.errored);
  CHECK(!t.correct);
  CHECK(t.error == "t: reward threw: boom");
}

TEST_CASE("every kind of broken library is reported with its reason") {
  PluginRegistry reg;
  reg.scan({kDir / "good", kDir / "duplicate", kDir / "wrong_abi", kDir / "newer_minor",
            kDir / "wrong_interface", kDir / "wrong_fingerprint", kDir / "missing_symbol"});
  CHECK(reason_for(reg, "test_wrong_abi") ==
        ": built for plugin ABI 2 (exports warmup_plugin_manifest_v2), host has ABI 1");
  CHECK(reason_for(reg, "test_newer_minor") == ": needs plugin ABI 1." + std::to_string(WARMUP_ABI_MINOR + 7) +
                                                   ", host provides 1." + std::to_string(WARMUP_ABI_MINOR));
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
