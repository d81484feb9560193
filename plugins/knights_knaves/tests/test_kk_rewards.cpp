// Both K&K rewards (kk_paper, kk_logic_rl) and the knights_knaves task, loaded as the real plugin
// libraries through the host's registry: the gold answer in the paper format scores the maximum,
// corrupted variants score as each reward specifies, and prompts are the paper's template byte for
// byte.
#include <set>
#include <doctest/doctest.h>

#include <fstream>

#include "warmup/sdk.h"
#include "warmup/testing.h"

using namespace warmup;

namespace {

const warmup::testing::PluginLibraries& registry() { return warmup::testing::build_plugins(); }

PluginInit init(const std::string& kind, const std::string& text = "") {
  return warmup::testing::plugin_init(kind, text, KK_FIXTURE_DIR);
}

Example puzzle() {
  Example e;
  e.prompt = "... Assistant: <think>";
  e.reference = "(1) Zoey is a knight\n(2) Bob is a knave";
  return e;
}

std::string wrap(const std::string& answer, const std::string& think = "Zoey says ... so Bob lies.") {
  return think + "</think>\n<answer>" + answer + "</answer>";
}

}  // namespace

TEST_CASE("kk_paper reward") {
  auto r = registry().create<Reward>("kk_paper", init("reward"), "test");
  Example e = puzzle();
  auto v = [&](const std::string& c) { return r->score(e, c).value; };
  CHECK(v(wrap(e.reference)) == 2.0);
  CHECK(r->score(e, wrap(e.reference)).correct == true);
  CHECK(v(wrap(e.reference) + " \n") == 2.0);                               // trailing whitespace is fine
  CHECK(v("Zoey says</think><answer>" + e.reference + "</answer>") == 2.0);
  CHECK(v("Zoey says</think> (1) Zoey is a knight</answer>") == -2.0);     // missing <answer>
  CHECK(v("a</think>b</think><answer>" + e.reference + "</answer>") == -2.0);  // extra </think>
  CHECK(v("</think><answer>" + e.reference + "</answer>") == -2.0);        // nothing before </think>
  CHECK(v(wrap(e.reference) + " done") == -2.0);                           // text after </answer>
  CHECK(v("x<answer>y</answer></think>") == -2.0);                          // out of order
  CHECK(v(wrap("(1) Zoey is a knight\n(2) Bob is a knight")) == -0.5);     // wrong role
  CHECK(v(wrap("(1) Zoey is a knight")) == -0.5);                           // missing person
  CHECK(v(wrap("(1) Zoey is a knights\n(2) Bob is a knave")) == -0.5);     // "knights" is not "knight"
  CHECK(v(wrap(e.reference + "\n(3) Carl is a knave")) == -1.0);           // name not in the puzzle
  CHECK(v(wrap("(1) Zoey is a knight\n(2) Bob is a liar")) == -1.0);       // role neither
  CHECK(v(wrap("(1) ZOEY is a KNIGHT\n(2) bob is a knave")) == 2.0);      // lower-cased
  CHECK(r->score(e, "garbage").error.find("exactly one") != std::string::npos);
}

TEST_CASE("kk_logic_rl reward") {
  auto r = registry().create<Reward>("kk_logic_rl", init("reward"), "test");
  Example e = puzzle();
  auto v = [&](const std::string& c) { return r->score(e, c).value; };
  CHECK(v(wrap(e.reference)) == 3.0);                                           // +1 format, +2 answer
  CHECK(v(wrap("(1) Zoey is a knight\n(2) Bob is a knight")) == -0.5);         // 1 - 1.5
  CHECK(v(wrap("(1) Zoey is a knight")) == -1.0);                               // missing person: 1 - 2
  CHECK(v(wrap("(1) Zoey is a knight, not a knave\n(2) Bob is a knave")) == -1.0);  // knight/knave miscount
  CHECK(v("Zoey says</think> <answer>" + e.reference) == -3.0);                // missing </answer>
  CHECK(v("<think>again</think><answer>" + e.reference + "</answer>") == -3.0);  // extra <think>
  CHECK(v(wrap(e.reference) + "<answer>x</answer>") == -3.0);                   // extra answer tags
  Example no_think = e;
  no_think.prompt = "plain prompt";
  CHECK(r->score(no_think, "<think>ok</think><answer>" + e.reference + "</answer>").value == 3.0);
}

