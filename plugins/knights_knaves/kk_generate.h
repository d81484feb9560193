// Puzzle generation with Xie et al.'s grammar: each person makes one statement, a leaf ("X is a
// knight/knave", never "I am a knave") or not/and/or/->/<=> over distinct leaves (depth <= 2,
// width 2); only statement sets with exactly one solution are kept, without duplicates. Rendered
// with the dataset's names, "said" templates, preamble and question. Seeded: the same seed gives
// the same puzzles.
#pragma once

#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kk_logic.h"

namespace kk {

class Generator {
 public:
  // `names`: the pool each puzzle draws its people from; empty = the dataset's 51 common names.
  // `shuffle_names` false: person i is always names[i] (easier for tiny models).
  // `templates`: the "said" templates ({name} and {content} replaced); empty = the dataset's 18.
  Generator(uint64_t seed, int n_people, std::vector<std::string> names = {}, bool shuffle_names = true,
            std::vector<std::string> templates = {});
  // One puzzle as a dataset record (quiz, names, knight_knave, solution, solution_text,
  // solution_text_format, cot_head, cot_repeat_steps, cot_foot, statements, index).
  nlohmann::ordered_json next(int64_t index);

 private:
  Statement sample(int person, int depth);
  int uniform(int lo, int hi);  // [lo, hi]
  std::mt19937_64 rng_;
  int n_;
  std::vector<std::string> names_, templates_;
  bool shuffle_names_ = true;
  std::set<std::string> seen_;
};

// The dataset's 18 "said" templates, e.g. "{name} said that {content}.".
const std::vector<std::string>& said_templates();

// Python's repr of the statements tuple, as in the dataset: "(('lying', 1), ('or', ...))".
std::string python_repr(const std::vector<Statement>& statements);

}  // namespace kk
