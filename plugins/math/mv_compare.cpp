// Port of Math-Verify 0.9's grader (sympy_expr_eq and helpers, Apache-2.0/MIT) onto our trees.
// Where Math-Verify asks SymPy to simplify or solve, we evaluate at random points: a - b must
// vanish (expressions), or (lhs - rhs) of two relations must be proportional (equations and
// inequalities, the sign of the factor deciding the direction).
#include "mv_compare.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "mv_eval.h"

namespace mv {
namespace {

constexpr int kPoints = 4;

bool is_set(const P& p) { return is_set_like(p); }
bool is_setish(const P& p) { return is_set_like(p) || p->k == K::kTuple; }
bool is_equation(const P& p) {
  if (p->k == K::kRel) return p->name == "=";
  if (p->k != K::kAnd || p->kids.empty()) return false;
  for (const auto& k : p->kids)
    if (k->k != K::kRel || k->name != "=") return false;
  return true;
}
bool is_assignment(const P& p) {
  if (p->k == K::kRel) return p->name == "=" && only_symbols(p->kids[0]);
  return is_equation(p) && only_symbols(p->kids[0]->kids[0]);
}
P first_rel(const P& p) { return p->k == K::kAnd ? p->kids.front() : p; }
P last_rel(const P& p) { return p->k == K::kAnd ? last_rel(p->kids.back()) : p; }

bool values_close(C a, C b, double rel) {
  if (std::isinf(a.real()) || std::isinf(b.real())) return a.real() == b.real() && a.imag() == b.imag();
  return std::abs(a - b) <= rel * std::max({1.0, std::abs(a), std::abs(b)});
}
bool is_zoo(C v) { return std::isnan(v.real()) || std::isnan(v.imag()); }

// a - b vanishes at random points (also the numeric check when there are no symbols).
bool vanishes(const P& a, const P& b, const CompareOptions& o, double rel) {
  int ok = 0;
  for (int i = 0; i < kPoints; ++i) {
    Env env;
    env.seed = 1000 + i;
    C va, vb;
    try {
      va = eval(a, env);
      vb = eval(b, env);
    } catch (const EvalError&) {
      return false;
    }
    (void)o;
    if (is_zoo(va) || is_zoo(vb)) continue;
    if (!values_close(va, vb, rel)) return false;
    ++ok;
  }
  return ok > 0;
}

bool has_symbols(const P& p) {
  std::set<std::string> s;
  free_symbols(p, s);
  return !s.empty();
}

const P& pct_inner(const P& p) { return p->k == K::kPct ? p->kids[0] : p; }
bool atomic_num(const P& p) { return pct_inner(p)->k == K::kNum; }

bool round_eq(double a, double b, int digits) {
  double s = std::pow(10.0, digits);
  double ra = std::nearbyint(a * s), rb = std::nearbyint(b * s);
  return ra == rb || std::abs(ra - rb) <= 1e-9 * std::max(std::abs(ra), std::abs(rb));
}

std::string strip_int(std::string s) {
  bool negative = !s.empty() && s[0] == '-';
  if (negative) s = s.substr(1);
  size_t z = s.find_first_not_of('0');
  s = z == std::string::npos ? "0" : s.substr(z);
  return (negative && s != "0" ? "-" : "") + s;
}

// sympy_numeric_eq
bool numeric_eq(const P& a, const P& b, const CompareOptions& o) {
  if (a->k == K::kMatrix && b->k == K::kMatrix) {
    if (a->rows != b->rows || a->cols != b->cols) return false;
    for (size_t i = 0; i < a->kids.size(); ++i)
      if (!numeric_eq(a->kids[i], b->kids[i], o)) return false;
    return true;
  }
  if (atomic_num(a) || atomic_num(b)) {
    if (is_float_literal(pct_inner(a)) || is_float_literal(pct_inner(b))) {
      auto va = try_real(a), vb = try_real(b);
      return va && vb && round_eq(*va, *vb, o.float_rounding);
    }
    if (is_int_literal(pct_inner(a)) && is_int_literal(pct_inner(b)))
      return strip_int(pct_inner(a)->name) == strip_int(pct_inner(b)->name);
    if (has_symbols(a) || has_symbols(b)) return false;
    return vanishes(a, b, o, 1e-12);
  }
  if (has_symbols(a) || has_symbols(b)) return false;
  return vanishes(a, b, o, 1e-12);
}

bool symbolic_eq(const P& a, const P& b, const CompareOptions& o) {
  if (a->k == K::kMatrix || b->k == K::kMatrix) {  // simplify(a - b).is_zero_matrix
    if (a->k != b->k || a->rows != b->rows || a->cols != b->cols) return false;
    for (size_t i = 0; i < a->kids.size(); ++i)
      if (!vanishes(a->kids[i], b->kids[i], o, 1e-9)) return false;
    return true;
  }
  return vanishes(a, b, o, 1e-9);
}

// lhs - rhs of two relations are proportional: returns the factor's sign (0: not proportional).
int proportional(const P& g, const P& p) {
  P dg = sub(g->kids[0], g->kids[1]), dp = sub(p->kids[0], p->kids[1]);
  if (!has_symbols(dg) || !has_symbols(dp)) return 0;
  std::optional<C> ratio;
  for (int i = 0; i < kPoints; ++i) {
    Env env;
    env.seed = 2000 + i;
    C a, b;
    try {
      a = eval(dg, env);
      b = eval(dp, env);
    } catch (const EvalError&) {
      return 0;
    }
    if (std::abs(b) < 1e-12 || is_zoo(a) || is_zoo(b)) return 0;
    C r = a / b;
    if (!ratio) ratio = r;
    else if (!values_close(*ratio, r, 1e-9)) return 0;
  }
  if (!ratio || std::abs(ratio->imag()) > 1e-9 * std::abs(*ratio) || std::abs(*ratio) < 1e-12) return 0;
  return ratio->real() > 0 ? 1 : -1;
}

std::string flip(const std::string& op) {
  if (op == "<") return ">";
  if (op == ">") return "<";
  if (op == "<=") return ">=";
  if (op == ">=") return "<=";
  return op;
}

bool compare_relational(const P& g, const P& p, const CompareOptions& o) {
  if (g->k == K::kAnd && p->k == K::kAnd) {
    if (g->kids.size() != p->kids.size()) return false;
    for (size_t i = 0; i < g->kids.size(); ++i)
      if (!compare_relational(g->kids[i], p->kids[i], o)) return false;
    return true;
  }
  if (g->k != K::kRel || p->k != K::kRel) return false;
  if (g->name == p->name && expr_eq(sub(g->kids[0], g->kids[1]), sub(p->kids[0], p->kids[1]), o)) return true;
  if (flip(g->name) == p->name && expr_eq(sub(g->kids[0], g->kids[1]), sub(p->kids[1], p->kids[0]), o)) return true;
  int s = proportional(g, p);
  if (s == 0) return false;
  if (g->name == "=" || g->name == "!=") return g->name == p->name;
  return s > 0 ? g->name == p->name : flip(g->name) == p->name;
}

P interval(P a, P b, bool lo, bool ro) {
  auto n = std::make_shared<Node>();
  n->k = K::kInterval;
  n->kids = {std::move(a), std::move(b)};
  n->lopen = lo;
  n->ropen = ro;
  return n;
}

// Relation.as_set() for one variable: x op c, c op x, chains a op x op b, and |x| in a chain.
P as_set(const P& r) {
  P inf = make(K::kConst, {}, "inf"), ninf = neg(inf);
  auto bound = [&](const P& rel, const P& var, P& lo, P& hi, bool& lopen, bool& ropen) {
    bool var_left = to_string(rel->kids[0]) == to_string(var);
    P other = var_left ? rel->kids[1] : rel->kids[0];
    std::string op = var_left ? rel->name : flip(rel->name);
    if (op == "<" || op == "<=") { hi = other; ropen = op == "<"; }
    else if (op == ">" || op == ">=") { lo = other; lopen = op == ">"; }
    else return false;
    return true;
  };
  P var;
  std::vector<P> rels = r->k == K::kAnd ? r->kids : std::vector<P>{r};
  if (rels.size() > 2) return nullptr;
  if (rels.size() == 1) var = has_symbols(rels[0]->kids[0]) ? rels[0]->kids[0] : rels[0]->kids[1];
  else var = rels[0]->kids[1];
  P lo = ninf, hi = inf;
  bool lopen = true, ropen = true;
  for (const auto& x : rels)
    if (!bound(x, var, lo, hi, lopen, ropen)) return nullptr;
  if (var->k == K::kFunc && var->name == "abs" && lo != ninf && hi != inf)
    return make(K::kUnion, {interval(neg(hi), neg(lo), ropen, lopen), interval(lo, hi, lopen, ropen)});
  return interval(lo, hi, lopen, ropen);
}

bool compare_interval(const P& a, const P& b, const CompareOptions& o) {
  return a->lopen == b->lopen && a->ropen == b->ropen && expr_eq(a->kids[0], b->kids[0], o) &&
         expr_eq(a->kids[1], b->kids[1], o);
}

double sort_value(const P& p) {
  const P& x = (p->k == K::kRel) ? p->kids[1] : p;
  if (x->k == K::kInterval || x->k == K::kTuple) return x->kids.empty() ? 0 : sort_value(x->kids[0]);
  auto v = try_real(x);
  return v ? *v : std::numeric_limits<double>::infinity();
}

bool ordered_eq(const std::vector<P>& a, const std::vector<P>& b, const CompareOptions& o) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!expr_eq(a[i], b[i], o)) return false;
  return true;
}

