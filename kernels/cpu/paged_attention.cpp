// See paged_attention.h. Here: the input checks (std::invalid_argument), write_kv, the reference
// (gather + scaled_dot_product_attention) and the CPU entry point, which runs the kernel of
// cpu/paged_attention_kernel.h built for AVX2 + FMA (paged_attention_avx2.cpp) where the CPU has
// them, else the baseline build below.
#include "paged_attention.h"

#include <cstdlib>
#include <stdexcept>
#include <string>

#define WARMUP_KERNEL_ISA base
#include "cpu/paged_attention_kernel.h"

#if defined(__x86_64__)
namespace warmup::paged_detail {
void run_avx2(const PagedArgs& a);  // paged_attention_avx2.cpp
}
#endif

namespace warmup {
namespace {

using torch::Tensor;

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument("paged_attention: " + what); }

std::string shape(const Tensor& t) {
  std::string s = "(";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + ")";
}

bool float_dtype(at::ScalarType t) { return t == at::kFloat || t == at::kBFloat16 || t == at::kHalf; }

// The metadata on the host, checked against q and the caches.
struct HostMeta {
  Tensor qsl, seq_lens, block_table;  // int32, contiguous, CPU
  int64_t S = 0, max_blocks = 0, block_size = 0;
  const int32_t* qs() const { return qsl.data_ptr<int32_t>(); }
  const int32_t* lens() const { return seq_lens.data_ptr<int32_t>(); }
  const int32_t* bt() const { return block_table.data_ptr<int32_t>(); }
};

void check_meta_tensor(const Tensor& t, const char* name, at::ScalarType dtype, const Tensor& cache) {
  if (!t.defined()) bad(std::string("meta.") + name + " is undefined");
  if (t.scalar_type() != dtype)
    bad(std::string("meta.") + name + " must be " + c10::toString(dtype) + ", got " + c10::toString(t.scalar_type()));
  if (t.device() != cache.device())
    bad(std::string("meta.") + name + " is on " + t.device().str() + ", the cache on " + cache.device().str());
}

HostMeta validate(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const PagedAttentionMeta& meta) {
  if (!q.defined() || !k_cache.defined() || !v_cache.defined()) bad("q, k_cache and v_cache must be defined");
  if (q.dim() != 3) bad("q must be (N, Hq, D), got " + shape(q));
  if (k_cache.dim() != 3) bad("k_cache must be (num_slots, Hkv, D), got " + shape(k_cache));
  if (!k_cache.sizes().equals(v_cache.sizes()))
    bad("k_cache " + shape(k_cache) + " and v_cache " + shape(v_cache) + " differ in shape");
  int64_t Hq = q.size(1), Hkv = k_cache.size(1), D = q.size(2);
  if (k_cache.size(2) != D) bad("head dim of q (" + std::to_string(D) + ") != the cache's (" + std::to_string(k_cache.size(2)) + ")");
  if (D < 1 || Hkv < 1 || Hq % Hkv != 0)
    bad("Hq (" + std::to_string(Hq) + ") must be a multiple of Hkv (" + std::to_string(Hkv) + ") and D >= 1");
  if (q.scalar_type() != k_cache.scalar_type() || q.scalar_type() != v_cache.scalar_type())
    bad(std::string("q, k_cache, v_cache must share one dtype, got ") + c10::toString(q.scalar_type()) + ", " +
        c10::toString(k_cache.scalar_type()) + ", " + c10::toString(v_cache.scalar_type()));
  if (!float_dtype(q.scalar_type())) bad(std::string("dtype must be float32, bfloat16 or float16, got ") + c10::toString(q.scalar_type()));
  if (q.device() != k_cache.device() || q.device() != v_cache.device())
    bad("q (" + q.device().str() + "), k_cache (" + k_cache.device().str() + "), v_cache (" + v_cache.device().str() +
        ") must be on one device");
  int64_t bs = meta.block_size, num_slots = k_cache.size(0);
  if (bs < 1) bad("meta.block_size must be >= 1, got " + std::to_string(bs));
  if (num_slots % bs != 0)
    bad("num_slots (" + std::to_string(num_slots) + ") is not a multiple of block_size (" + std::to_string(bs) + ")");
  int64_t num_blocks = num_slots / bs;

  check_meta_tensor(meta.query_start_loc, "query_start_loc", at::kInt, k_cache);
  check_meta_tensor(meta.seq_lens, "seq_lens", at::kInt, k_cache);
  check_meta_tensor(meta.block_table, "block_table", at::kInt, k_cache);
  if (meta.seq_lens.dim() != 1) bad("meta.seq_lens must be (S), got " + shape(meta.seq_lens));
  int64_t S = meta.seq_lens.size(0), N = q.size(0);
  if (meta.query_start_loc.dim() != 1 || meta.query_start_loc.size(0) != S + 1)
    bad("meta.query_start_loc must be (S + 1) = (" + std::to_string(S + 1) + "), got " + shape(meta.query_start_loc));
  if (meta.block_table.dim() != 2 || meta.block_table.size(0) != S)
    bad("meta.block_table must be (S, max_blocks) with S = " + std::to_string(S) + ", got " + shape(meta.block_table));
  if (meta.slot_mapping.defined()) {
    check_meta_tensor(meta.slot_mapping, "slot_mapping", at::kLong, k_cache);
    if (meta.slot_mapping.dim() != 1 || meta.slot_mapping.size(0) != N)
      bad("meta.slot_mapping must be (N) = (" + std::to_string(N) + "), got " + shape(meta.slot_mapping));
  }

  HostMeta h;
  h.qsl = meta.query_start_loc.cpu().contiguous();
  h.seq_lens = meta.seq_lens.cpu().contiguous();
  h.block_table = meta.block_table.cpu().contiguous();
  h.S = S;
  h.max_blocks = meta.block_table.size(1);
  h.block_size = bs;
  const int32_t *qs = h.qs(), *lens = h.lens(), *bt = h.bt();
  if (qs[0] != 0) bad("meta.query_start_loc[0] must be 0, got " + std::to_string(qs[0]));
  if (qs[S] != N) bad("meta.query_start_loc[S] must be N = " + std::to_string(N) + ", got " + std::to_string(qs[S]));
  for (int64_t s = 0; s < S; ++s) {
    int64_t ql = int64_t(qs[s + 1]) - qs[s], L = lens[s];
    std::string at_s = " (sequence " + std::to_string(s) + ")";
    if (ql < 1) bad("q_len must be >= 1, got " + std::to_string(ql) + at_s);
    if (ql > L) bad("q_len " + std::to_string(ql) + " > seq_len " + std::to_string(L) + at_s);
    int64_t nb = (L + bs - 1) / bs;
    if (nb > h.max_blocks)
      bad("seq_len " + std::to_string(L) + " needs " + std::to_string(nb) + " blocks, block_table has " +
          std::to_string(h.max_blocks) + at_s);
    for (int64_t b = 0; b < nb; ++b) {
      int32_t id = bt[s * h.max_blocks + b];
      if (id < 0 || id >= num_blocks)
        bad("block_table[" + std::to_string(s) + "][" + std::to_string(b) + "] = " + std::to_string(id) +
            " is out of range [0, " + std::to_string(num_blocks) + ")");
    }
  }
  return h;
}

}  // namespace

