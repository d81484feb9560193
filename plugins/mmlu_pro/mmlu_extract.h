// MMLU-Pro answer-letter extraction: the paper's chain and TIGER-AI-Lab's official chain, on PCRE2
// with the patterns written so that they match exactly as Python `re` does (see mmlu_extract.cpp),
// plus the official seeded random guess (CPython's Mersenne Twister, bit for bit).
// Does not score: the rewards in mmlu_rewards.cpp do that.
#pragma once

#include <cstdint>
#include <string>

namespace mmlu {

// Which extraction chain.
//   kPaper:    \boxed{X} -> <answer> X </answer> -> last standalone letter     (paper's dataset_loader.py)
//   kOfficial: "answer is (X)" -> ".*[aA]nswer: (X)" -> last standalone letter (evaluate_from_local.py)
enum class Chain { kPaper, kOfficial };

// What the extraction found. `letter` is 0 when no tier matched (the caller then guesses).
struct Extraction {
  char letter = 0;
  int tier = 0;             // 1..3: the tier that matched; 0: none
  const char* rule = "";    // short name of the tier ("boxed", "answer_tag", "answer_is", ...)
};

// Thread-safe; the compiled patterns are shared, match state is per thread. Never throws on any
// input (invalid UTF-8 is read as U+FFFD replacement characters, like a lossy decode).
// `paren_again`: the official tier 2 accepts "Answer: (X)" (`\(?` before the letter, as in the
// issue and TIGER's API/forks) or, when false, only "Answer: X" (evaluate_from_local.py).
Extraction extract(Chain chain, const std::string& text, bool paren_again = true);

// Python `str.strip()` (Unicode whitespace, i.e. str.isspace) on UTF-8 text.
std::string py_strip(const std::string& s);
// Byte length of a Python-whitespace character at s[i], 0 if none.
size_t py_space_at(const std::string& s, size_t i);

// CPython's `random.seed(seed); random.randint(0, n - 1)` (seed >= 0, n >= 1): MT19937 seeded by
// init_by_array over the seed's 32-bit words, then _randbelow with getrandbits rejection.
int64_t python_randint_below(uint64_t seed, int64_t n);

// 64-bit FNV-1a, for per-example guess seeds.
uint64_t fnv1a(const std::string& s);

}  // namespace mmlu
