#include "kk_generate.h"

#include <algorithm>
#include <stdexcept>

namespace kk {
namespace {

const char* kNames[] = {"Emma", "Liam", "Olivia", "Noah", "Ava", "Ethan", "Sophia", "Mason", "Isabella", "William",
                        "Mia", "James", "Charlotte", "Benjamin", "Amelia", "Lucas", "Harper", "Henry", "Evelyn",
                        "Alexander", "Abigail", "Michael", "Emily", "Daniel", "Elizabeth", "Jacob", "Sofia", "Logan",
                        "Avery", "Jackson", "Ella", "Sebastian", "Scarlett", "Jack", "Grace", "Aiden", "Chloe", "Owen",
                        "Victoria", "Samuel", "Riley", "Matthew", "Aria", "Joseph", "Lily", "Luke", "Aurora", "David",
                        "Zoey", "Oliver", "Penelope"};
constexpr int kNumNames = 51;

// The dataset's "said" templates: {name} and {content} are replaced.
const char* kTemplates[] = {"{name} said that {content}.", "{name} told you that {content}.",
                            "{name} said, \"{content}.\"", "{name} stated, \"{content}\".",
                            "According to {name}, \"{content}\".", "In {name}'s words: \"{content}\".",
                            "{name} remarked, \"{content}\".", "\"{content},\" {name} declared.",
                            "{name} was heard saying, \"{content}\".", "{name} expressed that {content}.",
                            "\"{content}\" - {name}.", "As {name} put it, \"{content}\".",
                            "{name} asserted: \"{content}\".", "\"{content},\" {name} mentioned.",
                            "{name} commented, \"{content}\".", "In a statement by {name}: \"{content}\".",
                            "{name} noted, \"{content}\".", "\"{content},\" {name} claimed."};

std::string repr(const Statement& s) {
  if (s.op == "telling-truth" || s.op == "lying") return "('" + s.op + "', " + std::to_string(s.person) + ")";
  std::string out = "('" + s.op + "'";
  for (const auto& a : s.args) out += ", " + repr(a);
  return out + ")";
}

std::string fill(std::string t, const std::string& name, const std::string& content) {
  t.replace(t.find("{name}"), 6, name);
  t.replace(t.find("{content}"), 9, content);
  return t;
}

}  // namespace

const std::vector<std::string>& said_templates() {
  static const std::vector<std::string> all(std::begin(kTemplates), std::end(kTemplates));
  return all;
}

std::string python_repr(const std::vector<Statement>& st) {
  std::string out = "(";
  for (size_t i = 0; i < st.size(); ++i) out += (i ? ", " : "") + repr(st[i]);
  return out + (st.size() == 1 ? ",)" : ")");
}

Generator::Generator(uint64_t seed, int n_people, std::vector<std::string> names, bool shuffle_names,
                     std::vector<std::string> templates)
    : rng_(seed * 1000003ULL + uint64_t(n_people)), n_(n_people), names_(std::move(names)),
      templates_(std::move(templates)), shuffle_names_(shuffle_names) {
  if (names_.empty()) names_.assign(kNames, kNames + kNumNames);
  if (templates_.empty()) templates_ = said_templates();
  for (const auto& t : templates_)
    if (t.find("{name}") == std::string::npos || t.find("{content}") == std::string::npos)
      throw std::invalid_argument("template '" + t + "' needs {name} and {content}");
  std::set<std::string> distinct(names_.begin(), names_.end());
  if (distinct.size() != names_.size()) throw std::invalid_argument("names must be distinct");
  if (n_people < 2 || n_people > int(names_.size()))
    throw std::invalid_argument("people must be between 2 and " + std::to_string(names_.size()) + " (the number of names)");
}

int Generator::uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

Statement Generator::sample(int person, int depth) {
  int dice = uniform(0, 5);
  if (depth == 1 || dice == 0) {
    while (true) {
      Statement leaf;
      leaf.op = uniform(0, 1) ? "lying" : "telling-truth";
      leaf.person = uniform(0, n_ - 1);
      if (!(leaf.op == "lying" && leaf.person == person)) return leaf;  // no "I am a knave"
    }
  }
  Statement s;
  if (dice == 1) {
    s.op = "not";
    s.args.push_back(sample(person, depth - 1));
    return s;
  }
  s.op = dice == 2 ? "and" : dice == 3 ? "or" : dice == 4 ? "->" : "<=>";
  std::set<std::string> distinct;  // width 2, distinct substatements
  while (s.args.size() < 2) {
    Statement sub = sample(person, depth - 1);
    if (distinct.insert(repr(sub)).second) s.args.push_back(sub);
  }
  return s;
}

nlohmann::ordered_json Generator::next(int64_t index) {
  std::vector<Statement> st;
  std::vector<std::vector<bool>> sols;
  for (int attempt = 0;; ++attempt) {
    if (attempt == 100000) throw std::runtime_error("no puzzle with a unique solution after 100000 tries");
    st.clear();
    for (int p = 0; p < n_; ++p) st.push_back(sample(p, 2));
    if (seen_.count(python_repr(st))) continue;
    sols = solve(st);
    if (sols.size() == 1) break;
  }
  seen_.insert(python_repr(st));
  std::vector<int> pool(names_.size());
  for (size_t i = 0; i < names_.size(); ++i) pool[i] = int(i);
  if (shuffle_names_) std::shuffle(pool.begin(), pool.end(), rng_);
  std::vector<std::string> names;
  for (int i = 0; i < n_; ++i) names.push_back(names_[size_t(pool[size_t(i)])]);

  std::string quiz = "A very special island is inhabited only by knights and knaves. Knights always tell the truth, "
                     "and knaves always lie. You meet " + std::to_string(n_) + " inhabitants: ";
  for (int i = 0; i < n_ - 1; ++i) quiz += names[size_t(i)] + ", ";
  quiz += "and " + names.back() + ".";
  for (int i = 0; i < n_; ++i) quiz += " " + fill(templates_[size_t(uniform(0, int(templates_.size()) - 1))], names[size_t(i)], render(st[size_t(i)], names));
  quiz += " So who is a knight and who is a knave?";

  const std::vector<bool>& sol = sols[0];
  std::string text;
  for (int i = 0; i < n_; ++i)
    text += (i == n_ - 1 ? "and " : "") + names[size_t(i)] + " is " + (sol[size_t(i)] ? "a knight" : "a knave") +
            (i == n_ - 1 ? "." : ", ");
  ChainOfThought cot = chain_of_thought(st, names);
  nlohmann::ordered_json j;
  j["quiz"] = quiz;
  j["names"] = names;
  j["knight_knave"] = {{"Knave", "Knave"}, {"Knight", "Knight"}, {"a_knave", "a knave"}, {"a_knight", "a knight"},
                       {"knave", "knave"}, {"knight", "knight"}};
  j["solution"] = sol;
  j["solution_text"] = text;
  j["solution_text_format"] = solution_text_format(names, sol);
  j["cot_head"] = cot.head;
  j["cot_repeat_steps"] = cot.steps;
  j["cot_foot"] = cot.foot;
  j["statements"] = python_repr(st);
  j["index"] = index;
  return j;
}

}  // namespace kk
