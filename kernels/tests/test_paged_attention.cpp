// Paged attention (kernels/paged_attention.h): the CPU kernel that reads the cache in place equals
// the reference (gather + scaled_dot_product_attention) over shuffled block tables, GQA ratios,
// head dims, block sizes and batches of decode, prefill and prefill-with-cache tokens; both equal
// dense causal SDPA on contiguous tensors; write_kv and the input checks.
#include "torch_doctest.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <ctime>
#include <stdexcept>
#include <string>
#include <vector>

#include "paged_attention.h"

using namespace warmup;

namespace {

struct SeqSpec {
  int64_t q_len, seq_len;
};

struct Batch {
  torch::Tensor q, k_cache, v_cache;
  PagedAttentionMeta meta;
  std::vector<std::vector<int64_t>> slots;  // cache slot of each position, per sequence
};

// Sequences whose blocks are a random permutation of the pool (plus spare blocks), the whole
// cache filled with noise first so a wrong slot shows. History rows and the new tokens' rows are
// written with write_kv; meta.slot_mapping holds the new tokens' slots.
Batch make_batch(const std::vector<SeqSpec>& seqs, int64_t Hq, int64_t Hkv, int64_t D, int64_t bs,
                 torch::ScalarType dtype, uint64_t seed) {
  torch::manual_seed(seed);
  Batch b;
  int64_t S = int64_t(seqs.size()), need = 0, max_blocks = 1, N = 0;
  for (auto& s : seqs) {
    int64_t nb = (s.seq_len + bs - 1) / bs;
    need += nb, max_blocks = std::max(max_blocks, nb), N += s.q_len;
  }
  int64_t num_blocks = need + 3;
  b.k_cache = torch::randn({num_blocks * bs, Hkv, D}).to(dtype);
  b.v_cache = torch::randn({num_blocks * bs, Hkv, D}).to(dtype);
  auto perm = torch::randperm(num_blocks, torch::kInt64);
  auto bt = torch::full({S, max_blocks}, 0, torch::kInt32);
  std::vector<int32_t> qsl{0}, lens;
  std::vector<int64_t> new_slots, hist_slots;
  int64_t next = 0;
  for (int64_t s = 0; s < S; ++s) {
    int64_t L = seqs[s].seq_len, ql = seqs[s].q_len, nb = (L + bs - 1) / bs;
    for (int64_t i = 0; i < nb; ++i) bt.index_put_({s, i}, int32_t(perm[next++].item<int64_t>()));
    // unused entries: a valid but wrong block, so reading past the sequence would show
    for (int64_t i = nb; i < max_blocks; ++i) bt.index_put_({s, i}, int32_t(perm[num_blocks - 1].item<int64_t>()));
    std::vector<int64_t> sl;
    for (int64_t t = 0; t < L; ++t) sl.push_back(bt[s][t / bs].item<int64_t>() * bs + t % bs);
    for (int64_t t = 0; t < L; ++t) (t < L - ql ? hist_slots : new_slots).push_back(sl[t]);
    b.slots.push_back(sl);
    qsl.push_back(qsl.back() + int32_t(ql));
    lens.push_back(int32_t(L));
  }
  auto write = [&](const std::vector<int64_t>& sl) {
    if (sl.empty()) return;
    auto m = torch::tensor(sl, torch::kInt64);
    auto k = torch::randn({m.size(0), Hkv, D}).to(dtype), v = torch::randn({m.size(0), Hkv, D}).to(dtype);
    write_kv(b.k_cache, b.v_cache, k, v, m);
  };
  write(hist_slots);
  write(new_slots);
  b.q = torch::randn({N, Hq, D}).to(dtype);
  b.meta.query_start_loc = torch::tensor(qsl, torch::kInt32);
  b.meta.seq_lens = torch::tensor(lens, torch::kInt32);
  b.meta.block_table = bt;
  b.meta.slot_mapping = torch::tensor(new_slots, torch::kInt64);
  b.meta.block_size = bs;
  for (auto& s : seqs) b.meta.max_query_len = std::max(b.meta.max_query_len, s.q_len);
  for (auto& s : seqs) b.meta.max_seq_len = std::max(b.meta.max_seq_len, s.seq_len);
  return b;
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat32) - b.to(torch::kFloat32)).abs().max().item<double>();
}