// Order-independent element matching (what SymPy's canonical set order achieves).
bool matched_eq(const std::vector<P>& a, const std::vector<P>& b, const CompareOptions& o) {
  if (a.size() != b.size()) return false;
  std::vector<bool> used(b.size(), false);
  for (const auto& x : a) {
    bool found = false;
    for (size_t j = 0; j < b.size() && !found; ++j)
      if (!used[j] && expr_eq(x, b[j], o)) used[j] = found = true;
    if (!found) return false;
  }
  return true;
}

std::vector<P> union_parts(const P& p) {
  std::vector<P> out = p->k == K::kUnion ? p->kids : std::vector<P>{p};
  std::stable_sort(out.begin(), out.end(), [](const P& x, const P& y) { return sort_value(x) < sort_value(y); });
  return out;
}

bool compare_sets(const P& g, const P& p, const CompareOptions& o) {
  P a = is_setish(g) ? g : make(K::kSet, {g});
  P b = is_setish(p) ? p : make(K::kSet, {p});
  if (a->k == K::kInterval && b->k == K::kInterval) return compare_interval(a, b, o);
  if (to_string(a) == to_string(b)) return true;
  if ((a->k == K::kUnion || b->k == K::kUnion) && is_set(a) && is_set(b)) {
    auto pa = union_parts(a), pb = union_parts(b);
    if (pa.size() == pb.size() && ordered_eq(pa, pb, o)) return true;
  }
  bool fa = a->k == K::kSet || a->k == K::kTuple, fb = b->k == K::kSet || b->k == K::kTuple;
  if (fa && fb) {
    if (a->k == K::kSet || b->k == K::kSet) {
      if (a->k == K::kTuple) return ordered_eq(a->kids, b->kids, o);  // Tuple vs set: written order
      return matched_eq(a->kids, b->kids, o);
    }
    return ordered_eq(a->kids, b->kids, o);
  }
  if (a->k == K::kInterval && fb && a->lopen && a->ropen && b->kids.size() == 2) return ordered_eq(a->kids, b->kids, o);
  if (b->k == K::kInterval && fa && b->lopen && b->ropen && a->kids.size() == 2) return ordered_eq(a->kids, b->kids, o);
  return false;
}

