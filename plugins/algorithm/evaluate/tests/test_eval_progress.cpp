// evaluate's progress file (eval_progress.h): what a resumed stage reads back, including a line
// cut by a kill, a fresh start that removes an old file, and data that changed under it.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

#include "eval_progress.h"

namespace fs = std::filesystem;

namespace {

fs::path temp_file(const char* name) {
  fs::path dir = fs::temp_directory_path() / ("warmup-eval-progress-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::path p = dir / name;
  fs::remove(p);
  return p;
}

warmup::Score score(double total, std::optional<bool> correct, bool errored = false) {
  warmup::Score s;
  s.total = total, s.correct = correct, s.errored = errored;
  s.parts["r"] = total;
  if (errored) s.error = "sandbox died";
  if (correct) s.extracted_answer = "42";
  return s;
}

const nlohmann::json kHeader = {{"digest", "abc"}, {"num_samples", 2}, {"save_every", 1}};

}  // namespace

TEST_CASE("progress: chunks read back in order with every field, a cut line and what follows dropped") {
  fs::path f = temp_file("a.jsonl");
  std::vector<std::string> ids = {"q0", "q1", "q2", "q3"};
  {
    evalp::Progress p(f, ids, kHeader, 1, false);
    CHECK(p.done().empty());
    p.append(0, ids, {{{"x", "stop", 3}, {"y\n\"z\"", "length", 7}}}, {score(1, true), score(0, std::nullopt, true)});
    p.append(1, ids, {{{"é", "stop", 1}, {"", "error", 0}}}, {score(0.5, false), score(0, false)});
  }
  uintmax_t good = fs::file_size(f);
  {
    std::ofstream out(f, std::ios::app);
    out << "{\"id\": \"q2\", \"items\": [{\"c\": {\"text\": \"cut";  // a kill mid-write: no newline
  }
  evalp::Progress r(f, ids, kHeader, 1, true);
  REQUIRE(r.done().size() == 2);
  CHECK(r.done()[0].completions[1].text == "y\n\"z\"");
  CHECK(r.done()[0].completions[1].finish_reason == "length");
  CHECK(r.done()[0].completions[1].tokens == 7);
  CHECK(r.done()[0].scores[0].correct == std::optional<bool>(true));
  CHECK(r.done()[0].scores[0].extracted_answer == std::optional<std::string>("42"));
  CHECK(r.done()[0].scores[1].errored);
  CHECK(r.done()[0].scores[1].error == "sandbox died");
  CHECK_FALSE(r.done()[0].scores[1].correct.has_value());
  CHECK(r.done()[1].completions[0].text == "é");
  CHECK(r.done()[1].scores[0].total == 0.5);
  CHECK(r.done()[1].scores[0].parts.at("r") == 0.5);
  CHECK(fs::file_size(f) == good);  // the cut line is gone: the next append starts a clean line
}

TEST_CASE("progress: a fresh start removes an old file; changed data is an error naming the line") {
  fs::path f = temp_file("b.jsonl");
  std::vector<std::string> ids = {"q0", "q1"};
  { evalp::Progress(f, ids, kHeader, 1, false).append(0, ids, {{{"x", "stop", 1}}, {{"y", "stop", 1}}}, {score(1, true), score(0, false)}); }
  CHECK(evalp::Progress(f, ids, kHeader, 1, true).done().size() == 2);
  CHECK_THROWS_WITH_AS(evalp::Progress(f, {"q0", "other"}, kHeader, 1, true), doctest::Contains(":3: example 'q1'"),
                       warmup::DataError);
  nlohmann::json other = kHeader;
  other["digest"] = "def";  // same ids, other content
  CHECK_THROWS_WITH_AS(evalp::Progress(f, ids, other, 1, true), doctest::Contains("changed since it started"),
                       warmup::DataError);
  evalp::Progress fresh(f, ids, kHeader, 1, false);
  CHECK(fresh.done().empty());
  CHECK(fs::file_size(f) == nlohmann::json{{"header", kHeader}}.dump().size() + 1);  // the header alone
}

TEST_CASE("progress: a chunk written in part is dropped whole (chunks keep their boundaries)") {
  fs::path f = temp_file("c.jsonl");
  std::vector<std::string> ids = {"q0", "q1", "q2", "q3", "q4"};
  {
    evalp::Progress p(f, ids, kHeader, 2, false);
    p.append(0, ids, {{{"a", "stop", 1}}, {{"b", "stop", 1}}}, {score(1, true), score(1, true)});
    p.append(2, ids, {{{"c", "stop", 1}}}, {score(0, false)});  // as if killed after one line of the chunk
  }
  evalp::Progress r(f, ids, kHeader, 2, true);
  CHECK(r.done().size() == 2);
  evalp::Progress again(f, ids, kHeader, 2, true);  // the file was cut back to match
  CHECK(again.done().size() == 2);
  again.append(2, ids, {{{"c", "stop", 1}}, {{"d", "stop", 1}}}, {score(0, false), score(0, false)});
  again.append(4, ids, {{{"e", "stop", 1}}}, {score(1, true)});
  CHECK(evalp::Progress(f, ids, kHeader, 2, true).done().size() == 5);  // all of them: the last chunk is short
}