// max over elements of |a - b| - rtol |b|: <= atol is allclose(a, b, rtol, atol). Half-precision
// outputs are compared with rtol = atol = 1e-2: two fp32-accumulating implementations may round
// an output to neighbouring values, one ulp apart (2^-8 relative for bf16, 0.0156 at |x| in [2, 4)).
double excess(const torch::Tensor& a, const torch::Tensor& b, double rtol) {
  auto af = a.to(torch::kFloat32), bf = b.to(torch::kFloat32);
  return ((af - bf).abs() - rtol * bf.abs()).max().item<double>();
}

std::string dname(torch::ScalarType t) { return c10::toString(t); }

}  // namespace

TEST_CASE("paged attention: the CPU kernel equals the reference over shuffled block tables") {
  struct Cfg {
    std::string name;
    std::vector<SeqSpec> seqs;
  };
  std::vector<Cfg> batches = {
      {"decode", {{1, 1}, {1, 7}, {1, 16}, {1, 33}, {1, 130}, {1, 301}}},
      {"prefill", {{1, 1}, {17, 17}, {64, 64}, {100, 100}}},
      {"prefill with cache", {{5, 40}, {33, 97}, {16, 32}, {1, 2}}},
      {"mixed", {{1, 50}, {23, 23}, {1, 1}, {40, 81}, {1, 200}, {7, 7}, {3, 64}}},
  };
  struct Shape {
    int64_t Hq, Hkv, D, bs;
  };
  std::vector<Shape> shapes = {{4, 4, 64, 16}, {4, 2, 8, 1},  {8, 2, 64, 32}, {8, 1, 128, 16},
                               {6, 3, 16, 1},  {8, 8, 128, 32}, {4, 1, 12, 16}};
  uint64_t seed = 1;
  for (auto dtype : {torch::kFloat32, torch::kBFloat16, torch::kFloat16}) {
    double tol = dtype == torch::kFloat32 ? 1e-5 : 1e-2;
    for (auto& sh : shapes)
      for (auto& c : batches) {
        if (dtype == torch::kFloat16 && sh.D != 64) continue;
        INFO(dname(dtype), " ", c.name, " Hq=", sh.Hq, " Hkv=", sh.Hkv, " D=", sh.D, " block_size=", sh.bs);
        Batch b = make_batch(c.seqs, sh.Hq, sh.Hkv, sh.D, sh.bs, dtype, seed++);
        double scale = 1.0 / std::sqrt(double(sh.D));
        auto ref = paged_attention_reference(b.q, b.k_cache, b.v_cache, b.meta, scale);
        auto got = paged_attention_cpu(b.q, b.k_cache, b.v_cache, b.meta, scale);
        CHECK((got.scalar_type() == dtype));
        CHECK(got.sizes() == b.q.sizes());
        CHECK(excess(got, ref, dtype == torch::kFloat32 ? 0.0 : 1e-2) <= tol);
        if (dtype != torch::kFloat32) {  // against fp32 attention of the same (rounded) inputs
          auto ref32 = paged_attention_reference(b.q.to(torch::kFloat32), b.k_cache.to(torch::kFloat32),
                                                 b.v_cache.to(torch::kFloat32), b.meta, scale);
          CHECK(excess(got, ref32, 1.0 / 256) <= 1e-4);
        }
      }
  }
}

TEST_CASE("paged attention: the baseline (non-AVX2) build of the kernel equals the reference too") {
  setenv("WARMUP_PAGED_ATTENTION_BASELINE", "1", 1);
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    INFO(dname(dtype));
    double tol = dtype == torch::kFloat32 ? 1e-5 : 1e-2;
    Batch b = make_batch({{1, 50}, {23, 23}, {1, 1}, {40, 81}, {1, 200}, {7, 7}, {3, 64}}, 8, 2, 64, 16, dtype, 11);
    auto ref = paged_attention_reference(b.q, b.k_cache, b.v_cache, b.meta, 0.125);
    auto got = paged_attention_cpu(b.q, b.k_cache, b.v_cache, b.meta, 0.125);
    CHECK(excess(got, ref, dtype == torch::kFloat32 ? 0.0 : 1e-2) <= tol);
    Batch c = make_batch({{5, 40}, {1, 9}}, 6, 3, 12, 1, dtype, 12);  // D not a multiple of the vector width
    CHECK(excess(paged_attention_cpu(c.q, c.k_cache, c.v_cache, c.meta, 0.3),
                 paged_attention_reference(c.q, c.k_cache, c.v_cache, c.meta, 0.3),
                 dtype == torch::kFloat32 ? 0.0 : 1e-2) <= tol);
  }
  unsetenv("WARMUP_PAGED_ATTENTION_BASELINE");
}

