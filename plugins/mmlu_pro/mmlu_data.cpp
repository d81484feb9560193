// MMLU-Pro rows, seeded separation and prompt rendering (see mmlu_data.h). The separation uses
// its own portable generator (splitmix64 + rejection sampling), not numpy's: the paper's exact
// draw (np.random.default_rng(42).choice over the pandas index) is not reproduced.
#include "mmlu_data.h"

#include <algorithm>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "mmlu_extract.h"
#include "plugin_common/jsonl.h"
#include "warmup/jsonl.h"
#include "warmup/types.h"

namespace mmlu {

const char* const kOfficialHeader =
    "The following are multiple choice questions (with answers) about {$}. Think step by step and then "
    "finish your answer with \"the answer is (X)\" where X is the correct letter choice.\n\n";

namespace {

Question parse_row(const nlohmann::json& j, const std::string& where) {
  Question q;
  try {
    q.question_id = warmup::json_field<int64_t>(j, "question_id", where);
    q.question = warmup::json_field<std::string>(j, "question", where);
    for (const auto& o : warmup::json_field<std::vector<std::string>>(j, "options", where))
      if (o != "N/A") q.options.push_back(o);
    q.answer = warmup::json_field<std::string>(j, "answer", where);
    q.answer_index = warmup::json_field<int64_t>(j, "answer_index", where);
    q.category = warmup::json_field<std::string>(j, "category", where);
    q.src = warmup::json_field_or<std::string>(j, "src", "", where);
    q.cot_content = warmup::json_field_or<std::string>(j, "cot_content", "", where);
  } catch (const nlohmann::json::exception& e) {
    throw warmup::DataError(where + ": malformed MMLU-Pro row: " + e.what());
  }
  if (q.options.empty() || q.options.size() > 10)
    throw warmup::DataError(where + ": expected 1 to 10 options, found " + std::to_string(q.options.size()));
  if (q.answer.size() != 1 || q.answer[0] < 'A' || size_t(q.answer[0] - 'A') >= q.options.size())
    throw warmup::DataError(where + ": answer '" + q.answer + "' is not one of the " +
                            std::to_string(q.options.size()) + " option letters");
  return q;
}

// splitmix64: small, portable, good enough for sampling without replacement.
struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) {  // uniform in [0, n), unbiased (rejection)
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    for (;;) {
      uint64_t r = next();
      if (r < limit) return r % n;
    }
  }
};

}  // namespace

std::vector<Question> load_questions(const std::string& path) {
  std::vector<Question> out;
  warmup::common::read_jsonl(path, [&](nlohmann::json& j, const std::string& where, int64_t) {
    out.push_back(parse_row(j, where));
    return true;
  });
  return out;
}

const std::vector<std::string>& all_categories() {
  static const std::vector<std::string> k = {"biology",   "business", "chemistry", "computer science", "economics",
                                             "engineering", "health",  "history",   "law",              "math",
                                             "other",     "philosophy", "physics",  "psychology"};
  return k;
}

Separation separate(const std::vector<Question>& rows, const std::vector<std::string>& categories,
                    int64_t per_category, uint64_t seed) {
  std::map<std::string, std::vector<size_t>> by_cat;
  for (size_t i = 0; i < rows.size(); ++i) by_cat[rows[i].category].push_back(i);
  Separation s;
  for (const auto& cat : categories) {
    std::vector<size_t> idx = by_cat[cat];
    size_t k = std::min<size_t>(size_t(std::max<int64_t>(per_category, 0)), idx.size());
    SplitMix rng{seed ^ fnv1a(cat)};
    std::vector<size_t> perm(idx.size());
    for (size_t i = 0; i < perm.size(); ++i) perm[i] = i;
    for (size_t i = 0; i < k; ++i) std::swap(perm[i], perm[i + rng.below(perm.size() - i)]);  // partial Fisher-Yates
    std::vector<bool> chosen(idx.size(), false);
    for (size_t i = 0; i < k; ++i) chosen[perm[i]] = true;
    for (size_t i = 0; i < idx.size(); ++i) (chosen[i] ? s.train : s.rest).push_back(idx[i]);
  }
  return s;
}

std::string options_block(const Question& q) {
  std::string out;
  for (size_t i = 0; i < q.options.size(); ++i) out += std::string(1, kLetters[i]) + ". " + q.options[i] + "\n";
  return out;
}

std::string fill_paper(const std::string& tmpl, const Question& q) {
  static const std::pair<const char*, int> kKeys[] = {{"{category}", 0}, {"{question}", 1}, {"{options}", 2}};
  std::string out;
  for (size_t i = 0; i < tmpl.size();) {
    bool hit = false;
    for (const auto& [key, which] : kKeys) {
      size_t n = std::char_traits<char>::length(key);
      if (tmpl.compare(i, n, key) != 0) continue;
      out += which == 0 ? q.category : which == 1 ? q.question : options_block(q);
      i += n, hit = true;
      break;
    }
    if (!hit) out += tmpl[i++];
  }
  return out;
}

namespace {
std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = 0; (at = s.find(from, at)) != std::string::npos; at += to.size()) s.replace(at, from.size(), to);
  return s;
}

// format_cot_example(example, including_answer)
std::string cot_example(const Question& q, bool with_answer) {
  std::string p = "Question:\n" + q.question + "\nOptions:\n" + options_block(q);
  if (with_answer)
    p += replace_all(q.cot_content, "A: Let's think step by step.", "Answer: Let's think step by step.") + "\n\n";
  else
    p += "Answer: Let's think step by step.";
  return p;
}
}  // namespace

std::string five_shot(const std::string& header, const std::vector<Question>& validation, const Question& q, int64_t k) {
  std::string p = replace_all(header, "{$}", q.category) + "\n";
  int64_t used = 0;
  for (const auto& v : validation) {
    if (used >= k) break;
    if (v.category != q.category) continue;
    p += cot_example(v, true);
    ++used;
  }
  return p + cot_example(q, false);
}

}  // namespace mmlu