bool compare_symbols(const P& g, const P& p) {
  auto lower = [](std::string s) {
    for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
    return s;
  };
  auto is_e = [](const P& x) { return x->k == K::kConst && x->name == "e"; };
  if ((g->k == K::kSym && lower(g->name) == "e" && is_e(p)) || (p->k == K::kSym && lower(p->name) == "e" && is_e(g)))
    return true;
  auto concat = [&](const P& m, std::string& out) {
    if (m->k != K::kMul) return false;
    for (const auto& x : m->kids) {
      if (x->k == K::kSym) out += x->name;
      else if (is_e(x)) out += "e";
      else return false;
    }
    return true;
  };
  std::string c;
  if (g->k == K::kSym && concat(p, c)) return lower(g->name) == lower(c);
  if (p->k == K::kSym && concat(g, c)) return lower(p->name) == lower(c);
  if (g->k == K::kSym && p->k == K::kSym) {
    std::string a = g->name.size() > 1 ? lower(g->name) : g->name, b = p->name.size() > 1 ? lower(p->name) : p->name;
    return a == b;
  }
  return to_string(g) == to_string(p);
}

P rename_symbols(const P& p, const std::map<std::string, std::string>& m) {
  if (p->k == K::kSym) {
    auto it = m.find(p->name);
    return it == m.end() ? p : sym(it->second);
  }
  if (p->k == K::kUFunc || p->kids.empty()) {
    if (p->kids.empty()) return p;
  }
  auto n = std::make_shared<Node>(*p);
  if (n->k == K::kUFunc) {
    auto it = m.find(n->name + "()");
    if (it != m.end()) n->name = it->second.substr(0, it->second.size() - 2);
  }
  for (auto& k : n->kids) k = rename_symbols(k, m);
  return n;
}

}  // namespace

