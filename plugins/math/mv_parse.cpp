// Recursive-descent LaTeX parser (see mv_parse.h). Precedence, lowest first: separators (, ;),
// relations, \cup, + - \pm, * / : and juxtaposition, unary signs, postfix ! and %, ^ and _,
// atoms. Follows latex2sympy2_extended's choices where they matter for verdicts: (a,b) is an
// interval unless it would be empty (then a tuple), 1,2 and 1;2 are sets, \frac of two integers
// is an exact rational, ^\circ is dropped, \approx keeps the exact side.
#include "mv_parse.h"

#include <cctype>
#include <cstring>
#include <set>

#include "mv_eval.h"
#include "mv_regex.h"

namespace mv {
namespace {

const std::set<std::string> kFuncs = {"sin",  "cos",   "tan",    "sec",    "csc",    "cot",  "arcsin", "arccos",
                                      "arctan", "sinh", "cosh", "tanh", "ln", "exp", "arcsec", "arccsc", "arccot"};
const std::set<std::string> kGreek = {
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta", "iota", "kappa",
    "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi", "chi", "psi", "omega", "Gamma",
    "Delta", "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega", "ell"};
const std::set<std::string> kSkip = {",", ";", ":", "!", " ", "quad", "qquad", "left", "right", "big", "Big",
                                     "bigl", "bigr", "Bigl", "Bigr", "displaystyle", "limits", "middle", "mathrm"};
const std::set<std::string> kNameOnly = {"mathbf", "vec", "overline", "overrightarrow", "hat", "bar", "boldsymbol",
                                         "mathbb", "mathcal", "widehat", "tilde", "underline", "mathit", "mathsf"};
const std::string kFuncLetters = "fghFGHPQW";

struct Tok {
  enum T { kEnd, kNum, kLetter, kCmd, kCh } t = kEnd;
  std::string s;
  size_t end = 0;
};

class Parser {
 public:
  Parser(const std::string& s, bool complex) : s_(s), complex_(complex) {}

  P top() {
    static const Regex comma_number(R"(^\s*-?\d{1,3}(,\d{3})+(\.\d+)?\s*$)");
    if (comma_number.search(s_)) {
      std::string t;
      for (char c : s_)
        if (c != ',' && !std::isspace(static_cast<unsigned char>(c))) t += c;
      return num(t, t.find('.') != std::string::npos);
    }
    auto groups = separated();
    if (peek().t != Tok::kEnd) fail("unexpected '" + peek().s + "'");
    return build_list(groups, true);
  }

 private:
  [[noreturn]] void fail(const std::string& why) const { throw ParseError(why + " at " + std::to_string(pos_)); }

