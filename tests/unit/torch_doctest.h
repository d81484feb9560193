// For tests that use LibTorch: c10's logging header defines glog-style CHECK macros that would
// silently replace doctest's. Include torch first, drop those, then doctest.
#pragma once

#include <torch/torch.h>

#undef CHECK
#undef CHECK_EQ
#undef CHECK_NE
#undef CHECK_LE
#undef CHECK_LT
#undef CHECK_GE
#undef CHECK_GT
#include <doctest/doctest.h>
