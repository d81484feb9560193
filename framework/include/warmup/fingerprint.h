// Build fingerprint: what must agree between host and plugin for C++ objects to cross safely.
//
// A `;`-separated list of key=value fields. The host compares the fields in kFingerprintStrict
// exactly; `torch` must match when the plugin was built with torch headers visible; `compiler` is
// informational (GCC and Clang on libstdc++ interoperate). Does not detect ODR violations beyond
// these fields.
#pragma once

#include <nlohmann/json.hpp>

#include "abi.h"

#if __has_include(<torch/version.h>)
#include <torch/version.h>
#define WARMUP_DETAIL_TORCH TORCH_VERSION
#else
#define WARMUP_DETAIL_TORCH "none"
#endif

#if defined(__clang__)
#define WARMUP_DETAIL_COMPILER "clang-" WARMUP_DETAIL_STR(__clang_major__)
#elif defined(__GNUC__)
#define WARMUP_DETAIL_COMPILER "gcc-" WARMUP_DETAIL_STR(__GNUC__)
#else
#define WARMUP_DETAIL_COMPILER "unknown"
#endif

#if defined(_GLIBCXX_RELEASE)
#define WARMUP_DETAIL_STDLIB "libstdc++"
#define WARMUP_DETAIL_CXX11ABI WARMUP_DETAIL_STR(_GLIBCXX_USE_CXX11_ABI)
#elif defined(_LIBCPP_VERSION)
#define WARMUP_DETAIL_STDLIB "libc++"
#define WARMUP_DETAIL_CXX11ABI "n/a"
#else
#define WARMUP_DETAIL_STDLIB "unknown"
#define WARMUP_DETAIL_CXX11ABI "n/a"
#endif

#define WARMUP_DETAIL_JSON                            \
  WARMUP_DETAIL_STR(NLOHMANN_JSON_VERSION_MAJOR)      \
  "." WARMUP_DETAIL_STR(NLOHMANN_JSON_VERSION_MINOR) \
  "." WARMUP_DETAIL_STR(NLOHMANN_JSON_VERSION_PATCH)

// Example: "sdk=1;stdlib=libstdc++;cxx11abi=1;json=3.11.2;torch=2.11.0;compiler=gcc-12"
#ifndef WARMUP_FINGERPRINT
#define WARMUP_FINGERPRINT                                                                 \
  "sdk=" WARMUP_DETAIL_STR(WARMUP_ABI_MAJOR) ";stdlib=" WARMUP_DETAIL_STDLIB               \
  ";cxx11abi=" WARMUP_DETAIL_CXX11ABI ";json=" WARMUP_DETAIL_JSON ";torch=" WARMUP_DETAIL_TORCH \
  ";compiler=" WARMUP_DETAIL_COMPILER
#endif

namespace warmup {
// Fields compared exactly between host and plugin.
inline constexpr const char* kFingerprintStrict[] = {"sdk", "stdlib", "cxx11abi", "json"};
}  // namespace warmup
