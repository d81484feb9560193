// The CPU paged-attention kernel (see paged_attention.cpp for the checks and dispatch). Included by
// two translation units: paged_attention.cpp (baseline ISA) and paged_attention_avx2.cpp (compiled
// with -mavx2 -mfma and ATen's CPU_CAPABILITY=AVX2, so at::vec::Vectorized<float> is 8 lanes of
// AVX2 with FMA); each defines run() in its own namespace, WARMUP_KERNEL_ISA, and the caller picks one
// at run time. Works on raw pointers only, so the AVX2 unit includes no torch/torch.h.
//
// Work items are (sequence, KV head, query tile): the tile's tokens times the Hq/Hkv query heads of
// the group form R query rows that share every key/value row loaded from the pools (K rows are
// transposed into a D x KC fp32 buffer, keys along the vector; V rows used in place for fp32),
// in chunks of KC keys with an online softmax (running max and sum per row, fp32). Scores and P V
// take two query rows at a time so each K/V load feeds both. Items are handed out largest first
// from an atomic counter (causal tiles differ in cost). One-token tiles (decode) take decode():
// K and V rows read in place (bf16/fp16 converted in registers), W keys' scores at a time.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#ifndef WARMUP_KERNEL_ISA
#error "define WARMUP_KERNEL_ISA (the namespace for this instruction set) before including"
#endif

#include "cpu/vec_load.h"

namespace warmup::paged_detail {

enum class Dtype { f32, bf16, f16 };

// Everything the kernel reads, checked by the caller: q (N, Hq, D) contiguous, out likewise,
// caches (num_slots, Hkv, D) with the last stride 1, metadata on the host.
struct PagedArgs {
  const void *q, *k, *v;
  void* out;
  Dtype dtype;
  int64_t Hq, Hkv, D, ks0, ks1, vs0, vs1, S, max_blocks, block_size;
  const int32_t *qs, *lens, *bt;
  float scale;
};

namespace WARMUP_KERNEL_ISA {

using Vec = at::vec::Vectorized<float>;
constexpr int64_t W = Vec::size();

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

template <class T>
inline void load_row(const T* src, float* dst, int64_t D, float mul) {
  if constexpr (std::is_same_v<T, float>) {
    if (mul == 1.0f) {
      std::copy(src, src + D, dst);
      return;
    }
  } else {
    at::vec::convert(src, dst, D);
    src = nullptr;
  }
  if (src) {
    for (int64_t d = 0; d < D; ++d) dst[d] = src[d] * mul;
  } else if (mul != 1.0f) {
    for (int64_t d = 0; d < D; ++d) dst[d] *= mul;
  }
}

struct Item {
  int32_t s, g, t0, t1;
  int64_t cost;
};

// Sums of W vectors: lane i of the result is the sum of a[i]'s lanes (one hadd tree on AVX2).
inline Vec lane_sums(const Vec* a) {
#if defined(CPU_CAPABILITY_AVX2) && defined(__AVX2__)
  if constexpr (W == 8) {
    __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
    __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return Vec(_mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31)));
  }
#endif
  alignas(64) float tmp[W * W], out[W];
  for (int64_t i = 0; i < W; ++i) a[i].store(tmp + i * W);
  for (int64_t i = 0; i < W; ++i) {
    float t = 0.0f;
    for (int64_t j = 0; j < W; ++j) t += tmp[i * W + j];
    out[i] = t;
  }
  return Vec::loadu(out);
}

using kernel_vec::WARMUP_KERNEL_ISA::load_f;

template <class T>
struct DecodeScratch {
  std::vector<const T*> krow, vrow;  // the context's key and value rows, Dp elements each
  std::vector<T> Kc, Vc;             // zero-padded copies when D is not a multiple of the vector width
  std::vector<float> S;              // the G query rows' scores, then probabilities, over the context
};