TEST_CASE("paged attention: long sequences (2048 prefill, 2048 decode, chunk after 1500 cached)") {
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    INFO(dname(dtype));
    double tol = dtype == torch::kFloat32 ? 1e-5 : 1e-2;
    Batch b = make_batch({{2048, 2048}, {1, 2048}, {548, 2048}, {1, 1500}}, 8, 2, 64, 16, dtype, 7);
    auto ref = paged_attention_reference(b.q, b.k_cache, b.v_cache, b.meta, 0.125);
    auto got = paged_attention(b.q, b.k_cache, b.v_cache, b.meta, 0.125);
    CHECK(excess(got, ref, dtype == torch::kFloat32 ? 0.0 : 1e-2) <= tol);
  }
}

TEST_CASE("paged attention: kernel and reference equal dense causal SDPA on contiguous tensors") {
  torch::manual_seed(3);
  int64_t L = 77, Hq = 8, Hkv = 2, D = 64, bs = 16;
  auto q = torch::randn({L, Hq, D}), k = torch::randn({L, Hkv, D}), v = torch::randn({L, Hkv, D});
  auto dense = at::scaled_dot_product_attention(q.permute({1, 0, 2}).unsqueeze(0), k.permute({1, 0, 2}).unsqueeze(0),
                                                v.permute({1, 0, 2}).unsqueeze(0), {}, 0.0, /*is_causal=*/true,
                                                std::nullopt, /*enable_gqa=*/true)
                   .squeeze(0)
                   .permute({1, 0, 2});
  int64_t num_blocks = 9;  // 5 needed, spread over a shuffled pool
  auto kc = torch::randn({num_blocks * bs, Hkv, D}), vc = torch::randn({num_blocks * bs, Hkv, D});
  auto bt = torch::tensor(std::vector<int32_t>{7, 2, 5, 0, 8}, torch::kInt32).view({1, 5});
  std::vector<int64_t> sl;
  for (int64_t t = 0; t < L; ++t) sl.push_back(bt[0][t / bs].item<int64_t>() * bs + t % bs);
  PagedAttentionMeta meta;
  meta.query_start_loc = torch::tensor(std::vector<int32_t>{0, int32_t(L)}, torch::kInt32);
  meta.seq_lens = torch::tensor(std::vector<int32_t>{int32_t(L)}, torch::kInt32);
  meta.block_table = bt;
  meta.slot_mapping = torch::tensor(sl, torch::kInt64);
  meta.block_size = bs, meta.max_query_len = L, meta.max_seq_len = L;
  write_kv(kc, vc, k, v, meta.slot_mapping);
  double scale = 1.0 / 8.0;
  CHECK(max_diff(paged_attention_cpu(q, kc, vc, meta, scale), dense) <= 1e-5);
  CHECK(max_diff(paged_attention_reference(q, kc, vc, meta, scale), dense) <= 1e-5);
  // a non-contiguous q (a view of a fused projection) gives the same result
  auto qkv = torch::cat({q, torch::randn({L, 4, D})}, 1);
  CHECK(max_diff(paged_attention_cpu(qkv.narrow(1, 0, Hq), kc, vc, meta, scale), dense) <= 1e-5);
}