void write_kv(torch::Tensor& k_cache, torch::Tensor& v_cache, const torch::Tensor& k, const torch::Tensor& v,
              const torch::Tensor& slot_mapping) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("write_kv: " + what); };
  if (!k_cache.defined() || !v_cache.defined() || !k.defined() || !v.defined() || !slot_mapping.defined())
    fail("all tensors must be defined");
  if (k_cache.dim() != 3 || !k_cache.sizes().equals(v_cache.sizes()))
    fail("k_cache " + shape(k_cache) + " and v_cache " + shape(v_cache) + " must both be (num_slots, Hkv, D)");
  if (k.dim() != 3 || !k.sizes().equals(v.sizes()) || k.size(1) != k_cache.size(1) || k.size(2) != k_cache.size(2))
    fail("k " + shape(k) + " and v " + shape(v) + " must both be (N, Hkv, D) with the cache's Hkv, D " +
         shape(k_cache));
  if (slot_mapping.scalar_type() != at::kLong || slot_mapping.dim() != 1 || slot_mapping.size(0) != k.size(0))
    fail("slot_mapping must be (N) = (" + std::to_string(k.size(0)) + ") int64, got " + shape(slot_mapping) + " " +
         c10::toString(slot_mapping.scalar_type()));
  if (k.scalar_type() != k_cache.scalar_type() || v.scalar_type() != k_cache.scalar_type() ||
      v_cache.scalar_type() != k_cache.scalar_type())
    fail("k, v and the caches must share one dtype");
  if (k.device() != k_cache.device() || v.device() != k_cache.device() || v_cache.device() != k_cache.device() ||
      slot_mapping.device() != k_cache.device())
    fail("k, v, slot_mapping and the caches must be on one device");
  if (k.size(0) == 0) return;
  if (slot_mapping.is_cpu()) {  // elsewhere index_copy_ checks on the device (no host sync here)
    auto [lo, hi] = torch::aminmax(slot_mapping);
    int64_t mn = lo.item<int64_t>(), mxv = hi.item<int64_t>();
    if (mn < 0 || mxv >= k_cache.size(0))
      fail("slot_mapping holds " + std::to_string(mn < 0 ? mn : mxv) + ", out of range [0, " +
           std::to_string(k_cache.size(0)) + ")");
  }
  k_cache.index_copy_(0, slot_mapping, k);
  v_cache.index_copy_(0, slot_mapping, v);
}

