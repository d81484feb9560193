// LaTeX answer normalisation as Math-Verify 0.9 / latex2sympy2_extended 1.x do it before parsing
// (NormalizationConfig(basic_latex, units, malformed_operators, nits) with boxed "all" or
// "last"): \boxed extraction, \left/\right, \! and $ removal, dfrac/tfrac, text units, percent
// words, \frac12 and \sqrt3, a/b. Plus the MATH-style "last \boxed{}" extraction used by rewards.
// Not here: parsing (mv_parse) and comparing (mv_compare).
#pragma once

#include <optional>
#include <string>

namespace mv {

enum class BoxedMode { kAll, kLast, kNone };

// latex2sympy2_extended's normalize_latex with the verifier's fixed configuration.
std::string normalize_latex(const std::string& text, BoxedMode boxed);

// latex2sympy2_extended's extract_boxed_content: contents of \boxed{..} / \fbox{..} from the
// right, joined by commas ("all"), or the last group of boxes separated by and/or/,/; ("last").
std::string extract_boxed_content(const std::string& text, BoxedMode mode);

// The content of the last \boxed{...}, \boxed X or \fbox{...} with braces matched (the MATH
// convention; what the paper's reward gates on). nullopt when there is none or it is unclosed.
std::optional<std::string> last_boxed(const std::string& text);

// Number of Unicode code points (Python's len) of UTF-8 text.
size_t u8len(const std::string& s);

}  // namespace mv