  Tok lex(size_t at) const {
    while (true) {
      while (at < s_.size() && std::isspace(static_cast<unsigned char>(s_[at]))) ++at;
      Tok t;
      if (at >= s_.size()) { t.end = at; return t; }
      unsigned char c = s_[at];
      if (std::isdigit(c) || (c == '.' && at + 1 < s_.size() && std::isdigit(static_cast<unsigned char>(s_[at + 1])))) {
        size_t e = at;
        while (e < s_.size() && std::isdigit(static_cast<unsigned char>(s_[e]))) ++e;
        if (e + 1 < s_.size() && s_[e] == '.' && std::isdigit(static_cast<unsigned char>(s_[e + 1]))) {
          ++e;
          while (e < s_.size() && std::isdigit(static_cast<unsigned char>(s_[e]))) ++e;
        }
        return {Tok::kNum, s_.substr(at, e - at), e};
      }
      if (std::isalpha(c)) return {Tok::kLetter, std::string(1, char(c)), at + 1};
      if (c == '\\') {
        size_t e = at + 1;
        while (e < s_.size() && std::isalpha(static_cast<unsigned char>(s_[e]))) ++e;
        if (e == at + 1 && e < s_.size()) ++e;
        std::string name = s_.substr(at + 1, e - at - 1);
        for (const char* sp : {"qquad", "quad"})  // "\quadx" lexes as \quad x (ANTLR's longest token)
          if (name.size() > std::strlen(sp) && name.rfind(sp, 0) == 0) {
            e = at + 1 + std::strlen(sp);
            name = sp;
          }
        if (name == "(" || name == ")" || name == "[" || name == "]") return {Tok::kCh, name, e};  // visual brackets
        if (kSkip.count(name)) {
          at = e;
          if ((name == "left" || name == "right" || name == "middle") && at < s_.size() && s_[at] == '.') ++at;
          continue;
        }
        return {Tok::kCmd, name, e};
      }
      static const std::pair<const char*, Tok> kUni[] = {
          {"π", {Tok::kCmd, "pi", 0}}, {"∞", {Tok::kCmd, "infty", 0}}, {"≤", {Tok::kCmd, "le", 0}},
          {"≥", {Tok::kCmd, "ge", 0}}, {"≠", {Tok::kCmd, "neq", 0}},  {"×", {Tok::kCh, "*", 0}},
          {"÷", {Tok::kCh, "/", 0}},   {"·", {Tok::kCh, "*", 0}},      {"−", {Tok::kCh, "-", 0}},
          {"°", {Tok::kCmd, "circ", 0}}, {"√", {Tok::kCmd, "sqrt", 0}}};
      for (const auto& [u, tok] : kUni) {
        size_t n = std::char_traits<char>::length(u);
        if (s_.compare(at, n, u) == 0) return {tok.t, tok.s, at + n};
      }
      size_t n = 1;
      while (at + n < s_.size() && (static_cast<unsigned char>(s_[at + n]) & 0xC0) == 0x80) ++n;
      return {Tok::kCh, s_.substr(at, n), at + n};
    }
  }
  Tok peek() const { return lex(pos_); }
  Tok next() {
    Tok t = lex(pos_);
    pos_ = t.end;
    return t;
  }
  bool is(const Tok& t, Tok::T ty, const char* s) const { return t.t == ty && t.s == s; }
  bool ch(const char* s) const { return is(peek(), Tok::kCh, s); }
  bool cmd(const char* s) const { return is(peek(), Tok::kCmd, s); }
  void expect_ch(const char* s) {
    if (!ch(s)) fail(std::string("expected '") + s + "'");
    next();
  }

  // items separated by , and ; -> groups (split at ;) of items (split at ,)
  std::vector<std::vector<P>> separated() {
    std::vector<std::vector<P>> groups(1);
    while (true) {
      deadline().check();
      groups.back().push_back(relation());
      if (ch(",")) next();
      else if (ch(";")) { next(); groups.emplace_back(); }
      else break;
    }
    return groups;
  }

  static void flatten_into(std::vector<P>& out, const P& p) {
    if (p->k == K::kSet) out.insert(out.end(), p->kids.begin(), p->kids.end());
    else out.push_back(p);
  }
  static P make_set(std::vector<P> items) {
    std::vector<P> kids;
    std::set<std::string> seen;
    for (const auto& it : items)
      if (seen.insert(to_string(it)).second) kids.push_back(it);
    return make(K::kSet, std::move(kids));
  }
  // top level and braces: 1 item -> itself; several -> a set (groups of ; with commas -> tuples)
  P build_list(const std::vector<std::vector<P>>& groups, bool allow_single) {
    size_t total = 0;
    bool nested = groups.size() > 1;
    for (const auto& g : groups) total += g.size();
    if (total == 1 && allow_single) return groups[0][0];
    std::vector<P> items;
    for (const auto& g : groups) {
      if (nested && g.size() > 1) items.push_back(make(K::kTuple, g));
      else
        for (const auto& x : g) flatten_into(items, x);
    }
    return make_set(std::move(items));
  }

