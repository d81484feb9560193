// MMLU-Pro data: JSONL rows of test.jsonl / validation.jsonl (see ../shared/data/README.md), the
// seeded per-category train/test separation, and prompt rendering (the paper's zero-shot R1
// templates and the official 5-shot CoT prompt). No scoring here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mmlu {

inline constexpr const char* kLetters = "ABCDEFGHIJ";

struct Question {
  int64_t question_id = 0;
  std::string question;
  std::vector<std::string> options;  // "N/A" padding removed (the official preprocess); 1..10
  std::string answer;                // gold letter
  int64_t answer_index = 0;          // as stored (question 3983 disagrees with `answer`)
  std::string category, src;
  std::string cot_content;           // validation rows only
};

// All rows of a JSONL file. Throws warmup::DataError naming file:line for unreadable files,
// malformed JSON, missing or mistyped fields, more than 10 options or a gold letter outside them.
std::vector<Question> load_questions(const std::string& path);

// The 14 categories of MMLU-Pro, sorted.
const std::vector<std::string>& all_categories();

// Per-category seeded separation of `rows` (indices into `rows`, file order within a category,
// categories in the given order). Each category draws `per_category` rows without replacement
// from its own stream seeded by (seed, category name), so a category's sample does not depend on
// which other categories are selected. A category with fewer rows goes entirely to `train`.
struct Separation {
  std::vector<size_t> train, rest;
};
Separation separate(const std::vector<Question>& rows, const std::vector<std::string>& categories,
                    int64_t per_category, uint64_t seed);

// "A. text\n" per option (the paper's and the official rendering).
std::string options_block(const Question& q);

// Fills {category}, {question}, {options} of a paper template in one pass (like the f-string:
// placeholder-like text inside the inserted values is left alone).
std::string fill_paper(const std::string& tmpl, const Question& q);

// The official 5-shot CoT prompt (evaluate_from_local.py generate_cot_prompt): `header` with
// "{$}" replaced by the category, then "\n", then the first `k` validation rows of the category
// (format_cot_example with the answer), then the question itself ending "Answer: Let's think step
// by step.".
std::string five_shot(const std::string& header, const std::vector<Question>& validation, const Question& q, int64_t k);

// The official initial_prompt.txt (with "{$}" for the category).
extern const char* const kOfficialHeader;

}  // namespace mmlu
