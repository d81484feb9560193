// The C++ verifier against references: Math-Verify's own test cases (verdicts recorded from
// huggingface/Math-Verify tests, ../shared/data/math_verify), all 500 MATH-500 gold solutions vs
// their answers, the time budget, and the extraction/normalisation helpers.
#include <doctest/doctest.h>

#include <chrono>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "math_verify.h"
#include "mv_normalize.h"

namespace {

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot read " << path);
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

mv::Verdict run_case(const nlohmann::json& c, double budget = 5.0) {
  mv::ParseOptions go, po;
  if (c.at("harness") == "compare_strings") {
    mv::ParseOptions o{false, false, 0};
    for (const auto& t : c.at("match_types")) (t == "latex" ? o.latex : o.expr) = true;
    go = po = o;
  }
  mv::CompareOptions cmp;
  if (c["float_rounding"].is_number()) cmp.float_rounding = c["float_rounding"];
  if (c["strict"].is_boolean()) cmp.strict = c["strict"];
  if (c["allow_set_relation_comp"].is_boolean()) cmp.allow_set_relation_comp = c["allow_set_relation_comp"];
  return mv::verify_text(c.at("gold"), c.at("pred"), go, po, cmp, budget);
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

TEST_CASE("agrees with Math-Verify's verdicts on its test cases (>= 98%)") {
  auto cases = read_jsonl(MATH_SHARED_DIR "/math_verify/equivalence_cases.jsonl");
  REQUIRE(cases.size() == 261);
  size_t agree = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    bool got = run_case(cases[i]).equal;
    if (got == cases[i]["equal"].get<bool>()) ++agree;
    else
      std::cout << "disagree #" << i << " (" << cases[i]["source"].get<std::string>() << "): expected "
                << cases[i]["equal"] << ", gold " << cases[i]["gold"].dump().substr(0, 120) << ", pred "
                << cases[i]["pred"].dump().substr(0, 120) << "\n";
  }
  double rate = double(agree) / double(cases.size());
  std::cout << "Math-Verify agreement: " << agree << "/" << cases.size() << " = " << rate * 100 << "%\n";
  CHECK(rate >= 0.98);
}

TEST_CASE("MATH-500: every gold solution verifies against its answer; a neighbour's answer does not") {
  auto rows = read_jsonl(MATH_SHARED_DIR "/math/math500_test.jsonl");
  REQUIRE(rows.size() == 500);
  size_t pos = 0, neg = 0, neg_total = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const std::string answer = rows[i]["answer"], solution = rows[i]["solution"];
    auto v = mv::verify_answer(answer, solution, 5.0);
    if (v.equal) ++pos;
    else std::cout << "gold solution rejected: " << rows[i]["unique_id"] << " answer " << answer << "\n";
    const auto& other = rows[(i + 1) % rows.size()];
    // Different strings that are the same answer ("5" and "x=5", MATH-500 rows 23/24) are not wrong.
    if (other["answer"] == answer || (answer == "5" && other["answer"] == "x=5")) continue;
    ++neg_total;
    if (!mv::verify_answer(answer, other["solution"], 5.0).equal) ++neg;
    else std::cout << "wrong answer accepted: gold " << answer << " vs " << other["answer"] << "\n";
  }
  std::cout << "MATH-500: " << pos << "/500 gold solutions correct, " << neg << "/" << neg_total << " neighbours wrong\n";
  CHECK(pos == 500);
  CHECK(neg == neg_total);
  // the train split's own answers (added from the last \boxed{}) verify too
  auto train = read_jsonl(MATH_SHARED_DIR "/math/math_train.jsonl");
  size_t ok = 0, n = 0;
  for (size_t i = 0; i < train.size(); i += 15, ++n) ok += mv::verify_answer(train[i]["answer"], train[i]["solution"], 5.0).equal;
  std::cout << "MATH train (every 15th row): " << ok << "/" << n << "\n";
  CHECK(double(ok) >= 0.97 * double(n));
}

