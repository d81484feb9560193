#include "kk_logic.h"

#include <algorithm>
#include <cctype>
#include <functional>
#include <stdexcept>

namespace kk {
namespace {

struct Parser {
  const std::string& s;
  size_t i = 0;
  [[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error("statements: " + what + " at offset " + std::to_string(i));
  }
  void ws() {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  }
  bool eat(char c) {
    ws();
    if (i < s.size() && s[i] == c) return ++i, true;
    return false;
  }
  std::string quoted() {
    ws();
    if (i >= s.size() || (s[i] != '\'' && s[i] != '"')) fail("expected a quoted operator");
    char q = s[i++];
    size_t start = i;
    while (i < s.size() && s[i] != q) ++i;
    if (i >= s.size()) fail("unterminated string");
    return s.substr(start, i++ - start);
  }
  int integer() {
    ws();
    size_t start = i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    if (start == i) fail("expected a person index");
    return std::stoi(s.substr(start, i - start));
  }
  Statement statement() {
    if (!eat('(')) fail("expected '('");
    Statement st;
    st.op = quoted();
    if (st.op == "telling-truth" || st.op == "lying") {
      if (!eat(',')) fail("expected ','");
      st.person = integer();
    } else if (st.op == "not" || st.op == "and" || st.op == "or" || st.op == "->" || st.op == "<=>") {
      while (eat(',')) {
        ws();
        if (i < s.size() && s[i] == ')') break;
        st.args.push_back(statement());
      }
      size_t want_min = st.op == "not" ? 1 : 2;
      if (st.args.size() < want_min || ((st.op == "not" || st.op == "->" || st.op == "<=>") && st.args.size() != want_min))
        fail("wrong number of operands for '" + st.op + "'");
    } else {
      fail("unknown operator '" + st.op + "'");
    }
    if (!eat(')')) fail("expected ')'");
    return st;
  }
};

std::string leaf(const Statement& s, const std::vector<std::string>& names, bool negated) {
  if (s.person < 0 || size_t(s.person) >= names.size()) throw std::runtime_error("statements: person index out of range");
  bool knight = (s.op == "telling-truth");
  return names[size_t(s.person)] + (negated ? " is not a " : " is a ") + (knight ? "knight" : "knave");
}

}  // namespace

std::vector<Statement> parse_statements(const std::string& text) {
  Parser p{text};
  if (!p.eat('(')) p.fail("expected '('");
  std::vector<Statement> out;
  while (true) {
    p.ws();
    if (p.i < text.size() && text[p.i] == ')') break;
    out.push_back(p.statement());
    if (!p.eat(',')) break;
  }
  if (!p.eat(')')) p.fail("expected ')'");
  return out;
}

bool evaluate(const Statement& s, const std::vector<bool>& k) {
  if (s.op == "telling-truth") return k.at(size_t(s.person));
  if (s.op == "lying") return !k.at(size_t(s.person));
  if (s.op == "not") return !evaluate(s.args[0], k);
  if (s.op == "and") {
    for (const auto& a : s.args)
      if (!evaluate(a, k)) return false;
    return true;
  }
  if (s.op == "or") {
    for (const auto& a : s.args)
      if (evaluate(a, k)) return true;
    return false;
  }
  if (s.op == "->") return !evaluate(s.args[0], k) || evaluate(s.args[1], k);
  if (s.op == "<=>") return evaluate(s.args[0], k) == evaluate(s.args[1], k);
  throw std::runtime_error("unknown operator " + s.op);
}

std::vector<std::vector<bool>> solve(const std::vector<Statement>& statements) {
  size_t n = statements.size();
  if (n > 20) throw std::runtime_error("too many people to solve by enumeration");
  std::vector<std::vector<bool>> out;
  for (uint32_t mask = 0; mask < (1u << n); ++mask) {
    std::vector<bool> k(n);
    for (size_t i = 0; i < n; ++i) k[i] = (mask >> (n - 1 - i)) & 1;  // person 0 is the high bit
    bool ok = true;
    for (size_t i = 0; i < n && ok; ++i) ok = evaluate(statements[i], k) == k[i];
    if (ok) out.push_back(k);
  }
  return out;
}

std::string render(const Statement& s, const std::vector<std::string>& names) {
  if (s.op == "telling-truth" || s.op == "lying") return leaf(s, names, false);
  if (s.op == "not") {
    const Statement& a = s.args[0];
    if (a.op == "telling-truth" || a.op == "lying") return leaf(a, names, true);
    return "it is not the case that " + render(a, names);
  }
  if (s.op == "and" || s.op == "or") {
    std::string out;
    for (size_t i = 0; i < s.args.size(); ++i) out += (i ? " " + s.op + " " : "") + render(s.args[i], names);
    return out;
  }
  if (s.op == "->") return "If " + render(s.args[0], names) + " then " + render(s.args[1], names);
  return render(s.args[0], names) + " if and only if " + render(s.args[1], names);
}

namespace {

void mentioned(const Statement& s, std::vector<int>& out) {
  if (s.op == "telling-truth" || s.op == "lying") out.push_back(s.person);
  for (const auto& a : s.args) mentioned(a, out);
}

// First assigned person (in index order) whose claim, negated when they are a knave, no completion
// of the unassigned people satisfies; -1 when the partial assignment is still consistent.
int falsified_by(const std::vector<Statement>& st, const std::vector<int>& assigned) {
  size_t n = st.size();
  std::vector<size_t> free;
  for (size_t i = 0; i < n; ++i)
    if (assigned[i] < 0) free.push_back(i);
  for (size_t p = 0; p < n; ++p) {
    if (assigned[p] < 0) continue;
    bool satisfiable = false;
    std::vector<bool> k(n);
    for (uint32_t m = 0; m < (1u << free.size()) && !satisfiable; ++m) {
      for (size_t i = 0; i < n; ++i) k[i] = assigned[i] == 1;
      for (size_t f = 0; f < free.size(); ++f) k[free[f]] = (m >> f) & 1;
      satisfiable = evaluate(st[p], k) == bool(assigned[p]);
    }
    if (!satisfiable) return int(p);
  }
  return -1;
}

std::string list_names(const std::vector<int>& people, const std::vector<std::string>& names) {
  if (people.size() == 1) return names[size_t(people[0])];
  if (people.size() == 2) return names[size_t(people[0])] + " and " + names[size_t(people[1])];
  std::string out;
  for (size_t i = 0; i < people.size(); ++i)
    out += (i ? ", " : "") + std::string(i + 1 == people.size() ? "and " : "") + names[size_t(people[i])];
  return out;
}

}  // namespace

std::string ChainOfThought::text() const {
  std::string out = head;
  for (const auto& s : steps) out += sep + s;
  return out + sep + foot;
}

ChainOfThought chain_of_thought(const std::vector<Statement>& st, const std::vector<std::string>& names) {
  size_t n = st.size();
  ChainOfThought cot;
  cot.head = "Let's think step by step, by considering whether each person is lying and if that leads to contradiction.";
  std::vector<int> assigned(n, -1);                    // -1 unassigned, 0 knave, 1 knight
  std::vector<std::vector<int>> options(n, {0, 1});    // popped from the back: knight first
  std::vector<int> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = int(i);
  auto role = [](int a) { return std::string(a ? "a knight" : "a knave"); };
  size_t cursor = 0;
  while (true) {
    if (cursor >= n) {
      cot.foot = "This leads to a feasible solution.";
      for (int a : assigned) cot.solution.push_back(a == 1);
      return cot;
    }
    if (options[size_t(order[cursor])].empty()) {
      std::vector<int> exhausted;
      long c = long(cursor);
      while (c >= 0 && options[size_t(order[size_t(c)])].empty()) {
        int p = order[size_t(c)];
        options[size_t(p)] = {0, 1};
        assigned[size_t(p)] = -1;
        exhausted.push_back(p);
        --c;
      }
      if (c < 0) {
        cot.foot = "All the configurations lead to contradictions.";
        return cot;
      }
      cursor = size_t(c);
      cot.steps.push_back("We have exhausted all possibilities for " + list_names(exhausted, names) +
                          ", so let us go back and reconsider " + names[size_t(order[cursor])] + ".");
    }
    int person = order[cursor];
    assigned[size_t(person)] = options[size_t(person)].back();
    options[size_t(person)].pop_back();
    int bad = falsified_by(st, assigned);
    const std::string& who = names[size_t(person)];
    if (bad < 0) {
      cot.steps.push_back("Assume " + who + " is " + role(assigned[size_t(person)]) + ". No contradiction is found in their " +
                          (assigned[size_t(person)] ? "" : "false ") + "claim that " + render(st[size_t(person)], names) + ".");
      std::vector<int> ment;
      mentioned(st[size_t(person)], ment);
      ++cursor;
      std::vector<int> rest(order.begin() + long(cursor), order.end());  // bring mentioned people forward
      for (auto it = ment.rbegin(); it != ment.rend(); ++it) {
        auto at = std::find(rest.begin(), rest.end(), *it);
        if (at == rest.end()) continue;
        rest.erase(at);
        rest.insert(rest.begin(), *it);
      }
      std::copy(rest.begin(), rest.end(), order.begin() + long(cursor));
    } else {
      cot.steps.push_back(who + " cannot be " + role(assigned[size_t(person)]) + ", because this would contradict the " +
                          (assigned[size_t(bad)] ? "" : "false ") + "claim of " +
                          (bad == person ? std::string("their own") : names[size_t(bad)]) + " that " +
                          render(st[size_t(bad)], names) + ".");
    }
  }
}

namespace {

std::string claim_line(const std::string& claim, const std::string& name, const std::string& content) {
  std::string out = claim;
  for (auto [key, value] : {std::pair<std::string, const std::string*>{"{name}", &name}, {"{content}", &content}}) {
    size_t at = out.find(key);
    if (at == std::string::npos) throw std::invalid_argument("claim template '" + claim + "' needs " + key);
    out.replace(at, key.size(), *value);
  }
  return "Claim: " + out;
}

bool leafy(const Statement& s) {
  auto leaf = [](const Statement& x) { return x.op == "telling-truth" || x.op == "lying"; };
  return leaf(s) || (s.op == "not" && leaf(s.args[0]));
}

// What the truth styles share: the 2^n cases (knight first, person 0 slowest) with their codes
// ("KNK"), the head that explains the codes, and the foot that reads the one case left.
struct Cases {
  std::vector<std::vector<bool>> knights;
  std::vector<std::string> codes;

