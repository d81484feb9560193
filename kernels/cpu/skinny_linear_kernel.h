// The skinny-linear kernel (see skinny_linear.h). Included by skinny_linear.cpp (baseline ISA) and
// skinny_linear_avx2.cpp (AVX2 + FMA + F16C, ATen's CPU_CAPABILITY=AVX2), each in its own
// namespace WARMUP_KERNEL_ISA; raw pointers only.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#ifndef WARMUP_KERNEL_ISA
#error "define WARMUP_KERNEL_ISA (the namespace for this instruction set) before including"
#endif

#include "cpu/vec_load.h"

namespace warmup::skinny_detail {

enum class Dtype { f32, bf16, f16 };

// x (M, K) fp32 with row stride ldx; w (N, K) with row stride ldw; out (M, N) fp32 contiguous.
struct SkinnyArgs {
  const float* x;
  const void* w;
  float* out;
  Dtype wdtype;
  int64_t M, N, K, ldx, ldw;
};

namespace WARMUP_KERNEL_ISA {

using Vec = at::vec::Vectorized<float>;
constexpr int64_t W = Vec::size();

using kernel_vec::WARMUP_KERNEL_ISA::load_f;

inline float hsum(const Vec& v) {
  alignas(64) float t[W];
  v.store(t);
  float s = 0.0f;
  for (int64_t i = 0; i < W; ++i) s += t[i];
  return s;
}

// out[i][j] = x_i . w_j for MR rows of x and NR rows of w, MR * NR accumulators in registers.
template <class T, int MR, int NR>
inline void micro(const float* x, int64_t ldx, const T* w, int64_t ldw, float* out, int64_t ldo, int64_t K) {
  Vec acc[MR][NR];
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) acc[i][j] = Vec(0.0f);
  for (int64_t k = 0; k < K; k += W) {
    Vec wv[NR];
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) wv[j] = load_f(w + j * ldw + k);
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      Vec xv = Vec::loadu(x + i * ldx + k);
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) acc[i][j] = at::vec::fmadd(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) out[i * ldo + j] = hsum(acc[i][j]);
}

constexpr int MR = 4, NR = 3;
constexpr int64_t kRowsPerTask = 16 * NR;  // W rows per parallel task

template <class T>
using MicroFn = void (*)(const float*, int64_t, const T*, int64_t, float*, int64_t, int64_t);

template <class T, int NRr>
constexpr MicroFn<T> pick_m(int mr) {
  return mr == 1 ? micro<T, 1, NRr> : mr == 2 ? micro<T, 2, NRr> : mr == 3 ? micro<T, 3, NRr> : micro<T, 4, NRr>;
}

template <class T>
inline void linear(const SkinnyArgs& a) {
  const T* w = static_cast<const T*>(a.w);
  const int64_t M = a.M, N = a.N, K = a.K, ldx = a.ldx, ldw = a.ldw;
  const int64_t tasks = (N + kRowsPerTask - 1) / kRowsPerTask;
  at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n0 = t * kRowsPerTask, n1 = std::min(N, n0 + kRowsPerTask);
      for (int64_t j0 = n0; j0 < n1; j0 += NR) {
        const int64_t nr = std::min<int64_t>(NR, n1 - j0);
        // the NR rows of w stay in L1 while every row block of x passes over them
        for (int64_t i0 = 0; i0 < M; i0 += MR) {
          const int mr = int(std::min<int64_t>(MR, M - i0));
          MicroFn<T> f = nr == 3 ? pick_m<T, 3>(mr) : nr == 2 ? pick_m<T, 2>(mr) : pick_m<T, 1>(mr);
          f(a.x + i0 * ldx, ldx, w + j0 * ldw, ldw, a.out + i0 * N + j0, N, K);
        }
      }
    }
  });
}

inline void run(const SkinnyArgs& a) {
  switch (a.wdtype) {
    case Dtype::f32: return linear<float>(a);
    case Dtype::bf16: return linear<c10::BFloat16>(a);
    case Dtype::f16: return linear<c10::Half>(a);
  }
}

}  // namespace WARMUP_KERNEL_ISA
}  // namespace warmup::skinny_detail
