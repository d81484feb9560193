// he_extract: the paper's format gate and code extraction from a completion. Pure text, no
// execution.
#pragma once

#include <string>

namespace he {

// The paper's gate: exactly one </think>, <answer>, </answer>, and the whole completion matches
// `.+</think>\s*<answer>(.+)</answer>\s*$` (dot matches newline). On success `answer` is the
// group; otherwise `why` says what failed.
bool format_ok(const std::string& completion, std::string& answer, std::string& why);

// Without the gate: the text inside the last <answer>...</answer> (a missing </answer> runs to
// the end), else the whole completion.
std::string answer_span(const std::string& completion);

// Code from an answer span. first = true (the paper's RL reward): the first ```python block,
// else the first ``` block, else the raw text. first = false (the paper's evaluation): the last
// ```python block, else the last ``` block, else the raw text. A bare language tag on a generic
// block's first line (```py) is dropped.
std::string extract_code(const std::string& answer, bool first);

}  // namespace he
