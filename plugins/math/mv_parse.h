// A recursive-descent parser from (normalised) LaTeX to the verifier's tree (mv_ast.h), playing
// the role of latex2sympy2_extended: numbers, symbols with subscripts, + - * / ^ : and implicit
// products, \frac \sqrt \binom ! |x| and the usual functions, \pi e i \infty, percent and
// degrees, relations and chains (= < > \le \ge \neq \approx \in), tuples, intervals, sets (\{\},
// commas, semicolons, \pm, \cup) and matrices. Unknown commands are errors (ParseError), like
// in the original, so callers can fall back. No evaluation here.
#pragma once

#include <stdexcept>
#include <string>

#include "mv_ast.h"

namespace mv {

struct ParseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// `complex`: treat `i` as the imaginary unit (Math-Verify's should_treat_as_complex).
P parse_latex(const std::string& latex, bool complex = false);

// Math-Verify's parse_latex_cached: parse, and on failure retry with the last `=` part.
P parse_latex_with_fallback(const std::string& latex);

// Plain expressions found by the expression extractor ("1/2", "(3+4)*2", "2^10").
P parse_plain_expr(const std::string& expr);

}  // namespace mv
