#include "kk_logic.h"

#include <cctype>
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
  if (s.op == "->") return "if " + render(s.args[0], names) + " then " + render(s.args[1], names);
  return render(s.args[0], names) + " if and only if " + render(s.args[1], names);
}

std::string solution_text_format(const std::vector<std::string>& names, const std::vector<bool>& knights) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i)
    out += (i ? "\n" : "") + std::string("(") + std::to_string(i + 1) + ") " + names[i] + " is a " +
           (knights[i] ? "knight" : "knave");
  return out;
}

}  // namespace kk
