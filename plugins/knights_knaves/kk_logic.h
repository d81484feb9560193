// Knights & Knaves logic (Xie et al. 2024 grammar): statements as parsed from the dataset's
// `statements` field, evaluation under an assignment, brute-force solving, and English rendering.
// No I/O and no plugin API here, so the tests and a future generator share it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kk {

// ('telling-truth', i) | ('lying', i) | ('not', s) | ('and', s...) | ('or', s...) | ('->', a, b)
// | ('<=>', a, b)
struct Statement {
  std::string op;
  int person = -1;                 // leaves
  std::vector<Statement> args;     // compound
};

// Parses the Python tuple text of all people's statements, e.g.
// "(('lying', 1), ('or', ('telling-truth', 0), ('lying', 2)))". Throws std::runtime_error.
std::vector<Statement> parse_statements(const std::string& text);

bool evaluate(const Statement& s, const std::vector<bool>& knights);
// Every assignment (true = knight) under which each person is a knight exactly when their
// statement is true.
std::vector<std::vector<bool>> solve(const std::vector<Statement>& statements);

// "Zoey is a knight or Zoey is a knave", as in the dataset's quiz text.
std::string render(const Statement& s, const std::vector<std::string>& names);

// The solver's backtracking chain of thought as in Xie et al.'s dataset (`cot_head`,
// `cot_repeat_steps`, `cot_foot`): people are tried knight first; after a consistent assumption
// the people that person mentions are considered next; an assumption fails when some assigned
// person's (possibly false) claim can no longer be satisfied by any completion.
struct ChainOfThought {
  std::string head;
  std::vector<std::string> steps;
  std::string foot;
  std::vector<bool> solution;  // the assignment reached (empty when none exists)
  std::string sep = " ";       // what text() puts between head, steps and foot
  // head + steps + foot joined by `sep`.
  std::string text() const;
};
ChainOfThought chain_of_thought(const std::vector<Statement>& statements, const std::vector<std::string>& names);

// A truth-table chain of thought for small models that learn from scratch: every token is a copy
// or a local rule, so no step needs the whole puzzle at once.
//   head:  "Cases list Emma, Liam, Olivia as K (knight) or N (knave)."
//   steps: one per person: their claim copied out ("Claim: Emma said that Liam is a knave.", the
//          quiz's own words, so the copy is exact token for token), then every
//          assignment, knight first ("KKK yes KKN no ..."), yes while it fits all claims so far
//          (the claim's truth matches the speaker's role and the case was yes on the line above)
//   foot:  "Only KNK fits, so Emma is a knight, Liam is a knave, and Olivia is a knight."
// Lines are joined by newlines; 2^n cases per line, so at most 12 people.
ChainOfThought truth_table_chain_of_thought(const std::vector<Statement>& statements,
                                            const std::vector<std::string>& names,
                                            const std::string& claim = "{name} said that {content}.");

// Truth vectors: the truth table turned on its side, so that each mark needs two marks and a
// lookup rather than a whole claim. For each person: their claim copied out, then one line per
// subformula, operands first, marking every case by writing its code in capitals where the
// subformula holds and in lower case where it does not (one token per case): "Liam is a knave: kkk
// kkn KNK KNN nkk nkn NNK NNN." (read off the code), "Both"/"Either"/"If then"/"Same"/"Not"
// (combine the same case on the operand lines), then "Fits" (first person) or "So far", marked
// "KKK yes KKN no ..." (yes/no only on these lines, so the last one is easy to find): the case
// was yes on the last such line and the claim's truth matches the speaker's role in it. The foot
// is truth_table_chain_of_thought's ("Only NNK fits, so ...").
// `claim` words the copied claim line ("Claim: " + claim with {name} and {content} filled in);
// match the quiz's "said" template so that the copy is exact token for token.
inline constexpr const char* kDefaultClaim = "{name} said that {content}.";
ChainOfThought truth_vectors_chain_of_thought(const std::vector<Statement>& statements,
                                              const std::vector<std::string>& names,
                                              const std::string& claim = kDefaultClaim);

// The teacher's styles by name (anything else throws std::invalid_argument).
inline constexpr const char* kCotStyles = "backtracking, truth_table or truth_vectors";
bool is_cot_style(const std::string& style);
// `claim` as for truth_vectors_chain_of_thought (the backtracking style ignores it).
ChainOfThought chain_of_thought(const std::string& style, const std::vector<Statement>& statements,
                                const std::vector<std::string>& names, const std::string& claim = kDefaultClaim);

// "(1) Zoey is a knight\n(2) ..." for an assignment.
std::string solution_text_format(const std::vector<std::string>& names, const std::vector<bool>& knights);

}  // namespace kk