TEST_CASE("knights_knaves task: fixture data, unique solutions, the paper's prompt byte for byte") {
  auto t = registry().create<Task>("knights_knaves", init("task", "data_dir = \".\"\npeople = [3, 5, 7]"), "test");
  auto ex = t->examples("test");
  REQUIRE(ex.size() == 60);
  std::ifstream in(KK_PROMPT_FILE, std::ios::binary);
  std::string tmpl((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string quiz = ex[0].metadata["quiz"];
  std::string expect = tmpl.substr(0, tmpl.find("{prompt}")) + quiz + tmpl.substr(tmpl.find("{prompt}") + 8);
  CHECK(ex[0].prompt == expect);
  CHECK(ex[0].id == "kk/3ppl/test/0");
  CHECK(ex[0].metadata["n_people"] == 3);
  auto paper = registry().create<Reward>("kk_paper", init("reward"), "test");
  auto logic = registry().create<Reward>("kk_logic_rl", init("reward"), "test");
  for (const auto& e : ex) {
    CHECK(paper->score(e, wrap(e.reference)).value == 2.0);
    CHECK(logic->score(e, wrap(e.reference)).value == 3.0);  // the prompt's trailing <think> counts
  }
  auto chat = registry().create<Task>("knights_knaves", init("task", "data_dir = \".\"\npeople = [5]\nprompt = \"logic_rl\""), "test");
  auto cx = chat->examples("train");
  CHECK(cx.size() == 20);
  CHECK(cx[0].prompt.rfind("<|im_start|>system\n", 0) == 0);
  const std::string tail = "<|im_end|>\n<|im_start|>assistant\n<think>";
  CHECK(cx[0].prompt.substr(cx[0].prompt.size() - tail.size()) == tail);
  auto plain = registry().create<Task>("knights_knaves", init("task", "data_dir = \".\"\npeople = [7]\nprompt = \"plain\""), "test");
  auto px = plain->examples("test");
  CHECK(px[0].prompt == px[0].metadata["quiz"].get<std::string>() + "\n<think>");
  CHECK_THROWS_WITH_AS(registry().create<Task>("knights_knaves", init("task", "people = [3]"), "test"),
                       doctest::Contains("give either data_dir or generate_train/generate_test"), PluginError);
  // Generated puzzles: one duplicate-free stream per size, split into train then test; seeded.
  const char* gen = "people = [2, 4]\ngenerate_train = 30\ngenerate_test = 10\ngenerate_seed = 9";
  auto g1 = registry().create<Task>("knights_knaves", init("task", gen), "test");
  auto g2 = registry().create<Task>("knights_knaves", init("task", gen), "test");
  auto gtrain = g1->examples("train"), gtest = g1->examples("test");
  CHECK(gtrain.size() == 60);
  CHECK(gtest.size() == 20);
  std::set<std::string> seen;
  for (const auto& e : gtrain) seen.insert(std::to_string(e.metadata["n_people"].get<int>()) + e.metadata["statements"].get<std::string>());
  for (const auto& e : gtest)
    CHECK(!seen.count(std::to_string(e.metadata["n_people"].get<int>()) + e.metadata["statements"].get<std::string>()));
  CHECK(g2->examples("test")[7].prompt == gtest[7].prompt);
  auto fixed = registry().create<Task>("knights_knaves",
      init("task", "people = [3]\ngenerate_test = 5\ngenerate_names = [\"Ann\", \"Bo\", \"Cy\"]\ngenerate_shuffle_names = false"), "test");
  for (const auto& e : fixed->examples("test"))
    CHECK(e.metadata["names"] == nlohmann::json::array({"Ann", "Bo", "Cy"}));
  CHECK_THROWS_WITH_AS(registry().create<Task>("knights_knaves", init("task", "people = [4]\ngenerate_test = 5\ngenerate_names = [\"Ann\", \"Bo\"]"), "test"),
                       doctest::Contains("needs at least as many names as people"), PluginError);
  auto missing = registry().create<Task>("knights_knaves", init("task", "data_dir = \"nowhere\"\npeople = [3]"), "test");
  CHECK_THROWS_WITH_AS(missing->examples("test"), doctest::Contains("3ppl_test.jsonl: cannot read"), DataError);
}