TEST_CASE("the time budget holds (a correctness bound on the deadline, not a speed test)") {
  std::vector<std::string> hostile = {
      std::string(20000, '(') + "1" + std::string(20000, ')'),
      "$" + std::string(50000, 'x') + "$",
      "\\boxed{" + [] {
        std::string s = "1";
        for (int i = 0; i < 3000; ++i) s = "\\frac{" + s + "}{x+" + std::to_string(i) + "}";
        return s;
      }() + "}",
      [] {
        std::string s;
        for (int i = 0; i < 4000; ++i) s += "$" + std::to_string(i) + "$ and ";
        return s;
      }(),
      "\\boxed{" + std::string(100000, '{'),
  };
  double worst = 0;
  for (const auto& h : hostile) {
    for (const auto& [g, p] : {std::pair{std::string("\\boxed{1}"), h}, std::pair{h, h}}) {
      auto t = std::chrono::steady_clock::now();
      auto v = mv::verify_text(g, p, {}, {}, {}, 1.0);
      worst = std::max(worst, seconds_since(t));
      CHECK_FALSE((v.equal && g != p));
    }
  }
  // and over the whole MATH-500 with the default 1 s budget
  for (const auto& r : read_jsonl(MATH_SHARED_DIR "/math/math500_test.jsonl")) {
    auto t = std::chrono::steady_clock::now();
    mv::verify_answer(r["answer"], r["solution"], 1.0);
    worst = std::max(worst, seconds_since(t));
  }
  // the deadline really fires: a budget far below the work needed ends in a timeout, not a verdict
  auto v = mv::verify_text("\\boxed{1}", hostile[3], {}, {}, {}, 1e-6);
  CHECK(v.timed_out);
  CHECK_FALSE(v.equal);
  std::cout << "max wall time per call with a 1 s budget: " << worst << " s\n";
  CHECK(worst < 2.0);
}

TEST_CASE("last \\boxed{} extraction and normalisation") {
  CHECK(mv::last_boxed("a \\boxed{1} then \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}");
  CHECK(mv::last_boxed("\\fbox{7}") == "7");
  CHECK(mv::last_boxed("so \\boxed 5$ done") == "5");
  CHECK(mv::last_boxed("\\boxed{\\{1,2\\}}") == "\\{1,2\\}");
  CHECK_FALSE(mv::last_boxed("no box"));
  CHECK_FALSE(mv::last_boxed("\\boxed{unclosed"));
  using mv::BoxedMode;
  CHECK(mv::normalize_latex("\\dfrac12", BoxedMode::kAll) == "\\frac{1}{2}");
  CHECK(mv::normalize_latex("\\left( 3, \\frac{\\pi}{2} \\right)", BoxedMode::kAll) == "( 3, \\frac{\\pi}{2} )");
  CHECK(mv::normalize_latex("10\\text{ cm}^2", BoxedMode::kAll) == "10");
  CHECK(mv::normalize_latex("\\$1,\\!000", BoxedMode::kAll) == "1,000");
  CHECK(mv::normalize_latex("\\boxed{1} and \\boxed{2}", BoxedMode::kLast) == "1,2");
  CHECK(mv::normalize_latex("0.5", BoxedMode::kAll) == "\\frac{1}{2}");
  CHECK(mv::normalize_latex("90^\\circ", BoxedMode::kAll) == "90^\\circ");
}

TEST_CASE("numeric and structural comparison") {
  auto eq = [](const std::string& g, const std::string& p) { return mv::verify_answer(g, "$" + p + "$").equal; };
  CHECK(eq("\\frac{1}{2}", "0.5"));
  CHECK(eq("\\frac{1}{2}", "1/2"));
  CHECK(eq("50\\%", "50"));
  CHECK(eq("2.5\\times 10^{3}", "2500"));
  CHECK(eq("2\\sqrt{2}", "\\sqrt{8}"));
  CHECK(eq("\\pi^2", "\\pi\\cdot\\pi"));
  CHECK(eq("x^2+2x+1", "(x+1)^2"));
  CHECK_FALSE(eq("x^2+2x+1", "(x-1)^2"));
  CHECK(eq("(1,2)", "(1, 2)"));
  CHECK_FALSE(eq("(1,2)", "[1,2]"));
  CHECK(eq("\\{1,2,3\\}", "\\{3,2,1\\}"));
  CHECK(eq("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"));
  CHECK_FALSE(eq("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}"));
  CHECK(eq("y = 2x + 1", "2x - y + 1 = 0"));
  CHECK(eq("3", "x = 3"));
  CHECK(eq("90^\\circ", "90"));
  CHECK_FALSE(eq("3", "4"));
  CHECK_FALSE(eq("0.333", "\\frac{1}{3}"));
  CHECK(eq("1.5 \\cdot 10^{-3}", "0.0015"));
}