  P relation() {
    P cur = union_();
    while (true) {
      Tok t = peek();
      std::string op;
      if (t.t == Tok::kCh && (t.s == "=" || t.s == "<" || t.s == ">")) {
        next();
        op = t.s;
        if (ch("=")) { next(); op += "="; }
        else if (op == "<" && ch(">")) { next(); op = "!="; }
      } else if (t.t == Tok::kCh && t.s == "!" && s_.compare(t.end, 1, "=") == 0) {
        next(); next();
        op = "!=";
      } else if (t.t == Tok::kCmd) {
        static const std::map<std::string, std::string> kOps = {
            {"le", "<="}, {"leq", "<="}, {"leqslant", "<="}, {"ge", ">="}, {"geq", ">="}, {"geqslant", ">="},
            {"lt", "<"}, {"gt", ">"}, {"neq", "!="}, {"ne", "!="}, {"approx", "~"}, {"in", "in"},
            {"equiv", "="}, {"sim", "~"}};
        auto it = kOps.find(t.s);
        if (it == kOps.end()) break;
        next();
        op = it->second;
      } else {
        break;
      }
      P rhs = union_();
      if (op == "~") {  // latex2sympy: symbols ~ value -> value; otherwise keep the exact side
        if (!is_relation(cur) && only_symbols(cur)) cur = rhs;
        continue;
      }
      if (op == "in") op = "=";
      if (cur->k == K::kRel) cur = make(K::kAnd, {cur, make(K::kRel, {cur->kids[1], rhs}, op)});
      else if (cur->k == K::kAnd) {
        auto kids = cur->kids;
        kids.push_back(make(K::kRel, {kids.back()->kids[1], rhs}, op));
        cur = make(K::kAnd, kids);
      } else {
        cur = make(K::kRel, {cur, rhs}, op);
      }
    }
    return cur;
  }

  P union_() {
    P a = additive();
    if (!cmd("cup")) return a;
    std::vector<P> parts{a};
    while (cmd("cup")) {
      next();
      parts.push_back(additive());
    }
    return make(K::kUnion, parts);
  }

  P additive() {
    P a = term();
    while (true) {
      if (ch("+")) { next(); a = add(a, term()); }
      else if (ch("-")) { next(); a = sub(a, term()); }
      else if (cmd("pm") || cmd("mp")) {
        bool pm = next().s == "pm";
        P b = term();
        a = pm ? make_set({sub(a, b), add(a, b)}) : make_set({add(a, b), sub(a, b)});
      } else break;
    }
    return a;
  }

  bool starts_atom(const Tok& t) const {
    if (t.t == Tok::kNum || t.t == Tok::kLetter) return true;
    if (t.t == Tok::kCh) return t.s == "(" || (t.s == "|" && abs_depth_ == 0) || t.s == "{";
    if (t.t == Tok::kCmd) {
      static const std::set<std::string> kNot = {"cdot", "times", "div", "le", "leq", "ge", "geq", "lt", "gt", "neq",
                                                 "ne", "approx", "in", "cup", "pm", "mp", "}", "%", "end", "\\",
                                                 "rfloor", "rceil", "equiv", "sim", "leqslant", "geqslant", "circ", "cap"};
      return !kNot.count(t.s);
    }
    return false;
  }

  P term() {
    P a = unary();
    while (true) {
      deadline().check();
      Tok t = peek();
      if ((t.t == Tok::kCh && t.s == "*") || (t.t == Tok::kCmd && (t.s == "cdot" || t.s == "times"))) {
        next();
        a = mul(a, unary());
      } else if ((t.t == Tok::kCh && (t.s == "/" || t.s == ":")) || (t.t == Tok::kCmd && t.s == "div")) {
        next();
        a = mul(a, inv(unary()));
      } else if (starts_atom(t)) {
        P b = postfix();
        if (is_int_literal(a) && a->name[0] != '-' && b->k == K::kNum && b->name.find('/') != std::string::npos &&
            a->name.size() < 12) {  // a mixed number: 15\frac{39}{40}
          size_t slash = b->name.find('/');
          long long q = std::stoll(b->name.substr(slash + 1)), p = std::stoll(a->name) * q + std::stoll(b->name.substr(0, slash));
          a = num(std::to_string(p) + "/" + std::to_string(q));
        } else {
          a = mul(a, b);
        }
      } else {
        break;
      }
    }
    return a;
  }

