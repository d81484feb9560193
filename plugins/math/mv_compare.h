// Equivalence of two parsed answers, following Math-Verify 0.9's sympy_expr_eq: assignments
// (x = 3) reduce to their value, relations compare up to sides and scaling, sets/tuples/intervals
// element by element, symbols by name, numbers exactly (integers) or after rounding (decimals),
// everything else numerically at random points (our stand-in for simplify(a - b) == 0).
#pragma once

#include "mv_ast.h"

namespace mv {

struct CompareOptions {
  int float_rounding = 6;                // decimals kept when a side is a decimal literal
  bool strict = true;                    // false: variables are matched by position
  bool allow_set_relation_comp = false;  // also turn a predicted relation into a set
};

bool expr_eq(P gold, P pred, const CompareOptions& o);

}  // namespace mv
