// Numeric evaluation of verifier trees (complex doubles) and the structural helpers the parser
// and the comparer share: canonical text, free symbols, "only symbols" (Math-Verify's
// is_expr_of_only_symbols). Free symbols and undefined functions get reproducible pseudo-random
// values per Env, which is how the comparer tests identities without a CAS.
#pragma once

#include <complex>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "mv_ast.h"

namespace mv {

using C = std::complex<double>;

struct EvalError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Values of free symbols: drawn on first use from (seed, name).
struct Env {
  uint64_t seed = 0;
  std::map<std::string, C> vals;
  std::map<std::string, std::string> rename;  // non-strict mode: pred symbol -> gold symbol
};

// The scalar value of `p`; throws EvalError for sets, relations, matrices, unknown functions.
C eval(const P& p, Env& env);
// The value when `p` has no free symbols and is real and finite.
std::optional<double> try_real(const P& p);

bool only_symbols(const P& p);
void free_symbols(const P& p, std::set<std::string>& out);  // symbols and undefined functions
bool is_int_literal(const P& p);    // kNum without '.' or '/'
bool is_float_literal(const P& p);  // kNum with a decimal point

}  // namespace mv