  P unary() {
    if (ch("-")) { next(); return neg(unary()); }
    if (ch("+")) { next(); return unary(); }
    if (cmd("pm") || cmd("mp")) {
      next();
      P x = unary();
      return make_set({neg(x), x});
    }
    return postfix();
  }

  P postfix() {
    P a = power();
    while (true) {
      Tok t = peek();
      if (t.t == Tok::kCh && t.s == "!" && s_.compare(t.end, 1, "=") != 0) { next(); a = make(K::kFunc, {a}, "fact"); }
      else if ((t.t == Tok::kCmd && t.s == "%") || (t.t == Tok::kCh && t.s == "%")) { next(); a = make(K::kPct, {a}); }
      else break;
    }
    return a;
  }

  P power() {
    P a = atom();
    while (ch("^")) {
      next();
      P e = exp_arg();
      if (e) a = mv::power(a, e);
    }
    return a;
  }

  // the argument of ^ or of \frac-like commands without braces: one character or one command
  P single_arg(bool exponent) {
    size_t at = pos_;
    while (at < s_.size() && std::isspace(static_cast<unsigned char>(s_[at]))) ++at;
    if (at < s_.size() && std::isdigit(static_cast<unsigned char>(s_[at]))) {
      pos_ = at + 1;
      return num(std::string(1, s_[at]));
    }
    if (ch("{")) {
      next();
      if (exponent && (cmd("circ") || ch("\\"))) {
        while (!ch("}") && peek().t != Tok::kEnd) next();
        expect_ch("}");
        return nullptr;
      }
      auto g = separated();
      expect_ch("}");
      return build_list(g, true);
    }
    if (exponent && cmd("circ")) { next(); return nullptr; }
    if (exponent && ch("-")) { next(); return neg(single_arg(true)); }
    if (peek().t == Tok::kLetter) return letter(next().s, false);
    if (peek().t == Tok::kCmd) return atom();
    fail("missing argument");
  }
  P exp_arg() { return single_arg(true); }

  std::string raw_group() {
    if (!ch("{")) {
      Tok t = next();
      return t.s;
    }
    size_t at = peek().end;  // after '{'
    int depth = 1;
    size_t i = at;
    for (; i < s_.size(); ++i) {
      if (s_[i] == '{') ++depth;
      else if (s_[i] == '}' && --depth == 0) break;
    }
    if (i >= s_.size()) fail("unclosed {");
    pos_ = i + 1;
    return s_.substr(at, i - at);
  }
  static std::string trim(const std::string& s) {
    size_t b = s.find_first_not_of(" \t\n"), e = s.find_last_not_of(" \t\n");
    return b == std::string::npos ? "" : s.substr(b, e - b + 1);
  }

  std::string subscript() {
    next();  // '_'
    std::string sub = trim(raw_group());
    return sub;
  }

  P letter(const std::string& l, bool allow_call) {
    std::string name = l;
    if (ch("_")) name += "_" + subscript();
    while (ch("'")) { next(); name += "'"; }
    if (allow_call && name.size() == 1 && kFuncLetters.find(l) != std::string::npos && pos_ < s_.size() && s_[pos_] == '(') {
      next();
      auto g = separated();
      expect_ch(")");
      std::vector<P> args;
      for (auto& grp : g) args.insert(args.end(), grp.begin(), grp.end());
      return make(K::kUFunc, args, name);
    }
    if (name == "e") return make(K::kConst, {}, "e");
    if (name == "i" && complex_) return make(K::kConst, {}, "i");
    return sym(name);
  }

  P bracketed(const std::string& open) {
    auto groups = separated();
    Tok close = peek();
    if (!(close.t == Tok::kCh && (close.s == ")" || close.s == "]"))) fail("expected ) or ]");
    next();
    size_t total = 0;
    for (auto& g : groups) total += g.size();
    if (total == 1) return groups[0][0];
    std::vector<P> items;
    for (auto& g : groups) items.insert(items.end(), g.begin(), g.end());
    if (items.size() == 2 && groups.size() == 1) {
      bool lo = open == "(", ro = close.s == ")";
      auto l = try_real(items[0]), r = try_real(items[1]);
      bool empty = l && r && ((lo && ro && *r <= *l) || (!lo && !ro && *r < *l));
      if (!empty) {
        auto n = std::make_shared<Node>();
        n->k = K::kInterval;
        n->kids = items;
        n->lopen = lo;
        n->ropen = ro;
        return n;
      }
    }
    return make(K::kTuple, items);
  }

