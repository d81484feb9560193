// The answer verifier: Math-Verify 0.9's parse() and verify() in C++. `parse` finds candidate
// answers in free text (\boxed{}, $...$, \[...\], "final answer is", plain numbers) with the
// original regular expressions and priorities, normalises and parses them; `verify` compares
// every gold candidate with every predicted one. Every call runs under a time budget (a deadline
// checked in the loops; no signals), so it is safe to call from many threads at once.
#pragma once

#include <string>
#include <vector>

#include "mv_ast.h"
#include "mv_compare.h"

namespace mv {

struct ParseOptions {
  bool latex = true;        // LatexExtractionConfig
  bool expr = true;         // ExprExtractionConfig
  int boxed_priority = 50;  // LatexExtractionConfig.boxed_match_priority (0: boxed first; -1: off)
};

// What parse() returns: the parsed answer (if any) and the first matched string (fallback).
struct Parsed {
  P expr;            // null when nothing parsed
  std::string text;  // empty when nothing matched
};

Parsed parse(const std::string& text, const ParseOptions& opts = {});
bool verify(const Parsed& gold, const Parsed& pred, const CompareOptions& opts = {});

struct Verdict {
  bool equal = false;
  bool timed_out = false;
  std::string error;  // why there was nothing to compare, or the timeout
  std::string extracted;  // the prediction's matched answer text (Math-Verify's parse()[1]), "" if none
};

// parse both sides and verify, within `budget_s` seconds overall (0: no budget).
Verdict verify_text(const std::string& gold, const std::string& pred, const ParseOptions& gold_opts,
                    const ParseOptions& pred_opts, const CompareOptions& cmp, double budget_s);

// The paper's reward/eval convention: gold = a bare MATH answer (wrapped in \boxed{} before
// parsing), pred = model text (last \boxed{} wins through the extraction priorities).
Verdict verify_answer(const std::string& gold_answer, const std::string& completion, double budget_s = 1.0);

}  // namespace mv
