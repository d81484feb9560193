// The solver and renderer against the real puzzles: every stored solution is the unique solution
// of its statements, solution_text_format is reproduced, and every statement's English appears in
// the quiz text (the "said" templates around it vary). All 5,000 shared puzzles when the project's
// shared data is present, else the fixture slice.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "kk_logic.h"

namespace fs = std::filesystem;

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

fs::path data_dir() { return fs::exists(KK_SHARED_DIR) ? fs::path(KK_SHARED_DIR) : fs::path(KK_FIXTURE_DIR); }

// Calls fn(puzzle, names) for the first 60 puzzles of each file with at most 5 people (the truth
// styles list all 2^n cases); returns how many.
template <class Fn>
int each_small_puzzle(Fn fn) {
  int puzzles = 0;
  for (const auto& entry : fs::directory_iterator(data_dir())) {
    if (entry.path().extension() != ".jsonl") continue;
    std::ifstream in(entry.path());
    std::string line;
    for (int ln = 1; std::getline(in, line) && ln <= 60; ++ln) {
      auto j = nlohmann::json::parse(line);
      auto names = j["names"].get<std::vector<std::string>>();
      if (names.size() > 5) break;
      INFO(entry.path().filename().string() << ":" << ln);
      fn(j, names);
      ++puzzles;
    }
  }
  return puzzles;
}

}  // namespace

TEST_CASE("solver, renderer, chain of thought and solution format agree with every puzzle") {
  int puzzles = 0;
  for (const auto& entry : fs::directory_iterator(data_dir())) {
    if (entry.path().extension() != ".jsonl") continue;
    std::ifstream in(entry.path());
    std::string line;
    for (int ln = 1; std::getline(in, line); ++ln) {
      auto j = nlohmann::json::parse(line);
      INFO(entry.path().filename().string() << ":" << ln);
      auto names = j["names"].get<std::vector<std::string>>();
      auto solution = j["solution"].get<std::vector<bool>>();
      auto st = kk::parse_statements(j["statements"].get<std::string>());
      REQUIRE(st.size() == names.size());
      auto sols = kk::solve(st);
      REQUIRE(sols.size() == 1);  // unique
      CHECK(sols[0] == solution);
      CHECK(kk::solution_text_format(names, solution) == j["solution_text_format"].get<std::string>());
      auto cot = kk::chain_of_thought(st, names);
      CHECK(cot.head == j["cot_head"].get<std::string>());
      CHECK(cot.steps == j["cot_repeat_steps"].get<std::vector<std::string>>());
      CHECK(cot.foot == j["cot_foot"].get<std::string>());
      CHECK(cot.solution == solution);
      std::string quiz = lower(j["quiz"].get<std::string>());
      for (const auto& s : st) {
        std::string english = lower(kk::render(s, names));
        INFO(english);
        CHECK(quiz.find(english) != std::string::npos);
      }
      ++puzzles;
    }
  }
  MESSAGE("checked " << puzzles << " puzzles from " << data_dir().string());
  CHECK(puzzles >= 120);
}

// The truth-table trace re-derived line by line from its own text: every claim line is the
// speaker's statement, every mark follows the rule (yes above and the claim's truth equals the
// speaker's role), and the one case left is the stored solution. Puzzles of up to 5 people.
TEST_CASE("truth-table chain of thought: marks follow the rule and reach the unique solution") {
  int puzzles = each_small_puzzle([&](const nlohmann::json& j, const std::vector<std::string>& names) {
    auto solution = j["solution"].get<std::vector<bool>>();
    auto st = kk::parse_statements(j["statements"].get<std::string>());
    auto cot = kk::truth_table_chain_of_thought(st, names);
    size_t n = names.size(), cases = size_t(1) << n;
    REQUIRE(cot.steps.size() == n);
    std::vector<bool> alive(cases, true);
    for (size_t p = 0; p < n; ++p) {
      const std::string& step = cot.steps[p];
      size_t nl = step.find('\n');
      REQUIRE(nl != std::string::npos);
      CHECK(step.substr(0, nl) == "Claim: " + names[p] + " said that " + kk::render(st[p], names) + ".");
      std::istringstream marks(step.substr(nl + 1));
      for (size_t c = 0; c < cases; ++c) {
        std::string code, mark;
        marks >> code >> mark;
        REQUIRE(code.size() == n);
        std::vector<bool> k;
        for (char ch : code) k.push_back(ch == 'K');
        bool yes = mark.rfind("yes", 0) == 0;
        CHECK(yes == (alive[c] && kk::evaluate(st[p], k) == k[p]));
        alive[c] = yes;
        std::string want;  // knight first, person 0 slowest
        for (size_t i = 0; i < n; ++i) want += ((c >> (n - 1 - i)) & 1) ? 'N' : 'K';
        CHECK(code == want);
      }
    }
    CHECK(std::count(alive.begin(), alive.end(), true) == 1);
    CHECK(cot.solution == solution);
    CHECK(cot.foot.rfind("Only ", 0) == 0);
    CHECK(cot.text().find('\n') != std::string::npos);
  });
  CHECK(puzzles >= 40);
  // No solution and two solutions are said so.
  auto none = kk::truth_table_chain_of_thought(kk::parse_statements("(('lying', 1), ('telling-truth', 0))"), {"A", "B"});
  CHECK(none.foot == "No case fits every claim.");
  CHECK(none.solution.empty());
  auto two = kk::truth_table_chain_of_thought(kk::parse_statements("(('telling-truth', 1), ('telling-truth', 0))"), {"A", "B"});
  CHECK(two.foot == "More than one case fits every claim.");
}