  P matrix(const std::string& env) {
    if (env == "array") raw_group();  // column spec
    std::vector<std::vector<P>> rows(1);
    while (true) {
      deadline().check();
      if (cmd("end")) {
        next();
        raw_group();
        break;
      }
      if (peek().t == Tok::kEnd) fail("unclosed matrix");
      rows.back().push_back(additive());
      if (ch("&")) next();
      else if (cmd("\\")) { next(); rows.emplace_back(); }
    }
    while (!rows.empty() && rows.back().empty()) rows.pop_back();
    if (rows.empty()) fail("empty matrix");
    auto n = std::make_shared<Node>();
    n->k = K::kMatrix;
    n->rows = rows.size();
    n->cols = rows[0].size();
    for (auto& r : rows) {
      if (r.size() != n->cols) fail("ragged matrix");
      n->kids.insert(n->kids.end(), r.begin(), r.end());
    }
    return n;
  }

  P function(const std::string& name) {
    P e;
    if (ch("^")) { next(); e = exp_arg(); }
    P arg;
    if (ch("(")) { next(); arg = relation(); expect_ch(")"); }
    else arg = power();
    P f = make(K::kFunc, {arg}, name == "ln" ? "log" : name);
    if (e) f = mv::power(f, e);
    return f;
  }

  P atom() {
    deadline().check();
    struct Depth {  // nesting limit: deep input must fail, not overflow the stack
      int& d;
      explicit Depth(int& x) : d(x) {
        if (++d > 200) throw ParseError("nested too deeply");
      }
      ~Depth() { --d; }
    } depth(depth_);
    Tok t = next();
    switch (t.t) {
      case Tok::kEnd: fail("unexpected end");
      case Tok::kNum: {
        P n = num(t.s[0] == '.' ? "0" + t.s : t.s, t.s.find('.') != std::string::npos);
        if (ch("_")) subscript();  // a base: 204_5 reads as 204, as in latex2sympy
        return n;
      }
      case Tok::kLetter: return letter(t.s, true);
      case Tok::kCh: {
        if (t.s == "(" || t.s == "[") return bracketed(t.s);
        if (t.s == "{") {
          auto g = separated();
          expect_ch("}");
          return build_list(g, true);
        }
        if (t.s == "|") {
          ++abs_depth_;
          P x = additive();
          --abs_depth_;
          expect_ch("|");
          return make(K::kFunc, {x}, "abs");
        }
        fail("unexpected '" + t.s + "'");
      }
      case Tok::kCmd: break;
    }
    const std::string& c = t.s;
    if (c == "frac" || c == "dfrac" || c == "tfrac" || c == "cfrac") {
      P a = single_arg(false), b = single_arg(false);
      if (is_int_literal(a) && is_int_literal(b) && a->name.size() < 16 && b->name.size() < 16) {
        long long p = std::stoll(a->name), q = std::stoll(b->name);
        if (q != 0 && p % q == 0) return num(std::to_string(p / q));
        if (q != 0) return num(a->name + "/" + b->name);
      }
      return mul(a, inv(b));
    }
    if (c == "sqrt") {
      P n;
      if (ch("[")) {
        next();
        n = additive();
        expect_ch("]");
      }
      P x = single_arg(false);
      return n ? mv::power(x, inv(n)) : make(K::kFunc, {x}, "sqrt");
    }
    if (c == "binom" || c == "dbinom" || c == "tbinom") {
      P a = single_arg(false), b = single_arg(false);
      return make(K::kFunc, {a, b}, "binom");
    }
    if (c == "text" || c == "mbox" || c == "textbf" || c == "textit" || c == "textrm" || c == "operatorname") {
      std::string x = trim(raw_group());
      if (x.size() > 2 && x.front() == '(' && x.back() == ')') x = trim(x.substr(1, x.size() - 2));
      if (c == "operatorname") return function(x);
      if (x.empty()) fail("empty text");
      return sym(x);
    }
    if (kNameOnly.count(c)) {
      std::string x = trim(raw_group());
      if (ch("_")) x += "_" + subscript();
      return sym(x);
    }
    if (c == "pi") return make(K::kConst, {}, "pi");
    if (c == "infty" || c == "infinity") return make(K::kConst, {}, "inf");
    if (c == "i" || c == "imath") return make(K::kConst, {}, "i");
    if (c == "%") fail("stray %");
    if (kGreek.count(c)) {
      std::string name = c;
      if (ch("_")) name += "_" + subscript();
      return sym(name);
    }
    if (kFuncs.count(c)) return function(c);
    if (c == "log") {
      P base;
      if (ch("_")) { next(); base = single_arg(false); }
      P f = function("log");
      return base ? mul(f, inv(make(K::kFunc, {base}, "log"))) : f;
    }
    if (c == "lfloor" || c == "lceil") {
      P x = additive();
      if (!cmd(c == "lfloor" ? "rfloor" : "rceil")) fail("unclosed " + c);
      next();
      return make(K::kFunc, {x}, c == "lfloor" ? "floor" : "ceil");
    }
    if (c == "{") {
      auto g = separated();
      if (!cmd("}")) fail("unclosed \\{");
      next();
      return build_list(g, false);
    }
    if (c == "|") {
      P x = additive();
      if (!cmd("|")) fail("unclosed \\|");
      next();
      return make(K::kFunc, {x}, "abs");
    }
    if (c == "begin") {
      std::string env = raw_group();
      static const std::set<std::string> kEnvs = {"pmatrix", "bmatrix", "matrix", "vmatrix", "Bmatrix", "smallmatrix", "array"};
      if (!kEnvs.count(env)) fail("unsupported environment " + env);
      return matrix(env);
    }
    fail("unknown command \\" + c);
  }