// One query token (decode) of sequence item.s against KV head item.g: nothing to share a transposed
// K tile with, so K rows are read in place. Scores W keys x one query row at a time (a hadd tree
// turns the W dot-product vectors into one vector of scores), softmax over the whole context
// (its scores fit in a buffer), then P V with the output of two query rows held in registers over
// a 4W-wide slice of D. Qf, Acc, sum: the caller's scratch (G x Dp, G x Dp, G).
template <class T>
inline void decode(const PagedArgs& m, const Item& item, float* Qf, float* Acc, float* sum, DecodeScratch<T>& sc) {
  const int64_t Hq = m.Hq, D = m.D, G = Hq / m.Hkv, bs = m.block_size, Dp = round_up(D, W);
  const int64_t s = item.s, g = item.g, q0 = m.qs[s] + item.t0, nkeys = m.lens[s] - (m.qs[s + 1] - m.qs[s]) + item.t1;
  const T* kp = static_cast<const T*>(m.k);
  const T* vp = static_cast<const T*>(m.v);
  const int32_t* blocks = m.bt + s * m.max_blocks;
  const bool in_place = D == Dp;
  for (int64_t h = 0; h < G; ++h)
    load_row(static_cast<const T*>(m.q) + (q0 * Hq + g * G + h) * D, Qf + h * Dp, D, m.scale);

  // Row pointers of the context, block by block (no division per key); zero-padded copies when
  // the head dim is not a multiple of the vector width.
  const int64_t nk_pad = round_up(nkeys, W);
  sc.krow.resize(size_t(nk_pad)), sc.vrow.resize(size_t(nk_pad));
  if (!in_place) {
    sc.Kc.assign(size_t((nkeys + 1) * Dp), T(0.0f));
    sc.Vc.assign(size_t((nkeys + 1) * Dp), T(0.0f));
  } else if (sc.Kc.size() < size_t(Dp)) {
    sc.Kc.assign(size_t(Dp), T(0.0f));
  }
  for (int64_t c0 = 0, b = 0; c0 < nkeys; c0 += bs, ++b) {
    const int64_t base = int64_t(blocks[b]) * bs, n = std::min(bs, nkeys - c0);
    for (int64_t i = 0; i < n; ++i) {
      const T* kr = kp + (base + i) * m.ks0 + g * m.ks1;
      const T* vr = vp + (base + i) * m.vs0 + g * m.vs1;
      const int64_t c = c0 + i;
      if (in_place) {
        sc.krow[size_t(c)] = kr, sc.vrow[size_t(c)] = vr;
      } else {
        T* kd = sc.Kc.data() + c * Dp;
        T* vd = sc.Vc.data() + c * Dp;
        std::copy(kr, kr + D, kd);
        std::copy(vr, vr + D, vd);
        sc.krow[size_t(c)] = kd, sc.vrow[size_t(c)] = vd;
      }
    }
  }
  // padding keys: a zero row (scores past nkeys are never read)
  const T* zero_row = in_place ? sc.Kc.data() : sc.Kc.data() + nkeys * Dp;
  for (int64_t c = nkeys; c < nk_pad; ++c) sc.krow[size_t(c)] = zero_row;

  if (sc.S.size() < size_t(G * nk_pad)) sc.S.resize(size_t(G * nk_pad));
  for (int64_t h = 0; h < G; ++h) {
    const float* q = Qf + h * Dp;
    float* sr = sc.S.data() + h * nk_pad;
    for (int64_t c0 = 0; c0 < nkeys; c0 += W) {
      Vec acc[W];
#pragma GCC unroll 16
      for (int64_t i = 0; i < W; ++i) acc[i] = Vec(0.0f);
      const T* const* kr = sc.krow.data() + c0;
      for (int64_t d = 0; d < Dp; d += W) {
        Vec x = Vec::loadu(q + d);
#pragma GCC unroll 16
        for (int64_t i = 0; i < W; ++i) acc[i] = at::vec::fmadd(x, load_f(kr[i] + d), acc[i]);
      }
      lane_sums(acc).store(sr + c0);
    }
  }
  for (int64_t h = 0; h < G; ++h) {
    float* sr = sc.S.data() + h * nk_pad;
    const float mxv = *std::max_element(sr, sr + nkeys);
    float total = 0.0f;
    int64_t c = 0;
    Vec mv(mxv), sv(0.0f);
    for (; c + W <= nkeys; c += W) {
      Vec e = (Vec::loadu(sr + c) - mv).exp_u20();
      e.store(sr + c);
      sv = sv + e;
    }
    for (; c < nkeys; ++c) total += sr[c] = std::exp(sr[c] - mxv);
    total += at::vec::vec_reduce_all<float>([](Vec& a, Vec& b) { return a + b; }, sv);
    sum[h] = total;
  }
  // P V: two query rows x a 4W slice of D at a time, the slice's accumulators in registers.
  const T* const* vr = sc.vrow.data();
  for (int64_t h = 0; h < G; h += 2) {
    const bool two = h + 1 < G;
    const float* pa = sc.S.data() + h * nk_pad;
    const float* pb = sc.S.data() + (two ? h + 1 : h) * nk_pad;
    float* oa = Acc + h * Dp;
    float* ob = Acc + (two ? h + 1 : h) * Dp;
    int64_t d = 0;
    for (; d + 4 * W <= Dp; d += 4 * W) {
      Vec a0(0.0f), a1(0.0f), a2(0.0f), a3(0.0f), b0(0.0f), b1(0.0f), b2(0.0f), b3(0.0f);
      for (int64_t c = 0; c < nkeys; ++c) {
        const T* v = vr[c] + d;
        Vec v0 = load_f(v), v1 = load_f(v + W), v2 = load_f(v + 2 * W), v3 = load_f(v + 3 * W);
        Vec x(pa[c]), y(pb[c]);
        a0 = at::vec::fmadd(x, v0, a0), a1 = at::vec::fmadd(x, v1, a1), a2 = at::vec::fmadd(x, v2, a2), a3 = at::vec::fmadd(x, v3, a3);
        b0 = at::vec::fmadd(y, v0, b0), b1 = at::vec::fmadd(y, v1, b1), b2 = at::vec::fmadd(y, v2, b2), b3 = at::vec::fmadd(y, v3, b3);
      }
      b0.store(ob + d), b1.store(ob + d + W), b2.store(ob + d + 2 * W), b3.store(ob + d + 3 * W);
      a0.store(oa + d), a1.store(oa + d + W), a2.store(oa + d + 2 * W), a3.store(oa + d + 3 * W);
    }
    for (; d < Dp; d += W) {
      Vec a0(0.0f), b0(0.0f);
      for (int64_t c = 0; c < nkeys; ++c) {
        Vec v0 = load_f(vr[c] + d);
        a0 = at::vec::fmadd(Vec(pa[c]), v0, a0), b0 = at::vec::fmadd(Vec(pb[c]), v0, b0);
      }
      b0.store(ob + d);
      a0.store(oa + d);
    }
  }
  T* op = static_cast<T*>(m.out);
  for (int64_t h = 0; h < G; ++h) {
    const float* ar = Acc + h * Dp;
    const float inv = 1.0f / sum[h];
    T* o = op + (q0 * Hq + g * G + h) * D;
    for (int64_t d = 0; d < D; ++d) o[d] = T(ar[d] * inv);
  }
}

