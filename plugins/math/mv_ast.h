// The verifier's expression tree: what the LaTeX parser builds and the comparer reads. Plays the
// role of Math-Verify's unevaluated SymPy objects (numbers keep whether they were written as
// integers or decimals; products keep their written order). No simplification happens here;
// values come from mv_eval (numeric, complex, at random points for free symbols).
#pragma once

#include <chrono>
#include <complex>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace mv {

enum class K {
  kNum,       // number literal: text (digits), is_float
  kSym,       // symbol: name ("x", "a_{37}", "odd")
  kConst,     // name: "pi" | "e" | "i" | "inf"
  kAdd,       // kids summed
  kMul,       // kids multiplied, in written order
  kPow,       // kids[0] ^ kids[1]
  kFunc,      // builtin function `name` (sin, sqrt, log, abs, fact, binom, ...) of kids
  kUFunc,     // undefined function f(x): name, kids = arguments
  kPct,       // kids[0] * (1/100), kept apart like Math-Verify's UnevaluatedExpr
  kTuple,     // ordered kids
  kSet,       // finite set (kids in written order)
  kInterval,  // kids[0], kids[1]; lopen, ropen
  kUnion,     // union of sets (kids)
  kMatrix,    // rows x cols, row-major kids
  kRel,       // name: "=", "<", ">", "<=", ">=", "!="; kids = lhs, rhs
  kAnd,       // chain of relations
};

struct Node;
using P = std::shared_ptr<const Node>;

struct Node {
  K k;
  std::string name;         // kSym, kConst, kFunc, kUFunc, kRel; kNum: the digits
  bool is_float = false;    // kNum written with a decimal point
  bool lopen = false, ropen = false;
  size_t rows = 0, cols = 0;
  std::vector<P> kids;
};

inline P make(K k, std::vector<P> kids = {}, std::string name = "") {
  auto n = std::make_shared<Node>();
  n->k = k;
  n->kids = std::move(kids);
  n->name = std::move(name);
  return n;
}
inline P num(const std::string& text, bool is_float = false) {
  auto n = std::make_shared<Node>();
  n->k = K::kNum;
  n->name = text;
  n->is_float = is_float;
  return n;
}
inline P sym(const std::string& s) { return make(K::kSym, {}, s); }
inline bool is_set_like(const P& p) {
  return p->k == K::kSet || p->k == K::kInterval || p->k == K::kUnion;
}
inline bool is_relation(const P& p) {
  if (p->k == K::kRel) return true;
  if (p->k != K::kAnd || p->kids.empty()) return false;
  for (const auto& k : p->kids)
    if (k->k != K::kRel) return false;
  return true;
}

// Structural text of a tree (a canonical key: used for set de-duplication and symbol names).
std::string to_string(const P& p);

// ---- deadline: every loop that can run long checks it and throws Timeout.
struct Timeout : std::runtime_error {
  Timeout() : std::runtime_error("time budget exceeded") {}
};
struct Deadline {
  std::chrono::steady_clock::time_point at = std::chrono::steady_clock::time_point::max();
  void check() const {
    if (std::chrono::steady_clock::now() > at) throw Timeout();
  }
};
// The deadline of the verify/parse call running on this thread.
Deadline& deadline();

}  // namespace mv

namespace mv {
// Builders that keep the tree flat (a + b + c is one kAdd) and literal signs on numbers.
inline P add(const P& a, const P& b) {
  std::vector<P> k;
  for (const P& x : {a, b}) {
    if (x->k == K::kAdd) k.insert(k.end(), x->kids.begin(), x->kids.end());
    else k.push_back(x);
  }
  return make(K::kAdd, std::move(k));
}
inline P mul(const P& a, const P& b) {
  std::vector<P> k;
  for (const P& x : {a, b}) {
    if (x->k == K::kMul) k.insert(k.end(), x->kids.begin(), x->kids.end());
    else k.push_back(x);
  }
  return make(K::kMul, std::move(k));
}
inline P neg(const P& a) {
  if (a->k == K::kNum) return num(a->name[0] == '-' ? a->name.substr(1) : "-" + a->name, a->is_float);
  return mul(num("-1"), a);
}
inline P sub(const P& a, const P& b) { return add(a, neg(b)); }
inline P power(const P& a, const P& b) { return make(K::kPow, {a, b}); }
inline P inv(const P& a) { return power(a, num("-1")); }
}  // namespace mv
