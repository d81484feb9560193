// Numeric evaluation (complex double) and structural helpers for verifier trees. Free symbols
// get values in [0.5, 1.5) + small imaginary parts from a splitmix hash of (seed, name), so two
// trees are compared at the same points; undefined functions hash their (rounded) arguments.
#include "mv_eval.h"

#include <cmath>
#include <cstring>

namespace mv {

Deadline& deadline() {
  thread_local Deadline d;
  return d;
}

namespace {

uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
uint64_t hash_str(const std::string& s, uint64_t h) {
  for (unsigned char c : s) h = mix(h ^ c);
  return h;
}
double unit(uint64_t h) { return double(h >> 11) / double(1ull << 53); }

C gamma_c(C z) {
  if (std::abs(z.imag()) > 1e-12) throw EvalError("complex factorial");
  return std::tgamma(z.real());
}

}  // namespace

std::string to_string(const P& p) {
  auto join = [&](const char* open, const char* sep, const char* close) {
    std::string s = open;
    for (size_t i = 0; i < p->kids.size(); ++i) s += (i ? sep : "") + to_string(p->kids[i]);
    return s + close;
  };
  switch (p->k) {
    case K::kNum: return p->name;
    case K::kSym: return p->name;
    case K::kConst: return "\\" + p->name;
    case K::kAdd: return join("(", "+", ")");
    case K::kMul: return join("(", "*", ")");
    case K::kPow: return join("(", "^", ")");
    case K::kFunc: return p->name + join("(", ",", ")");
    case K::kUFunc: return p->name + join("(", ",", ")");
    case K::kPct: return join("(", "", "%)");
    case K::kTuple: return join("(", ",", ")");
    case K::kSet: return join("{", ",", "}");
    case K::kInterval: return join(p->lopen ? "(" : "[", ",", p->ropen ? ")" : "]");
    case K::kUnion: return join("", " U ", "");
    case K::kMatrix: return "M" + std::to_string(p->rows) + "x" + std::to_string(p->cols) + join("[", ",", "]");
    case K::kRel: return to_string(p->kids[0]) + p->name + to_string(p->kids[1]);
    case K::kAnd: return join("", " & ", "");
  }
  return "?";
}

bool is_int_literal(const P& p) {
  return p->k == K::kNum && !p->is_float && p->name.find('/') == std::string::npos;
}
bool is_float_literal(const P& p) { return p->k == K::kNum && p->is_float; }

bool only_symbols(const P& p) {
  if (p->k == K::kSym) return true;
  if (p->k == K::kPow && p->kids[1]->k == K::kNum && p->kids[1]->name == "-1") {
    const P& b = p->kids[0];
    if (b->k == K::kSym) return true;
    bool all = !b->kids.empty();
    for (const auto& k : b->kids) all = all && only_symbols(k);
    if (all) return true;
  }
  if (p->kids.empty()) return false;
  for (const auto& k : p->kids)
    if (!only_symbols(k)) return false;
  return true;
}

void free_symbols(const P& p, std::set<std::string>& out) {
  if (p->k == K::kSym) out.insert(p->name);
  if (p->k == K::kUFunc) out.insert(p->name + "()");
  for (const auto& k : p->kids) free_symbols(k, out);
}

C eval(const P& p, Env& env) {
  deadline().check();
  const auto& k = p->kids;
  switch (p->k) {
    case K::kNum: {
      size_t slash = p->name.find('/');
      if (slash == std::string::npos) return std::strtod(p->name.c_str(), nullptr);
      return std::strtod(p->name.substr(0, slash).c_str(), nullptr) / std::strtod(p->name.substr(slash + 1).c_str(), nullptr);
    }
    case K::kSym: {
      std::string name = p->name;
      if (auto r = env.rename.find(name); r != env.rename.end()) name = r->second;
      auto it = env.vals.find(name);
      if (it != env.vals.end()) return it->second;
      uint64_t h = hash_str(name, mix(env.seed));
      C v(0.5 + unit(h), 0.25 * (unit(mix(h)) - 0.5));
      env.vals[name] = v;
      return v;
    }
    case K::kConst:
      if (p->name == "pi") return M_PI;
      if (p->name == "e") return M_E;
      if (p->name == "i") return C(0, 1);
      return std::numeric_limits<double>::infinity();
    case K::kAdd: {
      C s = 0;
      for (const auto& x : k) s += eval(x, env);
      return s;
    }
    case K::kMul: {
      C s = 1;
      for (const auto& x : k) s *= eval(x, env);
      return s;
    }
    case K::kPow: {
      C b = eval(k[0], env), e = eval(k[1], env);
      if (e.imag() == 0 && e.real() == std::round(e.real()) && std::abs(e.real()) < 64) {
        int n = int(e.real());
        C r = 1;
        for (int i = 0; i < std::abs(n); ++i) r *= b;
        return n < 0 ? C(1) / r : r;
      }
      if (b.imag() == 0 && b.real() < 0 && e.imag() == 0) {  // real odd roots of negatives (x^{1/3})
        double den = 1.0 / e.real();
        if (std::abs(den - std::round(den)) < 1e-12 && int64_t(std::round(den)) % 2 != 0) return -std::pow(-b.real(), e.real());
      }
      if (b == C(0)) return e.real() > 0 ? C(0) : C(std::numeric_limits<double>::infinity());
      return std::pow(b, e);
    }
    case K::kPct: return eval(k[0], env) / 100.0;
    case K::kFunc: {
      const std::string& f = p->name;
      C x = eval(k[0], env);
      if (f == "sqrt") return std::sqrt(x);
      if (f == "sin") return std::sin(x);
      if (f == "cos") return std::cos(x);
      if (f == "tan") return std::tan(x);
      if (f == "sec") return C(1) / std::cos(x);
      if (f == "csc") return C(1) / std::sin(x);
      if (f == "cot") return C(1) / std::tan(x);
      if (f == "arcsin") return std::asin(x);
      if (f == "arccos") return std::acos(x);
      if (f == "arctan") return std::atan(x);
      if (f == "arcsec") return std::acos(C(1) / x);
      if (f == "arccsc") return std::asin(C(1) / x);
      if (f == "arccot") return std::atan(C(1) / x);
      if (f == "sinh") return std::sinh(x);
      if (f == "cosh") return std::cosh(x);
      if (f == "tanh") return std::tanh(x);
      if (f == "log") return std::log(x);
      if (f == "exp") return std::exp(x);
      if (f == "abs") return std::abs(x);
      if (f == "floor") return std::floor(x.real());
      if (f == "ceil") return std::ceil(x.real());
      if (f == "fact") return gamma_c(x + 1.0);
      if (f == "binom") {
        C y = eval(k[1], env);
        return gamma_c(x + 1.0) / (gamma_c(y + 1.0) * gamma_c(x - y + 1.0));
      }
      throw EvalError("unknown function " + f);
    }
    case K::kUFunc: {
      uint64_t h = hash_str(p->name, mix(env.seed ^ 0x5555));
      for (const auto& a : k) {
        C v = eval(a, env);
        h = mix(h ^ uint64_t(int64_t(std::llround(v.real() * 1e9)))) ^ uint64_t(int64_t(std::llround(v.imag() * 1e9)));
      }
      return C(0.5 + unit(h), 0.0);
    }
    default: throw EvalError("not a scalar: " + to_string(p));
  }
}

std::optional<double> try_real(const P& p) {
  std::set<std::string> fs;
  free_symbols(p, fs);
  if (!fs.empty()) return std::nullopt;
  try {
    Env env;
    C v = eval(p, env);
    if (std::abs(v.imag()) > 1e-12 * std::max(1.0, std::abs(v.real())) || std::isnan(v.real())) return std::nullopt;
    return v.real();
  } catch (const EvalError&) {
    return std::nullopt;
  }
}

}  // namespace mv