  Cases(const std::vector<Statement>& st, const std::vector<std::string>& names, const char* style) {
    size_t n = st.size();
    if (n > 12) throw std::runtime_error(std::string("too many people for ") + style + " (at most 12)");
    if (names.size() != n) throw std::runtime_error("statements and names differ in length");
    for (size_t c = 0; c < (size_t(1) << n); ++c) {
      knights.emplace_back(n);
      codes.emplace_back();
      for (size_t i = 0; i < n; ++i) {
        knights[c][i] = !((c >> (n - 1 - i)) & 1);
        codes[c] += knights[c][i] ? 'K' : 'N';
      }
    }
  }
  size_t size() const { return codes.size(); }

  static std::string head(const std::vector<std::string>& names) {
    std::string out = "Cases list ";
    for (size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + names[i];
    return out + " as K (knight) or N (knave).";
  }
  // " KKK yes KKN no ..." for one mark per case.
  std::string marks(const std::vector<bool>& v) const {
    std::string out;
    for (size_t c = 0; c < size(); ++c) out += " " + codes[c] + (v[c] ? " yes" : " no");
    return out;
  }
  // " KKK kkn ...": each case's code, in capitals where the mark is yes (one token per case).
  std::string cased(const std::vector<bool>& v) const {
    std::string out;
    for (size_t c = 0; c < size(); ++c) {
      std::string code = codes[c];
      if (!v[c])
        for (char& ch : code) ch = char(std::tolower(static_cast<unsigned char>(ch)));
      out += " " + code;
    }
    return out;
  }
  // The foot and the solution from the cases that fit every claim.
  void finish(ChainOfThought& cot, const std::vector<bool>& alive, const std::vector<std::string>& names) const {
    std::vector<size_t> left;
    for (size_t c = 0; c < size(); ++c)
      if (alive[c]) left.push_back(c);
    if (left.size() != 1) {
      cot.foot = left.empty() ? "No case fits every claim." : "More than one case fits every claim.";
      return;
    }
    cot.solution = knights[left[0]];
    std::string so = "Only " + codes[left[0]] + " fits, so ";
    size_t n = names.size();
    for (size_t i = 0; i < n; ++i)
      so += (i ? ", " : "") + std::string(i + 1 == n && n > 1 ? "and " : "") + names[i] +
            (cot.solution[i] ? " is a knight" : " is a knave");
    cot.foot = so + ".";
  }
};

}  // namespace

ChainOfThought truth_table_chain_of_thought(const std::vector<Statement>& st, const std::vector<std::string>& names,
                                            const std::string& claim) {
  Cases cases(st, names, "a truth table");
  ChainOfThought cot;
  cot.sep = "\n";
  cot.head = Cases::head(names);
  std::vector<bool> alive(cases.size(), true);
  for (size_t p = 0; p < st.size(); ++p) {
    for (size_t c = 0; c < cases.size(); ++c)
      alive[c] = alive[c] && evaluate(st[p], cases.knights[c]) == cases.knights[c][p];
    cot.steps.push_back(claim_line(claim, names[p], render(st[p], names)) + "\n" + cases.marks(alive).substr(1) + ".");
  }
  cases.finish(cot, alive, names);
  return cot;
}

ChainOfThought truth_vectors_chain_of_thought(const std::vector<Statement>& st, const std::vector<std::string>& names,
                                              const std::string& claim) {
  Cases cases(st, names, "truth vectors");
  ChainOfThought cot;
  cot.sep = "\n";
  cot.head = Cases::head(names);
  auto vec = [&](const Statement& s) {
    std::vector<bool> v(cases.size());
    for (size_t c = 0; c < cases.size(); ++c) v[c] = evaluate(s, cases.knights[c]);
    return v;
  };
  // One line per subformula, operands first; a negated leaf is one line in the quiz's words.
  std::function<void(const Statement&, std::string&)> lines = [&](const Statement& s, std::string& step) {
    std::string label;
    if (leafy(s)) {
      label = render(s, names);
    } else {
      for (const auto& a : s.args) lines(a, step);
      label = s.op == "and" ? "Both" : s.op == "or" ? "Either" : s.op == "->" ? "If then" : s.op == "<=>" ? "Same" : "Not";
    }
    step += "\n" + label + ":" + cases.cased(vec(s)) + ".";
  };
  std::vector<bool> alive(cases.size(), true);
  for (size_t p = 0; p < st.size(); ++p) {
    std::string step = claim_line(claim, names[p], render(st[p], names));
    lines(st[p], step);
    std::vector<bool> truth = vec(st[p]);
    for (size_t c = 0; c < cases.size(); ++c) alive[c] = alive[c] && truth[c] == cases.knights[c][p];
    // yes/no only on these lines: the line above is found as the latest yes/no after the same code.
    cot.steps.push_back(step + "\n" + (p ? "So far" : "Fits") + ":" + cases.marks(alive) + ".");
  }
  cases.finish(cot, alive, names);
  return cot;
}

bool is_cot_style(const std::string& style) {
  return style == "backtracking" || style == "truth_table" || style == "truth_vectors";
}

ChainOfThought chain_of_thought(const std::string& style, const std::vector<Statement>& st, const std::vector<std::string>& names,
                                const std::string& claim) {
  if (style == "backtracking") return chain_of_thought(st, names);
  if (style == "truth_table") return truth_table_chain_of_thought(st, names, claim);
  if (style == "truth_vectors") return truth_vectors_chain_of_thought(st, names, claim);
  throw std::invalid_argument("unknown chain-of-thought style '" + style + "' (" + kCotStyles + ")");
}

std::string solution_text_format(const std::vector<std::string>& names, const std::vector<bool>& knights) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i)
    out += (i ? "\n" : "") + std::string("(") + std::to_string(i + 1) + ") " + names[i] + " is a " +
           (knights[i] ? "knight" : "knave");
  return out;
}

}  // namespace kk
