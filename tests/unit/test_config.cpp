// Experiment config: base deep-merge, --set overrides with type checks, and errors that cite
// file:line:col.
#include <doctest/doctest.h>

#include "config/experiment.h"
#include "config/toml_tree.h"
#include "helpers.h"

using namespace warmup;
using test::TempDir;

namespace {

const char* kBase = R"(
[experiment]
name = "base"
seed = 7
tags = ["a"]

[tasks.arith]
plugin = "arithmetic"
test_size = 10
nested = { depth = 1, keep = "yes" }

[[stages]]
name = "warmup"
algorithm = "sft"
tasks = ["arith"]
  [stages.sft]
  lr = 1e-5
  epochs = 3

[[stages]]
name = "rlvr"
algorithm = "grpo"
tasks = "arith"
rewards = { exact = 2.0 }
  [stages.grpo]
  beta = 0.0
)";

std::string error_of(const std::filesystem::path& file, std::vector<std::string> sets = {}) {
  try {
    load_experiment(file, sets);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("a valid experiment is parsed with defaults") {
  TempDir d;
  auto f = d.write("base.toml", kBase);
  ExperimentConfig c = load_experiment(f, {});
  CHECK(c.name == "base");
  CHECK(c.seed == 7);
  REQUIRE(c.stages.size() == 2);
  CHECK(c.stages[0].algorithm == "sft");
  CHECK(c.stages[0].options["epochs"].value<int64_t>() == 3);
  CHECK(c.stages[1].tasks == std::vector<std::string>{"arith"});
  REQUIRE(c.stages[1].rewards.size() == 1);
  CHECK(c.stages[1].rewards[0].second == 2.0);
  CHECK(c.stages[1].eval.split == "test");
  CHECK(c.tasks.at("arith").plugin == "arithmetic");
  CHECK(!c.tasks.at("arith").options.contains("plugin"));
  CHECK(c.rewards.count("exact") == 1);  // implicit instance from the stage reference
  CHECK(c.rewards.at("exact").plugin == "exact");
  CHECK(c.model.dtype == "auto");
}

TEST_CASE("base deep-merge: tables by key, stages by name, arrays replaced") {
  TempDir d;
  d.write("base.toml", kBase);
  auto arm = d.write("arm.toml", R"(
base = "base.toml"
[experiment]
name = "arm"
tags = ["b", "c"]
[tasks.arith.nested]
depth = 2
[[stages]]
name = "rlvr"
  [stages.grpo]
  beta = 0.04
[[stages]]
name = "eval"
algorithm = "evaluate"
tasks = ["arith"]
)");
  ExperimentConfig c = load_experiment(arm, {});
  CHECK(c.name == "arm");
  CHECK(c.seed == 7);  // inherited
  CHECK(c.tags == std::vector<std::string>{"b", "c"});  // arrays replace
  CHECK(c.tasks.at("arith").options.at_path("nested.depth").value<int64_t>() == 2);
  CHECK(c.tasks.at("arith").options.at_path("nested.keep").value<std::string>() == "yes");
  REQUIRE(c.stages.size() == 3);
  CHECK(c.stages[1].name == "rlvr");
  CHECK(c.stages[1].options["beta"].value<double>() == 0.04);
  CHECK(c.stages[1].algorithm == "grpo");  // kept from the base element
  CHECK(c.stages[2].name == "eval");
  // Origins survive merging: the overridden value points at arm.toml, the inherited one at base.
  auto o = origins(c.stages[1].options);
  CHECK(o["beta"].find("arm.toml:") != std::string::npos);
  auto o2 = origins(c.stages[0].options);
  INFO(o2["lr"]);
  CHECK(o2["lr"].find("base.toml:17:8") != std::string::npos);
}

TEST_CASE("--set overrides: types, promotion, strings, stage by name or index") {
  TempDir d;
  auto f = d.write("base.toml", kBase);
  ExperimentConfig c = load_experiment(f, {"experiment.seed=99", "stages.rlvr.grpo.beta=1",
                                           "stages[0].sft.lr=3e-4", "experiment.name=plain text",
                                           "tasks.arith.test_size=20", "stages.0.eval.limit=5",
                                           "model.path=\"/models/x\""});
  CHECK(c.seed == 99);
  CHECK(c.stages[1].options["beta"].value<double>() == 1.0);
  CHECK(c.stages[1].options["beta"].is_floating_point());  // integer promoted to float
  CHECK(c.stages[0].options["lr"].value<double>() == doctest::Approx(3e-4));
  CHECK(c.name == "plain text");
  CHECK(c.tasks.at("arith").options["test_size"].value<int64_t>() == 20);
  CHECK(c.stages[0].eval.limit == 5);
  CHECK(c.model.path == "/models/x");
  auto o = origins(c.tasks.at("arith").options);
  CHECK(o["test_size"] == "--set tasks.arith.test_size=20");
}

TEST_CASE("--set errors name the override") {
  TempDir d;
  auto f = d.write("base.toml", kBase);
  CHECK(error_of(f, {"experiment.seed=abc"}) ==
        "--set experiment.seed=abc: expected integer, found 'abc' (not a TOML integer)");
  CHECK(error_of(f, {"experiment.seed=1.5"}) == "--set experiment.seed=1.5: expected integer, found float");
  CHECK(error_of(f, {"stages.nope.sft.lr=1"}).find("no element 'nope' in array 'stages'") != std::string::npos);
  CHECK(error_of(f, {"noequals"}) == "--set noequals: expected path=value");
  CHECK(error_of(f, {"experiment.nmae=x"}).find("unknown key 'nmae' in [experiment] (did you mean 'name'?)") !=
        std::string::npos);
}

TEST_CASE("errors cite file:line:col") {
  TempDir d;
  auto bad = d.write("bad.toml", "[experiment]\nname = \"x\"\nseed = \n");
  std::string e = error_of(bad);
  CHECK(e.find("bad.toml:3:") != std::string::npos);

  auto unknown = d.write("unknown.toml", "[experiment]\nname = \"x\"\nsede = 3\n[[stages]]\nname=\"a\"\nalgorithm=\"e\"\n");
  CHECK(error_of(unknown).find("unknown.toml:3:8: unknown key 'sede' in [experiment] (did you mean 'seed'?)") !=
        std::string::npos);

  auto type = d.write("type.toml", "[experiment]\nname = \"x\"\nseed = \"seven\"\n[[stages]]\nname=\"a\"\nalgorithm=\"e\"\n");
  CHECK(error_of(type).find("type.toml:3:8: experiment.seed: expected integer, found string") != std::string::npos);

  auto stage = d.write("stage.toml", "[experiment]\nname = \"x\"\n[[stages]]\nname=\"a\"\nalgorithm=\"e\"\ntask = [\"t\"]\n");
  CHECK(error_of(stage).find("stage.toml:6:8: unknown key 'task' in stage 'a' (did you mean 'tasks'?)") !=
        std::string::npos);

  auto nostages = d.write("nostages.toml", "[experiment]\nname = \"x\"\n");
  CHECK(error_of(nostages).find("has no [[stages]]") != std::string::npos);

  auto dup = d.write("dup.toml", "[experiment]\nname = \"x\"\n[[stages]]\nname=\"a\"\nalgorithm=\"e\"\n[[stages]]\nname=\"a\"\nalgorithm=\"e\"\n");
  CHECK(error_of(dup).find("duplicate stage name 'a'") != std::string::npos);

  auto cyc = d.write("cyc.toml", "base = \"cyc.toml\"\n");
  CHECK(error_of(cyc).find("cycle") != std::string::npos);

  auto missing = d.write("missing.toml", "base = \"nowhere.toml\"\n");
  CHECK(error_of(missing).find("missing.toml:1:8: base file") != std::string::npos);

  CHECK(error_of(d.path / "absent.toml").find("absent.toml: no such file") != std::string::npos);
}

TEST_CASE("flatten names stages by name and encodes arrays as JSON") {
  toml::table t = toml::parse(R"(
a = 1
b = { c = "x", d = [1, 2] }
[[stages]]
name = "s1"
lr = 0.5
)");
  auto flat = flatten(t);
  std::map<std::string, FlatValue> m;
  for (auto& f : flat) m[f.key] = f;
  CHECK(m["a"].type == "integer");
  CHECK(m["b.c"].text == "x");
  CHECK(m["b.d"].text == "[1,2]");
  CHECK(m["stages.s1.lr"].number == 0.5);
}

TEST_CASE("names that become path components are checked where they are written") {
  TempDir d;
  auto stage = d.write("stage.toml", "[experiment]\nname = \"x\"\n[[stages]]\nname = \"../../../escape-stage\"\nalgorithm = \"e\"\n");
  CHECK(error_of(stage).find("stage.toml:4:8: stage name '../../../escape-stage' is not a valid name") != std::string::npos);
  auto slash = d.write("slash.toml", "[experiment]\nname = \"x\"\n[[stages]]\nname = \"a/b\"\nalgorithm = \"e\"\n");
  CHECK(error_of(slash).find("slash.toml:4:8: stage name 'a/b' is not a valid name") != std::string::npos);
  auto dots = d.write("dots.toml", "[experiment]\nname = \"x\"\n[[stages]]\nname = \"..\"\nalgorithm = \"e\"\n");
  CHECK(error_of(dots).find("dots.toml:4:8: stage name '..' is not a valid name") != std::string::npos);
  auto task = d.write("task.toml", "[experiment]\nname = \"x\"\n[tasks.\"../t\"]\nk = 1\n[[stages]]\nname = \"a\"\nalgorithm = \"e\"\n");
  CHECK(error_of(task).find("/task.toml:3:") != std::string::npos);
  CHECK(error_of(task).find("[tasks] instance '../t' is not a valid name") != std::string::npos);
  auto ref = d.write("ref.toml", "[experiment]\nname = \"x\"\n[[stages]]\nname = \"a\"\nalgorithm = \"e\"\n"
                                 "teachers = [\"ok\", \"../../t\"]\nrewards = { \"r/x\" = 1.0 }\n");
  std::string e = error_of(ref);
  CHECK(e.find("ref.toml:6:12: stage 'a'.teachers: entry '../../t' is not a valid name") != std::string::npos);
  auto weight = d.write("weight.toml", "[experiment]\nname = \"x\"\n[[stages]]\nname = \"a\"\nalgorithm = \"e\"\n"
                                       "rewards = { r = nan }\n");
  CHECK(error_of(weight).find("weight.toml:6:17: stage 'a'.rewards.r: must be a finite number, got nan") != std::string::npos);
  auto samples = d.write("samples.toml", "[experiment]\nname = \"x\"\n[[stages]]\nname = \"a\"\nalgorithm = \"e\"\n"
                                         "eval = { num_samples = 4611686018427387904 }\n");
  CHECK(error_of(samples).find("samples.toml:6:24: stage 'a'.eval.num_samples must be >= 1 and <= 1024") != std::string::npos);
  // --set reaches the same check.
  auto good = d.write("good.toml", "[experiment]\nname = \"x\"\n[[stages]]\nname = \"a\"\nalgorithm = \"e\"\n");
  CHECK(error_of(good, {"stages.a.name=\"../x\""}).find("stage name '../x' is not a valid name") != std::string::npos);
}