TEST_CASE("write_kv puts each row in the slot slot_mapping names and touches no other") {
  torch::manual_seed(5);
  auto kc = torch::randn({64, 2, 8}), vc = torch::randn({64, 2, 8});
  auto k0 = kc.clone(), v0 = vc.clone();
  auto slots = torch::randperm(64, torch::kInt64).narrow(0, 0, 10);
  auto k = torch::randn({10, 2, 8}), v = torch::randn({10, 2, 8});
  write_kv(kc, vc, k, v, slots);
  CHECK(torch::equal(kc.index_select(0, slots), k));
  CHECK(torch::equal(vc.index_select(0, slots), v));
  auto untouched = torch::ones({64}, torch::kBool).index_fill_(0, slots, false);
  CHECK(torch::equal(kc.index({untouched}), k0.index({untouched})));
  CHECK(torch::equal(vc.index({untouched}), v0.index({untouched})));

  CHECK_THROWS_AS(write_kv(kc, vc, k, v, torch::full({10}, 64, torch::kInt64)), std::invalid_argument);
  CHECK_THROWS_AS(write_kv(kc, vc, k, v, torch::full({10}, -1, torch::kInt64)), std::invalid_argument);
  CHECK_THROWS_AS(write_kv(kc, vc, k, v, slots.to(torch::kInt32)), std::invalid_argument);
  CHECK_THROWS_AS(write_kv(kc, vc, k, v, slots.narrow(0, 0, 9)), std::invalid_argument);
  CHECK_THROWS_AS(write_kv(kc, vc, k.to(torch::kBFloat16), v, slots), std::invalid_argument);
  CHECK_THROWS_AS(write_kv(kc, vc, torch::randn({10, 2, 4}), v, slots), std::invalid_argument);
}

TEST_CASE("paged attention: invalid inputs throw std::invalid_argument") {
  Batch b = make_batch({{3, 20}, {1, 9}}, 4, 2, 8, 4, torch::kFloat32, 9);
  auto expect_throw = [&](const torch::Tensor& q, const torch::Tensor& kc, const torch::Tensor& vc,
                          const PagedAttentionMeta& m, const char* what) {
    INFO(what);
    CHECK_THROWS_AS(paged_attention_cpu(q, kc, vc, m, 1.0), std::invalid_argument);
    CHECK_THROWS_AS(paged_attention_reference(q, kc, vc, m, 1.0), std::invalid_argument);
  };
  auto &q = b.q, &kc = b.k_cache, &vc = b.v_cache;
  CHECK_NOTHROW(paged_attention_cpu(q, kc, vc, b.meta, 1.0));
  expect_throw(q.view({4, 32}), kc, vc, b.meta, "q not 3-d");
  expect_throw(q.narrow(1, 0, 3), kc, vc, b.meta, "Hq not a multiple of Hkv");
  expect_throw(q.narrow(2, 0, 4), kc, vc, b.meta, "head dims differ");
  expect_throw(q, kc, vc.narrow(0, 0, 8), b.meta, "cache shapes differ");
  expect_throw(q.to(torch::kBFloat16), kc, vc, b.meta, "dtypes differ");
  expect_throw(q.to(torch::kFloat64), kc.to(torch::kFloat64), vc.to(torch::kFloat64), b.meta, "float64");
  expect_throw(q, kc.narrow(0, 0, kc.size(0) - 1), vc.narrow(0, 0, kc.size(0) - 1), b.meta,
               "num_slots not a multiple of block_size");
  auto with = [&](auto&& edit) {
    PagedAttentionMeta m = b.meta;
    m.query_start_loc = m.query_start_loc.clone(), m.seq_lens = m.seq_lens.clone();
    m.block_table = m.block_table.clone();
    edit(m);
    return m;
  };
  int32_t num_blocks = int32_t(kc.size(0) / 4);
  expect_throw(q, kc, vc, with([](auto& m) { m.query_start_loc = m.query_start_loc.to(torch::kInt64); }),
               "query_start_loc int64");
  expect_throw(q, kc, vc, with([](auto& m) { m.seq_lens = m.seq_lens.narrow(0, 0, 1); }), "seq_lens wrong size");
  expect_throw(q, kc, vc, with([](auto& m) { m.block_table = m.block_table.narrow(0, 0, 1); }),
               "block_table wrong rows");
  expect_throw(q, kc, vc, with([](auto& m) { m.block_table = m.block_table.narrow(1, 0, 2); }),
               "block_table too narrow for seq_len 20");
  expect_throw(q, kc, vc, with([](auto& m) { m.slot_mapping = m.slot_mapping.to(torch::kInt32); }),
               "slot_mapping int32");
  expect_throw(q, kc, vc, with([](auto& m) { m.slot_mapping = m.slot_mapping.narrow(0, 0, 3); }),
               "slot_mapping wrong size");
  expect_throw(q, kc, vc, with([](auto& m) { m.seq_lens.index_put_({0}, 2); }), "q_len 3 > seq_len 2");
  expect_throw(q, kc, vc, with([](auto& m) { m.query_start_loc.index_put_({2}, 3); }), "query_start_loc[S] != N");
  expect_throw(q, kc, vc, with([](auto& m) { m.query_start_loc.index_put_({1}, 0); }), "q_len 0");
  expect_throw(q, kc, vc, with([&](auto& m) { m.block_table.index_put_({1, 2}, num_blocks); }),
               "block id == num_blocks");
  expect_throw(q, kc, vc, with([](auto& m) { m.block_table.index_put_({0, 4}, -1); }), "negative block id");
  expect_throw(q, kc, vc, with([](auto& m) { m.block_size = 0; }), "block_size 0");
  // an out-of-range id past a sequence's blocks is never read and is allowed
  CHECK_NOTHROW(paged_attention_cpu(q, kc, vc, with([&](auto& m) { m.block_table.index_put_({1, 4}, -1); }), 1.0));
}

