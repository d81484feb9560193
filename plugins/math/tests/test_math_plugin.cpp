// The math task and its two rewards loaded as the real plugin library through the host's
// registry: fixture rows, the paper's prompts byte for byte, bad data, and every reward branch.
#include <doctest/doctest.h>

#include <fstream>
#include <thread>

#include "warmup/sdk.h"
#include "warmup/testing.h"

using namespace warmup;

namespace {

const warmup::testing::PluginLibraries& registry() { return warmup::testing::build_plugins(); }

PluginInit init(const std::string& kind, const std::string& text = "") {
  return warmup::testing::plugin_init(kind, text, MATH_FIXTURE_DIR);
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

Example problem(const std::string& answer) {
  Example e;
  e.reference = answer;
  return e;
}

std::string wrap(const std::string& answer) { return "Let me think.\n</think>\n<answer>" + answer + "</answer>"; }

}  // namespace

TEST_CASE("math task: MATH-500 and train rows, prompts byte for byte") {
  auto t = registry().create<Task>("math", init("task", "test = \"math500_head.jsonl\"\ntrain = \"math_train_head.jsonl\""), "test");
  CHECK(t->splits() == std::vector<std::string>{"train", "test"});
  auto ex = t->examples("test");
  REQUIRE(ex.size() == 5);
  CHECK(ex[0].id == "math/test/0");
  CHECK(ex[0].reference == "\\left( 3, \\frac{\\pi}{2} \\right)");
  CHECK(ex[0].metadata["subject"] == "Precalculus");
  CHECK(ex[0].metadata["level"] == 2);
  CHECK(ex[0].metadata["unique_id"] == "test/precalculus/807.json");
  std::string tmpl = slurp(MATH_PROMPT_DIR "/math_eval.txt");
  std::string problem = ex[0].metadata["problem"];
  CHECK(ex[0].prompt == tmpl.substr(0, tmpl.find("{prompt}")) + problem + tmpl.substr(tmpl.find("{prompt}") + 8));
  auto train = t->examples("train");
  REQUIRE(train.size() == 4);
  CHECK(train[0].metadata["level"].is_number_integer());
  CHECK(train[3].metadata["level"].is_null());  // "Level ?"
  CHECK(train[0].metadata["subject"] == "Algebra");

  auto rl = registry().create<Task>("math", init("task", "test = \"math500_head.jsonl\"\nprompt = \"rl\"\nlimit = 2"), "test");
  auto rx = rl->examples("test");
  REQUIRE(rx.size() == 2);
  std::string rl_tmpl = slurp(MATH_PROMPT_DIR "/math_rl.txt");
  CHECK(rx[1].prompt == rl_tmpl.substr(0, rl_tmpl.find("{prompt}")) + rx[1].metadata["problem"].get<std::string>() +
                            rl_tmpl.substr(rl_tmpl.find("{prompt}") + 8));
  auto bare = registry().create<Task>("math", init("task", "test = \"math500_head.jsonl\"\nprompt = \"none\""), "test");
  CHECK(bare->examples("test")[0].prompt == ex[0].metadata["problem"].get<std::string>());
}

TEST_CASE("math task: bad data and options") {
  auto bad = registry().create<Task>("math", init("task", "test = \"malformed.jsonl\""), "test");
  CHECK_THROWS_WITH_AS(bad->examples("test"), doctest::Contains("malformed.jsonl:2"), DataError);
  auto nj = registry().create<Task>("math", init("task", "test = \"not_json.jsonl\""), "test");
  CHECK_THROWS_WITH_AS(nj->examples("test"), doctest::Contains("not_json.jsonl:2: not valid JSON"), DataError);
  auto missing = registry().create<Task>("math", init("task", "test = \"nowhere.jsonl\""), "test");
  CHECK_THROWS_WITH_AS(missing->examples("test"), doctest::Contains("nowhere.jsonl: cannot read"), DataError);
  CHECK_THROWS_AS(missing->examples("train"), ConfigError);
  CHECK_THROWS_WITH_AS(registry().create<Task>("math", init("task", "prompt = \"chat\""), "test"),
                       doctest::Contains("must be rl, eval or none"), PluginError);
  CHECK_THROWS_WITH_AS(registry().create<Task>("math", init("task", "tset = \"a\""), "test"),
                       doctest::Contains("unknown key 'tset'"), PluginError);
}

TEST_CASE("math_paper reward: -2 format, -1 no box, +2 correct, -0.5 wrong") {
  auto r = registry().create<Reward>("math_paper", init("reward"), "test");
  Example e = problem("\\frac{1}{2}");
  auto v = [&](const std::string& c) { return r->score(e, c).value; };
  CHECK(v(wrap("The answer is $\\boxed{\\frac12}$.")) == 2.0);
  CHECK(r->score(e, wrap("\\boxed{0.5}")).correct == true);
  CHECK(v(wrap("\\boxed{0.5}") + " \n") == 2.0);
  CHECK(v(wrap("\\boxed{\\frac{1}{3}}")) == -0.5);
  CHECK(r->score(e, wrap("\\boxed{\\frac{1}{3}}")).correct == false);
  CHECK(v(wrap("one half")) == -1.0);
  CHECK(r->score(e, wrap("one half")).error.find("boxed") != std::string::npos);
  CHECK(v("think</think>\\boxed{0.5}") == -2.0);                          // no <answer>
  CHECK(v(wrap("\\boxed{0.5}") + wrap("\\boxed{0.5}")) == -2.0);          // two of each
  CHECK(v("</think><answer>\\boxed{0.5}</answer>") == -2.0);              // nothing before </think>
  CHECK(v(wrap("\\boxed{0.5}") + " trailing") == -2.0);                   // text after </answer>
  CHECK(v("x<answer>\\boxed{0.5}</answer></think>") == -2.0);             // out of order
  CHECK(v("\\boxed{0.5} </think>\n<answer>no box</answer>") == -1.0);     // boxed only outside the answer
  CHECK(r->score(e, "garbage").error.find("exactly one") != std::string::npos);
  auto custom = registry().create<Reward>("math_paper", init("reward", "correct = 1.0\nwrong = 0.0"), "test");
  CHECK(custom->score(e, wrap("\\boxed{1/2}")).value == 1.0);
}

TEST_CASE("math_accuracy reward: Math-Verify on the whole output, concurrent calls") {
  auto r = registry().create<Reward>("math_accuracy", init("reward"), "test");
  Example e = problem("\\left( 3, \\frac{\\pi}{2} \\right)");
  CHECK(r->score(e, "so the point is $\\boxed{(3, \\frac{\\pi}{2})}$").value == 1.0);
  CHECK(r->score(e, "first $\\boxed{(1,2)}$, finally $\\boxed{(3,\\pi/2)}$").correct == true);
  auto bad = r->score(e, "I think it is $(0,3)$");
  CHECK(bad.value == 0.0);
  CHECK(bad.correct == false);
  CHECK_FALSE(bad.error.empty());
  CHECK(r->score(e, std::string(5000, '{')).value == 0.0);  // never throws on garbage
  std::vector<std::thread> threads;
  std::atomic<int> right{0};
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) right += r->score(e, "$\\boxed{\\left(3,\\frac{\\pi}{2}\\right)}$").value == 1.0;
    });
  for (auto& t : threads) t.join();
  CHECK(right == 400);
}
