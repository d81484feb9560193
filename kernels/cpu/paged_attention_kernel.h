// The CPU paged-attention kernel (see paged_attention.cpp for the checks and dispatch). Included by
// two translation units: paged_attention.cpp (baseline ISA) and paged_attention_avx2.cpp (compiled
// with -mavx2 -mfma and ATen's CPU_CAPABILITY=AVX2, so at::vec::Vectorized<float> is 8 lanes of
// AVX2 with FMA); each defines run() in its own namespace, WARMUP_PA_ISA, and the caller picks one
// at run time. Works on raw pointers only, so the AVX2 unit includes no torch/torch.h.
//
// Work items are (sequence, KV head, query tile): the tile's tokens times the Hq/Hkv query heads of
// the group form R query rows that share every key/value row loaded from the pools (K rows are
// transposed into a D x KC fp32 buffer, keys along the vector; V rows used in place for fp32),
// in chunks of KC keys with an online softmax (running max and sum per row, fp32). Scores and P V
// take two query rows at a time so each K/V load feeds both. Items are handed out largest first
// from an atomic counter (causal tiles differ in cost).
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

#ifndef WARMUP_PA_ISA
#error "define WARMUP_PA_ISA (the namespace for this instruction set) before including"
#endif

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

namespace WARMUP_PA_ISA {

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
    std::vector<float> Sd;  // decode: the G rows' scores over the whole context
    for (int64_t it; (it = next.fetch_add(1)) < n_items;) {
      const Item& item = items[it];
      const int64_t s = item.s, g = item.g, t0 = item.t0, t1 = item.t1;
      const int64_t q0 = qs[s], ctx = lens[s] - (qs[s + 1] - qs[s]);
      const int64_t R = (t1 - t0) * G, nkeys = ctx + t1;
      const int32_t* blocks = bt + s * m.max_blocks;
      if (t1 - t0 == 1) {
        // One query token (decode): no tile to share a transposed K with. Two passes over the
        // context: scores (each K row dotted with the G query rows straight from the pool), then
        // softmax and P V; the scores of a whole context fit in a buffer.
        for (int64_t h = 0; h < G; ++h) load_row(qp + ((q0 + t0) * Hq + g * G + h) * D, Qf.data() + h * Dp, D, scale);
        if (int64_t(Sd.size()) < G * nkeys) Sd.resize(size_t(G * nkeys));
        for (int64_t c = 0; c < nkeys; ++c) {
          int64_t slot = int64_t(blocks[c / bs]) * bs + c % bs;
          const T* kr = kp + slot * ks0 + g * ks1;
          const float* kf;
          if (in_place) {
            kf = reinterpret_cast<const float*>(kr);
          } else {
            load_row(kr, Kf.data(), D, 1.0f);  // padding past D stays 0
            kf = Kf.data();
          }
          for (int64_t h = 0; h < G; ++h) {
            const float* q = Qf.data() + h * Dp;
            Vec acc(0.0f);
            for (int64_t d = 0; d < Dp; d += W) acc = at::vec::fmadd(Vec::loadu(q + d), Vec::loadu(kf + d), acc);
            acc.store(tmp);
            float dot = 0.0f;
            for (int64_t i = 0; i < W; ++i) dot += tmp[i];
            Sd[size_t(h * nkeys + c)] = dot;
          }
        }
        for (int64_t h = 0; h < G; ++h) {
          float* sr = Sd.data() + h * nkeys;
          float mxv = *std::max_element(sr, sr + nkeys), total = 0.0f;
          int64_t c = 0;
          Vec mv(mxv), sv(0.0f);
          for (; c + W <= nkeys; c += W) {
            Vec e = (Vec::loadu(sr + c) - mv).exp_u20();
            e.store(sr + c);
            sv = sv + e;
          }
          for (; c < nkeys; ++c) total += sr[c] = std::exp(sr[c] - mxv);
          sv.store(tmp);
          for (int64_t i = 0; i < W; ++i) total += tmp[i];
          sum[h] = total;
          std::fill(Acc.begin() + h * Dp, Acc.begin() + (h + 1) * Dp, 0.0f);
        }
        for (int64_t c = 0; c < nkeys; ++c) {
          int64_t slot = int64_t(blocks[c / bs]) * bs + c % bs;
          const T* vr = vp + slot * vs0 + g * vs1;
          const float* vf;
          if (in_place) {
            vf = reinterpret_cast<const float*>(vr);
          } else {
            load_row(vr, Vf.data(), D, 1.0f);
            vf = Vf.data();
          }
          for (int64_t h = 0; h < G; ++h) {
            Vec p(Sd[size_t(h * nkeys + c)]);
            float* a = Acc.data() + h * Dp;
            for (int64_t d = 0; d < Dp; d += W) at::vec::fmadd(p, Vec::loadu(vf + d), Vec::loadu(a + d)).store(a + d);
          }
        }
        for (int64_t h = 0; h < G; ++h) {
          const float* ar = Acc.data() + h * Dp;
          float inv = 1.0f / sum[h];
          T* o = op + ((q0 + t0) * Hq + g * G + h) * D;
          for (int64_t d = 0; d < D; ++d) o[d] = T(ar[d] * inv);
        }
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

}  // namespace WARMUP_PA_ISA
}  // namespace warmup::paged_detail
