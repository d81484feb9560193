// Loads shared by the CPU kernels built per instruction set (paged_attention_kernel.h,
// skinny_linear_kernel.h). Each translation unit defines WARMUP_KERNEL_ISA (base, avx2) before
// including a kernel, so the bodies, which differ by ISA, live in namespaces of their own.
#pragma once

#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <type_traits>

#ifndef WARMUP_KERNEL_ISA
#error "define WARMUP_KERNEL_ISA (the namespace for this instruction set) before including"
#endif

namespace warmup::kernel_vec::WARMUP_KERNEL_ISA {

using Vec = at::vec::Vectorized<float>;
constexpr int64_t W = Vec::size();

// W consecutive elements as fp32 (bf16 and fp16 converted in registers on AVX2).
template <class T>
inline Vec load_f(const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    return Vec::loadu(p);
  } else {
#if defined(CPU_CAPABILITY_AVX2) && defined(__AVX2__)
    if constexpr (W == 8) {
      __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      if constexpr (std::is_same_v<T, c10::BFloat16>)
        return Vec(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16)));
      else
        return Vec(_mm256_cvtph_ps(v));
    }
#endif
    alignas(64) float t[W];
    for (int64_t i = 0; i < W; ++i) t[i] = float(p[i]);
    return Vec::loadu(t);
  }
}

}  // namespace warmup::kernel_vec::WARMUP_KERNEL_ISA