torch::Tensor paged_attention_cpu(const torch::Tensor& q, const torch::Tensor& k_cache, const torch::Tensor& v_cache,
                                  const PagedAttentionMeta& meta, double scale) {
  HostMeta m = validate(q, k_cache, v_cache, meta);
  if (!q.is_cpu()) bad("paged_attention_cpu needs CPU tensors, got " + q.device().str());
  if (k_cache.stride(2) != 1 || v_cache.stride(2) != 1) bad("the caches' last dimension must be contiguous");
  Tensor qc = q.contiguous();
  Tensor out = at::empty(q.sizes(), q.options().memory_format(at::MemoryFormat::Contiguous));
  if (q.size(0) == 0) return out;
  using paged_detail::Dtype;
  paged_detail::PagedArgs a{qc.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(), out.data_ptr(),
                            q.scalar_type() == at::kFloat      ? Dtype::f32
                            : q.scalar_type() == at::kBFloat16 ? Dtype::bf16
                                                               : Dtype::f16,
                            q.size(1), k_cache.size(1), q.size(2), k_cache.stride(0), k_cache.stride(1),
                            v_cache.stride(0), v_cache.stride(1), m.S, m.max_blocks, m.block_size,
                            m.qs(), m.lens(), m.bt(), float(scale)};
#if defined(__x86_64__)
  // WARMUP_PAGED_ATTENTION_BASELINE=1 forces the baseline build (tests run both).
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (avx2 && !std::getenv("WARMUP_PAGED_ATTENTION_BASELINE")) {
    paged_detail::run_avx2(a);
    return out;
  }
#endif
  paged_detail::base::run(a);
  return out;
}

torch::Tensor paged_attention_reference(const torch::Tensor& q, const torch::Tensor& k_cache,
                                        const torch::Tensor& v_cache, const PagedAttentionMeta& meta, double scale) {
  HostMeta m = validate(q, k_cache, v_cache, meta);
  const int32_t *qs = m.qs(), *lens = m.lens();
  auto dev = k_cache.device();
  auto bt = m.block_table.to(dev, at::kLong);
  std::vector<Tensor> outs;
  for (int64_t s = 0; s < m.S; ++s) {
    int64_t ql = qs[s + 1] - qs[s], L = lens[s], ctx = L - ql;
    auto pos = torch::arange(L, torch::TensorOptions().dtype(at::kLong).device(dev));
    auto slots = bt[s].index_select(0, pos.div(m.block_size, "floor")) * m.block_size + pos.remainder(m.block_size);
    auto K = k_cache.index_select(0, slots).permute({1, 0, 2}).unsqueeze(0);  // (1, Hkv, L, D)
    auto V = v_cache.index_select(0, slots).permute({1, 0, 2}).unsqueeze(0);
    auto Q = q.narrow(0, qs[s], ql).permute({1, 0, 2}).unsqueeze(0);       // (1, Hq, ql, D)
    auto qpos = torch::arange(ctx, L, pos.options());
    auto mask = pos.unsqueeze(0) <= qpos.unsqueeze(1);                     // (ql, L)
    auto o = at::scaled_dot_product_attention(Q, K, V, mask, 0.0, false, scale, /*enable_gqa=*/true);
    outs.push_back(o.squeeze(0).permute({1, 0, 2}));
  }
  if (outs.empty()) return at::empty(q.sizes(), q.options());
  return torch::cat(outs, 0);
}

torch::Tensor paged_attention(const torch::Tensor& q, const torch::Tensor& k_cache, const torch::Tensor& v_cache,
                              const PagedAttentionMeta& meta, double scale) {
  if (q.defined() && q.is_cpu()) return paged_attention_cpu(q, k_cache, v_cache, meta, scale);
  return paged_attention_reference(q, k_cache, v_cache, meta, scale);
}

}  // namespace warmup