  const std::string& s_;
  bool complex_;
  size_t pos_ = 0;
  int abs_depth_ = 0;
  int depth_ = 0;
};

bool treat_as_complex(const std::string& s) {
  static const Regex re(
      R"(\\mathbb\{C\}|\\i\b|\bi\b|\\text\{i\}|\\mathrm\{i\}|\\imath\b|\\det|\\operatorname\{tr\}|\\operatorname\{rank\}|)"
      R"(\\text\{rank\}|\\arg\{|\\Re\{|\\Im\{|\\operatorname\{Re\}|\\operatorname\{Im\}|\\text\{Re\}|\\text\{Im\})");
  return re.search(s);
}

// Math-Verify's get_last_eq: "a = b = c" -> "c" (not when commas or semicolons are present).
std::string last_eq(const std::string& s) {
  if (s.find(',') != std::string::npos || s.find(';') != std::string::npos) return s;
  static const Regex eq(R"((?<!\\|\<|\!|\>)=)");
  auto ms = eq.find_all(s);
  if (ms.size() < 2) return s;
  return s.substr(ms.back().end());
}

}  // namespace

P parse_latex(const std::string& latex, bool complex) { return Parser(latex, complex).top(); }

P parse_latex_with_fallback(const std::string& latex) {
  try {
    return parse_latex(latex, treat_as_complex(latex));
  } catch (const ParseError&) {
    std::string last = last_eq(latex);
    if (last == latex) throw;
    return parse_latex(last, treat_as_complex(last));
  }
}

P parse_plain_expr(const std::string& expr) {
  static const Regex trailing_point(R"((\d)\.(?!\d))");  // Python reads "3." as 3.0
  std::string s;
  for (size_t i = 0; i < expr.size(); ++i) {
    if (expr[i] == '\n') s += ' ';
    else if (expr.compare(i, 2, "**") == 0) { s += '^'; ++i; }
    else s += expr[i];
  }
  return parse_latex(trailing_point.sub(s, "\\1.0"), false);
}

}  // namespace mv