bool expr_eq(P gold, P pred, const CompareOptions& o) {
  deadline().check();
  if (!o.strict) {
    std::set<std::string> gs, ps;
    free_symbols(gold, gs);
    free_symbols(pred, ps);
    if (gs.size() == ps.size() && !gs.empty()) {
      std::map<std::string, std::string> m;
      for (auto gi = gs.begin(), pi = ps.begin(); gi != gs.end(); ++gi, ++pi)
        if ((gi->find("()") != std::string::npos) == (pi->find("()") != std::string::npos)) m[*pi] = *gi;
      pred = rename_symbols(pred, m);
    }
  }
  bool ga = is_assignment(gold), pa = is_assignment(pred), ge = is_equation(gold), pe = is_equation(pred);
  if (ga) gold = make(K::kRel, {first_rel(gold)->kids[0], last_rel(gold)->kids[1]}, "=");
  if (pa) pred = make(K::kRel, {first_rel(pred)->kids[0], last_rel(pred)->kids[1]}, "=");
  if (pe && !ge) pred = last_rel(pred)->kids[1];
  else if (ga && !pe) gold = last_rel(gold)->kids[1];
  if (is_relation(gold) && is_set(pred))
    if (P s = as_set(gold)) gold = s;
  if (o.allow_set_relation_comp && is_relation(pred) && is_set(gold))
    if (P s = as_set(pred)) pred = s;

  // sympy_str_eq: structural equality; a gold that evaluates to zoo/nan fails the whole pair
  if (!has_symbols(gold) && !is_setish(gold) && !is_relation(gold) && gold->k != K::kMatrix) {
    Env env;
    try {
      if (is_zoo(eval(gold, env))) return false;
    } catch (const EvalError&) {
    }
  }
  if (to_string(gold) == to_string(pred)) return true;
  if (is_relation(gold) && is_relation(pred)) return compare_relational(gold, pred, o);
  if (is_setish(gold) || is_setish(pred)) return compare_sets(gold, pred, o);
  if (gold->k == K::kSym || pred->k == K::kSym) return compare_symbols(gold, pred);
  if (is_relation(gold) || is_relation(pred)) return false;
  return numeric_eq(gold, pred, o) || symbolic_eq(gold, pred, o);
}

}  // namespace mv
