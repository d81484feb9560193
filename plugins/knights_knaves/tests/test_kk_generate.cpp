// Generated puzzles: parse back, unique solution, statements rendered into the quiz, the dataset's
// preamble and question, distinct names, the stored CoT equal to the solver's, reproducible seeds.
#include <doctest/doctest.h>

#include <set>

#include "kk_generate.h"

TEST_CASE("generated puzzles are valid for 2 to 8 people and reproducible") {
  for (int n = 2; n <= 8; ++n) {
    kk::Generator a(7, n), b(7, n), c(8, n);
    std::set<std::string> statements;
    bool differs = false;
    for (int i = 0; i < 25; ++i) {
      auto j = a.next(i);
      INFO(j.dump());
      CHECK(j == b.next(i));  // same seed, same puzzle
      differs |= j["statements"] != c.next(i)["statements"];
      auto names = j["names"].get<std::vector<std::string>>();
      CHECK(names.size() == size_t(n));
      CHECK(std::set<std::string>(names.begin(), names.end()).size() == size_t(n));
      auto st = kk::parse_statements(j["statements"].get<std::string>());
      CHECK(kk::python_repr(st) == j["statements"].get<std::string>());
      auto sols = kk::solve(st);
      REQUIRE(sols.size() == 1);
      CHECK(sols[0] == j["solution"].get<std::vector<bool>>());
      CHECK(statements.insert(j["statements"].get<std::string>()).second);  // no duplicates
      std::string quiz = j["quiz"];
      CHECK(quiz.rfind("A very special island is inhabited only by knights and knaves. Knights always tell the truth, "
                       "and knaves always lie. You meet " + std::to_string(n) + " inhabitants: ", 0) == 0);
      const std::string question = " So who is a knight and who is a knave?";
      CHECK(quiz.substr(quiz.size() - question.size()) == question);
      for (size_t p = 0; p < st.size(); ++p) {
        CHECK(quiz.find(kk::render(st[p], names)) != std::string::npos);
        CHECK((st[p].op != "lying" || st[p].person != int(p)));  // no "I am a knave"
      }
      auto cot = kk::chain_of_thought(st, names);
      CHECK(cot.steps == j["cot_repeat_steps"].get<std::vector<std::string>>());
      CHECK(j["solution_text_format"] == kk::solution_text_format(names, sols[0]));
    }
    CHECK(differs);
  }
}

TEST_CASE("generated puzzles use the given said templates") {
  kk::Generator g(3, 3, {"Emma", "Liam", "Olivia"}, false, {"{name} said that {content}."});
  for (int i = 0; i < 10; ++i) {
    auto j = g.next(i);
    auto st = kk::parse_statements(j["statements"].get<std::string>());
    std::string quiz = j["quiz"];
    for (size_t p = 0; p < 3; ++p) {
      INFO(quiz);
      CHECK(quiz.find(std::vector<std::string>{"Emma", "Liam", "Olivia"}[p] + " said that " +
                      kk::render(st[p], {"Emma", "Liam", "Olivia"}) + ".") != std::string::npos);
    }
  }
  CHECK_THROWS_AS(kk::Generator(3, 3, {}, true, {"{name} says"}), std::invalid_argument);
  CHECK(kk::said_templates().size() == 18);
}