// Timings: the median of 5 calls, wall and process CPU time (the CPU time is what to compare on a
// shared machine). Run with -tc='bench: paged attention' -ns.
TEST_CASE("bench: paged attention" * doctest::skip()) {
  auto time = [](auto&& f) {
    f();
    std::vector<double> wall, cpu;
    for (int i = 0; i < 5; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      std::clock_t c0 = std::clock();
      f();
      cpu.push_back(1000.0 * double(std::clock() - c0) / CLOCKS_PER_SEC);
      wall.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(wall.begin(), wall.end());
    std::sort(cpu.begin(), cpu.end());
    return std::pair{wall[2], cpu[2]};
  };
  std::printf("threads: %d (wall / cpu ms)\n", at::get_num_threads());
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    std::vector<SeqSpec> dec;
    for (int i = 0; i < 32; ++i) dec.push_back({1, 1024 + i * 32});
    Batch b = make_batch(dec, 8, 2, 64, 16, dtype, 1);
    auto kern = time([&] { paged_attention_cpu(b.q, b.k_cache, b.v_cache, b.meta, 0.125); });
    auto ref = time([&] { paged_attention_reference(b.q, b.k_cache, b.v_cache, b.meta, 0.125); });
    std::printf("decode 32 seqs x 1024..2016 ctx, Hq 8, Hkv 2, D 64, %s: kernel %.1f / %.1f, reference %.1f / %.1f\n",
                dname(dtype).c_str(), kern.first, kern.second, ref.first, ref.second);
    std::vector<SeqSpec> small;  // the rollout benchmark's shape: 128 sequences of a 4-layer K&K model
    for (int i = 0; i < 128; ++i) small.push_back({1, 40 + (i * 37) % 500});
    Batch sb = make_batch(small, 4, 2, 64, 16, dtype, 3);
    kern = time([&] { paged_attention_cpu(sb.q, sb.k_cache, sb.v_cache, sb.meta, 0.125); });
    ref = time([&] { paged_attention_reference(sb.q, sb.k_cache, sb.v_cache, sb.meta, 0.125); });
    std::printf("decode 128 seqs x 40..539 ctx, Hq 4, Hkv 2, D 64, %s: kernel %.2f / %.2f, reference %.2f / %.2f\n",
                dname(dtype).c_str(), kern.first, kern.second, ref.first, ref.second);
    Batch p = make_batch({{1024, 1024}, {1024, 1024}, {1024, 1024}, {1024, 1024}}, 8, 2, 64, 16, dtype, 2);
    auto qd = p.q.view({4, 1024, 8, 64}).permute({0, 2, 1, 3});
    auto kd = torch::randn({4, 2, 1024, 64}).to(dtype), vd = torch::randn({4, 2, 1024, 64}).to(dtype);
    kern = time([&] { paged_attention_cpu(p.q, p.k_cache, p.v_cache, p.meta, 0.125); });
    ref = time([&] { paged_attention_reference(p.q, p.k_cache, p.v_cache, p.meta, 0.125); });
    auto dense = time([&] { at::scaled_dot_product_attention(qd, kd, vd, {}, 0.0, true, 0.125, true); });
    std::printf("prefill 4 x 1024, %s: kernel %.1f / %.1f, reference %.1f / %.1f, dense causal SDPA %.1f / %.1f\n",
                dname(dtype).c_str(), kern.first, kern.second, ref.first, ref.second, dense.first, dense.second);
  }
}
