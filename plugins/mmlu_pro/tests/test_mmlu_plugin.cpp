// The mmlu_pro task and its two rewards, loaded as the real plugin library through the host's
// registry: splits and metadata, prompts byte for byte against references written by the
// official/paper Python code (tests/data/make_prompt_references.py), and the reward values.
#include <doctest/doctest.h>

#include <fstream>
#include <atomic>
#include <set>
#include <thread>

#include "warmup/sdk.h"
#include "warmup/testing.h"

using namespace warmup;

namespace {

const warmup::testing::PluginLibraries& registry() { return warmup::testing::build_plugins(); }

PluginInit init(const std::string& kind, const std::string& text = "") {
  return warmup::testing::plugin_init(kind, text, MMLU_FIXTURE_DIR);
}

std::string file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in, path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

const char* kSmall = "data_dir = \".\"\ntest_file = \"test_small.jsonl\"\nvalidation_file = \"validation_small.jsonl\"\n"
                     "categories = [\"history\", \"physics\"]\ntrain_per_category = 4\n";

const Example& by_qid(const std::vector<Example>& ex, int64_t qid) {
  for (const auto& e : ex)
    if (e.metadata["question_id"] == qid) return e;
  FAIL("question " << qid << " not in the split");
  return ex.front();
}

}  // namespace

TEST_CASE("mmlu_pro task: splits, metadata, seeded separation") {
  auto t = registry().create<Task>("mmlu_pro", init("task", kSmall), "test");
  CHECK(t->splits() == std::vector<std::string>{"train", "test", "validation"});
  auto train = t->examples("train"), test = t->examples("test"), val = t->examples("validation");
  CHECK(train.size() == 8);
  CHECK(test.size() == 16);
  CHECK(val.size() == 10);
  std::set<std::string> ids;
  for (const auto& e : train) ids.insert(e.metadata["question_id"].dump());
  for (const auto& e : test) CHECK(!ids.count(e.metadata["question_id"].dump()));
  std::vector<Example> both = train;
  both.insert(both.end(), test.begin(), test.end());
  const Example& e = by_qid(both, 4669);
  CHECK(e.reference == "D");
  CHECK(e.metadata["category"] == "history");
  CHECK(e.metadata["n_options"] == 5);
  CHECK(e.metadata["src"].is_string());
  CHECK(e.id.find("/4669") != std::string::npos);
  auto again = registry().create<Task>("mmlu_pro", init("task", kSmall), "test")->examples("train");
  for (size_t i = 0; i < train.size(); ++i) CHECK(train[i].id == again[i].id);
  auto all = registry().create<Task>("mmlu_pro", init("task", std::string(kSmall) + "test_split = \"all\""), "test");
  CHECK(all->examples("test").size() == 24);
  CHECK_THROWS_AS(t->examples("dev"), ConfigError);
}

TEST_CASE("mmlu_pro prompts: paper templates and the official 5-shot prompt, byte for byte") {
  for (const char* style : {"rl", "eval", "five_shot"}) {
    CAPTURE(style);
    auto t = registry().create<Task>(
        "mmlu_pro", init("task", std::string(kSmall) + "train_prompt = \"" + style + "\"\neval_prompt = \"" + style + "\""),
        "test");
    auto ex = t->examples("train");
    auto rest = t->examples("test");
    ex.insert(ex.end(), rest.begin(), rest.end());
    CHECK(by_qid(ex, 4669).prompt == file(std::string(MMLU_FIXTURE_DIR) + "/" + style + "_4669.txt"));
  }
  // Templates compiled in equal the paper's files (the trailing "Assistant: <think>" included).
  auto t = registry().create<Task>("mmlu_pro", init("task", kSmall), "test");
  std::string p = t->examples("train")[0].prompt;
  CHECK(p.rfind(file(std::string(MMLU_PROMPT_DIR) + "/mmlu_rl.txt").substr(0, 200), 0) == 0);
  CHECK(p.substr(p.size() - 18) == "Assistant: <think>");
}