template <class T>
inline void attend(const PagedArgs& m) {
  const int64_t Hq = m.Hq, Hkv = m.Hkv, D = m.D, G = Hq / Hkv, bs = m.block_size;
  const float scale = m.scale;
  const int64_t Dp = round_up(D, W);
  const int64_t TQ = std::clamp<int64_t>(128 / G, 1, 64);         // query tokens per tile
  constexpr int64_t CB = 4 * W;                                   // keys per score block
  constexpr int64_t KC = 2 * CB;                                  // keys per chunk
  const int64_t Rmax = TQ * G;
  const int64_t ks0 = m.ks0, ks1 = m.ks1, vs0 = m.vs0, vs1 = m.vs1;
  const T* qp = static_cast<const T*>(m.q);
  const T* kp = static_cast<const T*>(m.k);
  const T* vp = static_cast<const T*>(m.v);
  T* op = static_cast<T*>(m.out);
  const int32_t *qs = m.qs, *lens = m.lens, *bt = m.bt;
  // Rows can be used in place when they are fp32 and need no padding.
  const bool in_place = std::is_same_v<T, float> && D == Dp;

  std::vector<Item> items;
  for (int64_t s = 0; s < m.S; ++s) {
    int64_t ql = qs[s + 1] - qs[s], ctx = lens[s] - ql;
    for (int64_t t0 = 0; t0 < ql; t0 += TQ) {
      int64_t t1 = std::min(ql, t0 + TQ);
      for (int64_t g = 0; g < Hkv; ++g)
        items.push_back({int32_t(s), int32_t(g), int32_t(t0), int32_t(t1), (t1 - t0) * G * (ctx + t1)});
    }
  }
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.cost > b.cost; });
  std::atomic<int64_t> next{0};
  const int64_t n_items = int64_t(items.size());
  const float neg_inf = -std::numeric_limits<float>::infinity();

  at::parallel_for(0, std::min<int64_t>(at::get_num_threads(), n_items), 1, [&](int64_t, int64_t) {
    std::vector<float> Qf(Rmax * Dp, 0.0f), Acc(Rmax * Dp), Sc(Rmax * KC), Kt(Dp * KC, 0.0f), Kf(Dp, 0.0f),
        Vf(KC * Dp, 0.0f), zero(Dp, 0.0f), mx(Rmax), sum(Rmax), alpha(Rmax);
    std::vector<const float*> vrow(KC);
    alignas(64) float tmp[W * W];
    DecodeScratch<T> dec;
    for (int64_t it; (it = next.fetch_add(1)) < n_items;) {
      const Item& item = items[it];
      const int64_t s = item.s, g = item.g, t0 = item.t0, t1 = item.t1;
      const int64_t q0 = qs[s], ctx = lens[s] - (qs[s + 1] - qs[s]);
      const int64_t R = (t1 - t0) * G, nkeys = ctx + t1;
      const int32_t* blocks = bt + s * m.max_blocks;
      if (t1 - t0 == 1) {
        decode<T>(m, item, Qf.data(), Acc.data(), sum.data(), dec);
        continue;
      }
      for (int64_t t = t0; t < t1; ++t)
        for (int64_t h = 0; h < G; ++h)
          load_row(qp + ((q0 + t) * Hq + g * G + h) * D, Qf.data() + ((t - t0) * G + h) * Dp, D, scale);
      std::fill(Acc.begin(), Acc.begin() + R * Dp, 0.0f);
      std::fill(mx.begin(), mx.begin() + R, neg_inf);
      std::fill(sum.begin(), sum.begin() + R, 0.0f);

      for (int64_t k0 = 0; k0 < nkeys; k0 += KC) {
        const int64_t kn = std::min(KC, nkeys - k0), knp = round_up(kn, CB);
        // K rows go transposed into Kt (D x KC, keys along the vector), V rows stay rows (in
        // place for fp32 with D a multiple of the vector width).
        for (int64_t c = 0; c < kn; ++c) {
          int64_t pos = k0 + c, slot = int64_t(blocks[pos / bs]) * bs + pos % bs;
          const T* kr = kp + slot * ks0 + g * ks1;
          const T* vr = vp + slot * vs0 + g * vs1;
          const float* kf;
          if constexpr (std::is_same_v<T, float>) {
            kf = kr;
          } else {
            at::vec::convert(kr, Kf.data(), D);
            kf = Kf.data();
          }
          for (int64_t d = 0; d < D; ++d) Kt[d * KC + c] = kf[d];
          if (in_place) {
            vrow[c] = reinterpret_cast<const float*>(vr);
          } else {
            load_row(vr, Vf.data() + c * Dp, D, 1.0f);
            vrow[c] = Vf.data() + c * Dp;
          }
        }
        for (int64_t c = kn; c < knp; ++c) {
          vrow[c] = zero.data();
          for (int64_t d = 0; d < D; ++d) Kt[d * KC + c] = 0.0f;
        }

        // Scores, two query rows x CB keys at a time (both rows share each Kt load).
        for (int64_t r = 0; r < R; r += 2) {
          const float* qa = Qf.data() + r * Dp;
          const float* qb = Qf.data() + std::min(r + 1, R - 1) * Dp;
          float* sa = Sc.data() + r * KC;
          float* sb = Sc.data() + std::min(r + 1, R - 1) * KC;
          for (int64_t cb = 0; cb < knp; cb += CB) {
            Vec a0(0.0f), a1(0.0f), a2(0.0f), a3(0.0f), b0(0.0f), b1(0.0f), b2(0.0f), b3(0.0f);
            for (int64_t d = 0; d < D; ++d) {
              const float* kt = Kt.data() + d * KC + cb;
              Vec k0 = Vec::loadu(kt), k1 = Vec::loadu(kt + W), k2 = Vec::loadu(kt + 2 * W), k3 = Vec::loadu(kt + 3 * W);
              Vec x(qa[d]), y(qb[d]);
              a0 = at::vec::fmadd(x, k0, a0), a1 = at::vec::fmadd(x, k1, a1);
              a2 = at::vec::fmadd(x, k2, a2), a3 = at::vec::fmadd(x, k3, a3);
              b0 = at::vec::fmadd(y, k0, b0), b1 = at::vec::fmadd(y, k1, b1);
              b2 = at::vec::fmadd(y, k2, b2), b3 = at::vec::fmadd(y, k3, b3);
            }
            a0.store(sa + cb), a1.store(sa + cb + W), a2.store(sa + cb + 2 * W), a3.store(sa + cb + 3 * W);
            b0.store(sb + cb), b1.store(sb + cb + W), b2.store(sb + cb + 2 * W), b3.store(sb + cb + 3 * W);
          }
        }

        // Causal mask (key positions past the row's own) and padding, then the online softmax:
        // P = exp(S - m_new) in place, alpha = exp(m_old - m_new) rescales the row's sum and output.
        for (int64_t r = 0; r < R; ++r) {
          float* sr = Sc.data() + r * KC;
          const int64_t p = ctx + t0 + r / G;
          for (int64_t c = std::clamp<int64_t>(p + 1 - k0, 0, kn); c < knp; ++c) sr[c] = neg_inf;
          Vec mv(neg_inf);
          for (int64_t c = 0; c < knp; c += W) mv = at::vec::maximum(mv, Vec::loadu(sr + c));
          mv.store(tmp);
          const float m_new = std::max(mx[r], *std::max_element(tmp, tmp + W));  // finite: key 0 is in chunk 0
          alpha[r] = std::exp(mx[r] - m_new);
          Vec mnv(m_new), sv(0.0f);
          for (int64_t c = 0; c < knp; c += W) {
            Vec pv = (Vec::loadu(sr + c) - mnv).exp_u20();
            pv.store(sr + c);
            sv = sv + pv;
          }
          sv.store(tmp);
          float csum = 0.0f;
          for (int64_t i = 0; i < W; ++i) csum += tmp[i];
          sum[r] = sum[r] * alpha[r] + csum;
          mx[r] = m_new;
        }

        // Out = alpha * Out + P V, two rows at a time (both share each V load).
        for (int64_t r = 0; r < R; r += 2) {
          const bool two = r + 1 < R;
          const float* pa = Sc.data() + r * KC;
          const float* pb = Sc.data() + (two ? r + 1 : r) * KC;
          float* oa = Acc.data() + r * Dp;
          float* ob = two ? Acc.data() + (r + 1) * Dp : oa;
          Vec xa(alpha[r]), xb(alpha[two ? r + 1 : r]);
          int64_t d = 0;
          for (; d + 2 * W <= Dp; d += 2 * W) {
            Vec a0 = Vec::loadu(oa + d) * xa, a1 = Vec::loadu(oa + d + W) * xa;
            Vec b0 = Vec::loadu(ob + d) * xb, b1 = Vec::loadu(ob + d + W) * xb;
            for (int64_t c = 0; c < kn; ++c) {
              const float* v = vrow[c] + d;
              Vec v0 = Vec::loadu(v), v1 = Vec::loadu(v + W), x(pa[c]), y(pb[c]);
              a0 = at::vec::fmadd(x, v0, a0), a1 = at::vec::fmadd(x, v1, a1);
              b0 = at::vec::fmadd(y, v0, b0), b1 = at::vec::fmadd(y, v1, b1);
            }
            b0.store(ob + d), b1.store(ob + d + W);  // ob == oa for a lone last row: a wins
            a0.store(oa + d), a1.store(oa + d + W);
          }
          for (; d < Dp; d += W) {
            Vec a0 = Vec::loadu(oa + d) * xa, b0 = Vec::loadu(ob + d) * xb;
            for (int64_t c = 0; c < kn; ++c) {
              Vec v0 = Vec::loadu(vrow[c] + d);
              a0 = at::vec::fmadd(Vec(pa[c]), v0, a0), b0 = at::vec::fmadd(Vec(pb[c]), v0, b0);
            }
            b0.store(ob + d);
            a0.store(oa + d);
          }
        }
      }

      for (int64_t t = t0; t < t1; ++t)
        for (int64_t h = 0; h < G; ++h) {
          int64_t r = (t - t0) * G + h;
          float* ar = Acc.data() + r * Dp;
          float inv = 1.0f / sum[r];
          T* o = op + ((q0 + t) * Hq + g * G + h) * D;
          for (int64_t d = 0; d < D; ++d) o[d] = T(ar[d] * inv);
        }
    }
  });
}

inline void run(const PagedArgs& a) {
  switch (a.dtype) {
    case Dtype::f32: return attend<float>(a);
    case Dtype::bf16: return attend<c10::BFloat16>(a);
    case Dtype::f16: return attend<c10::Half>(a);
  }
}

}  // namespace WARMUP_KERNEL_ISA
}  // namespace warmup::paged_detail