// The truth-vector trace re-derived from its own text: each line marks a case by writing its code
// in capitals (holds) or lower case (does not), or "yes"/"no" after it on Fits/So far lines; a
// leaf line follows from its label alone, an operator combines the last two lines (one for "Not")
// on a stack, as the lines come operands first, and "Fits"/"So far" keep the cases that held on the last such line and whose claim's truth
// matches the speaker's role; the one case left is the solution. Puzzles of up to 5 people.
TEST_CASE("truth-vector chain of thought: every line follows from its label and the lines above") {
  std::set<std::string> labels;
  int puzzles = each_small_puzzle([&](const nlohmann::json& j, const std::vector<std::string>& names) {
    auto st = kk::parse_statements(j["statements"].get<std::string>());
    auto cot = kk::chain_of_thought("truth_vectors", st, names, "{name}: {content}!");
    size_t n = names.size(), cases = size_t(1) << n;
    REQUIRE(cot.steps.size() == n);
    auto knight = [&](size_t c, size_t who) { return !((c >> (n - 1 - who)) & 1); };
    auto parse = [&](const std::string& text, std::string& label) {
      size_t colon = text.find(": ");
      REQUIRE(colon != std::string::npos);
      label = text.substr(0, colon);
      REQUIRE(text.back() == '.');
      std::istringstream marks(text.substr(colon + 2, text.size() - colon - 3));
      std::vector<bool> v;
      bool yes_no = label == "Fits" || label == "So far";  // "KKK yes KKN no ..." there
      for (size_t c = 0; c < cases; ++c) {
        std::string code, want, mark;
        marks >> code;
        for (size_t i = 0; i < n; ++i) want += knight(c, i) ? 'K' : 'N';
        if (yes_no) {
          CHECK(code == want);
          marks >> mark;
          REQUIRE((mark == "yes" || mark == "no"));
          v.push_back(mark == "yes");
          continue;
        }
        bool upper = code == want;
        for (char& ch : want) ch = char(std::tolower(ch));
        CHECK((upper || code == want));
        v.push_back(upper);
      }
      std::string rest;
      CHECK(!(marks >> rest));
      return v;
    };
    std::vector<bool> alive(cases, true);
    for (size_t p = 0; p < n; ++p) {
      std::istringstream step(cot.steps[p]);
      std::string text, label;
      std::getline(step, text);
      CHECK(text == "Claim: " + names[p] + ": " + kk::render(st[p], names) + "!");
      std::vector<std::vector<bool>> stack;
      while (std::getline(step, text)) {
        auto v = parse(text, label);
        labels.insert(label);
        std::vector<bool> want(cases);
        if (label == (p ? "So far" : "Fits")) {
          REQUIRE(stack.size() == 1);
          for (size_t c = 0; c < cases; ++c) alive[c] = alive[c] && stack[0][c] == knight(c, p);
          CHECK(v == alive);
          stack.clear();
          continue;
        }
        bool leaf = false;
        for (size_t who = 0; who < n && !leaf; ++who)
          for (std::string role : {"knight", "knave"})
            for (bool neg : {false, true})
              if (label == names[who] + (neg ? " is not a " : " is a ") + role) {
                leaf = true;
                for (size_t c = 0; c < cases; ++c) want[c] = (knight(c, who) == (role == "knight")) != neg;
              }
        if (!leaf && label == "Not") {
          REQUIRE(!stack.empty());
          for (size_t c = 0; c < cases; ++c) want[c] = !stack.back()[c];
          stack.pop_back();
        } else if (!leaf) {
          REQUIRE(stack.size() >= 2);
          auto b = stack.back();
          stack.pop_back();
          auto a = stack.back();
          stack.pop_back();
          for (size_t c = 0; c < cases; ++c) {
            if (label == "Both") want[c] = a[c] && b[c];
            else if (label == "Either") want[c] = a[c] || b[c];
            else if (label == "If then") want[c] = !a[c] || b[c];
            else if (label == "Same") want[c] = a[c] == b[c];
            else FAIL("unknown label " << label);
          }
        }
        CHECK(v == want);
        stack.push_back(v);
      }
      CHECK(stack.empty());  // the step ended with the Fits / So far line
    }
    REQUIRE(std::count(alive.begin(), alive.end(), true) == 1);
    CHECK(cot.solution == j["solution"].get<std::vector<bool>>());
    size_t c = size_t(std::find(alive.begin(), alive.end(), true) - alive.begin());
    std::string code;
    for (size_t i = 0; i < n; ++i) code += knight(c, i) ? 'K' : 'N';
    CHECK(cot.foot.rfind("Only " + code + " fits, so ", 0) == 0);
  });
  CHECK(puzzles >= 40);
  for (const char* op : {"Both", "Either", "If then", "Same"}) CHECK(labels.count(op) == 1);
  CHECK_THROWS_AS(kk::chain_of_thought("prose", {}, {}), std::invalid_argument);
  CHECK_THROWS_AS(kk::chain_of_thought("truth_vectors", kk::parse_statements("(('telling-truth', 0),)"), {"A"}, "{content}"),
                  std::invalid_argument);  // no {name}
}

TEST_CASE("parser errors are reported") {
  CHECK_THROWS_AS(kk::parse_statements("(('maybe', 1),)"), std::runtime_error);
  CHECK_THROWS_AS(kk::parse_statements("(('not', ('lying', 1), ('lying', 2)),)"), std::runtime_error);
  CHECK_THROWS_AS(kk::parse_statements("(('lying', 1)"), std::runtime_error);
  auto st = kk::parse_statements("(('lying', 1), ('telling-truth', 0))");
  CHECK(kk::solve(st).size() == 0);  // A says B is a knave; B says A is a knight: no solution
  auto two = kk::parse_statements("(('telling-truth', 1), ('telling-truth', 0))");
  CHECK(kk::solve(two).size() == 2);
}