TEST_CASE("mmlu_pro options are checked") {
  auto bad = [](const std::string& extra) {
    return registry().create<Task>("mmlu_pro", init("task", std::string(kSmall) + extra), "test");
  };
  CHECK_THROWS_WITH_AS(bad("eval_prompt = \"chat\""), doctest::Contains("must be rl, eval or five_shot"), PluginError);
  CHECK_THROWS_WITH_AS(bad("test_split = \"none\""), doctest::Contains("rest or all"), PluginError);
  CHECK_THROWS_WITH_AS(registry().create<Task>("mmlu_pro", init("task", "categories = [\"astrology\"]\ndata_dir = \".\""), "test"),
                       doctest::Contains("unknown category 'astrology'"), PluginError);
  CHECK_THROWS_WITH_AS(registry().create<Task>("mmlu_pro", init("task", "categories = [\"physic\"]\ndata_dir = \".\""), "test"),
                       doctest::Contains("(the 14 categories: biology, business, chemistry, computer science"), PluginError);
  CHECK_THROWS_WITH_AS(registry().create<Task>("mmlu_pro", init("task", ""), "test"),
                       doctest::Contains("missing required key 'data_dir'"), PluginError);
  auto missing = registry().create<Task>("mmlu_pro", init("task", "data_dir = \"nowhere\""), "test");
  CHECK_THROWS_WITH_AS(missing->examples("test"), doctest::Contains("test.jsonl: cannot read"), DataError);
}

TEST_CASE("mmlu_pro_paper reward: format gate -2, right +2, wrong or none -0.5") {
  auto r = registry().create<Reward>("mmlu_pro_paper", init("reward"), "test");
  Example e;
  e.reference = "C";
  e.metadata = {{"n_options", 10}};
  auto v = [&](const std::string& c) { return r->score(e, c).value; };
  CHECK(v("think</think><answer> \\boxed{C} </answer>") == 2.0);
  CHECK(r->score(e, "think</think><answer> \\boxed{C} </answer>").correct == true);
  CHECK(v("think</think>\n<answer>\\boxed{\\text{C}}</answer>\n") == 2.0);
  CHECK(v("think</think><answer>C. because</answer>") == 2.0);               // no box: last letter C
  CHECK(v("think</think><answer> \\boxed{D} </answer>") == -0.5);
  CHECK(v("think</think><answer> none of them </answer>") == -0.5);        // no letter: no guess here
  CHECK(r->score(e, "t</think><answer>x</answer>").error.find("no answer letter") != std::string::npos);
  CHECK(v("</think><answer>\\boxed{C}</answer>") == -2.0);                  // nothing before </think>
  CHECK(v("t</think><answer>\\boxed{C}</answer> trailing") == -2.0);
  CHECK(v("t</think>x<answer>\\boxed{C}</answer>") == -2.0);
  CHECK(v("t</think><answer></answer>") == -2.0);                            // (.+) needs a character
  CHECK(v("t</think></think><answer>\\boxed{C}</answer>") == -2.0);
  CHECK(v("\\boxed{C}") == -2.0);
  CHECK(r->score(e, "\\boxed{C}").breakdown.at("format") == 0.0);
  auto official = registry().create<Reward>("mmlu_pro_paper", init("reward", "extract = \"official\""), "test");
  CHECK(official->score(e, "t</think><answer>The answer is (C)</answer>").value == 2.0);
  CHECK_THROWS_WITH_AS(registry().create<Reward>("mmlu_pro_paper", init("reward", "extract = \"regex\""), "test"),
                       doctest::Contains("must be paper or official"), PluginError);
}

TEST_CASE("mmlu_pro_accuracy reward: whole-output chain, seeded guess, concurrent calls") {
  auto r = registry().create<Reward>("mmlu_pro_accuracy", init("reward"), "test");
  Example e;
  e.id = "mmlu_pro/test/1";
  e.reference = "D";
  e.metadata = {{"n_options", 4}};
  CHECK(r->score(e, "blah \\boxed{D} and A").value == 1.0);
  CHECK(r->score(e, "blah \\boxed{A}").value == 0.0);
  // No letter: random.seed(12345); random.randint(0, 3) == 3 -> "D", a hit.
  auto g = r->score(e, "no letters here");
  CHECK(g.value == 1.0);
  CHECK(g.breakdown.at("guessed") == 1.0);
  CHECK(g.error.find("random guess D") != std::string::npos);
  e.metadata["n_options"] = 10;  // randint(0, 9) == 6 -> "G", a miss
  CHECK(r->score(e, "no letters here").value == 0.0);
  auto noguess = registry().create<Reward>("mmlu_pro_accuracy", init("reward", "guess = false"), "test");
  CHECK(noguess->score(e, "no letters here").breakdown.at("guessed") == 0.0);
  auto official = registry().create<Reward>("mmlu_pro_accuracy", init("reward", "extract = \"official\""), "test");
  CHECK(official->score(e, "The answer is (D). \\boxed{A}").value == 1.0);
  CHECK(r->score(e, "The answer is (D). \\boxed{A}").value == 0.0);
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) ok += official->score(e, "so the answer is (D)").value == 1.0;
    });
  for (auto& th : threads) th.join();
  CHECK(ok == 1600);
}
