// skinny_linear (kernels/skinny_linear.h) against torch::linear: every micro-kernel edge (rows of x
// and of W not multiples of the 4 x 3 tile), fp32/bf16/fp16 weights, strided weight rows (a
// slice of a larger matrix), both builds (AVX2 and baseline); the refusals; and a timing case.
#include "torch_doctest.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "skinny_linear.h"

using warmup::skinny_linear;
using warmup::skinny_linear_applies;

namespace {

void check_all(const char* build) {
  torch::manual_seed(5);
  for (auto wt : {torch::kFloat32, torch::kBFloat16, torch::kFloat16})
    for (int64_t M : {1, 2, 3, 4, 5, 7, 8, 13, 32, 64})
      for (int64_t N : {1, 2, 3, 4, 47, 48, 49, 100, 1031})
        for (int64_t K : {8, 64, 136}) {
          INFO(build, " weight ", c10::toString(wt), " M=", M, " N=", N, " K=", K);
          auto x = torch::randn({M, K});
          auto w = torch::randn({N, K}).to(wt);
          auto ref = torch::linear(x, w.to(torch::kFloat32));
          auto got = skinny_linear(x, w);
          REQUIRE(got.sizes() == ref.sizes());
          CHECK(torch::allclose(got, ref, 1e-5, 1e-4));
        }
}

}  // namespace

TEST_CASE("skinny_linear equals torch::linear over tile edges and weight dtypes") { check_all("dispatch"); }

TEST_CASE("skinny_linear: the baseline (non-AVX2) build equals torch::linear too") {
  setenv("WARMUP_SKINNY_LINEAR_BASELINE", "1", 1);
  check_all("baseline");
  unsetenv("WARMUP_SKINNY_LINEAR_BASELINE");
}

TEST_CASE("skinny_linear: strided weight rows and x rows (slices of larger matrices)") {
  torch::manual_seed(6);
  auto big = torch::randn({300, 80});
  auto w = big.slice(0, 10, 250).slice(1, 8, 72);  // (240, 64), row stride 80
  auto xb = torch::randn({9, 96});
  auto x = xb.slice(1, 16, 80);                     // (9, 64), row stride 96
  REQUIRE(skinny_linear_applies(x, w));
  CHECK(torch::allclose(skinny_linear(x, w), torch::linear(x, w), 1e-5, 1e-4));
}

TEST_CASE("skinny_linear: refusals") {
  auto x = torch::randn({4, 16}), w = torch::randn({10, 16});
  CHECK(skinny_linear_applies(x, w));
  CHECK_FALSE(skinny_linear_applies(torch::randn({4, 12}), torch::randn({10, 12})));  // K % 8
  CHECK_FALSE(skinny_linear_applies(x, torch::randn({10, 24})));                      // K differs
  CHECK_FALSE(skinny_linear_applies(x.to(torch::kBFloat16), w));                      // x not fp32
  CHECK_FALSE(skinny_linear_applies(x, w.to(torch::kInt32)));
  CHECK_FALSE(skinny_linear_applies(torch::randn({33, 16}), w));                      // too many rows by default
  CHECK(skinny_linear_applies(torch::randn({33, 16}), w, 128));
  CHECK_FALSE(skinny_linear_applies(x, torch::randn({16, 10}).t()));                  // K not contiguous
  CHECK_FALSE(skinny_linear_applies(x, w.clone().requires_grad_()));
  {
    torch::NoGradGuard ng;
    CHECK(skinny_linear_applies(x, w.clone().requires_grad_()));
  }
  CHECK_THROWS_AS(skinny_linear(torch::randn({4, 12}), torch::randn({10, 12})), std::invalid_argument);
  CHECK(skinny_linear(torch::randn({0, 16}), w).sizes() == torch::IntArrayRef({0, 10}));
}

// Timings against torch::linear (MKL), median of 5, wall ms, for the LM heads of the benchmarks:
// Qwen's 151,936 x 512 (bench/long_context.py) and the K&K model's 1,024 x 256, and a layer's
// 704 x 256. Run with -tc='bench: skinny linear' -ns.
TEST_CASE("bench: skinny linear" * doctest::skip()) {
  auto time = [](auto&& f) {
    f();
    std::vector<double> wall;
    for (int i = 0; i < 5; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      f();
      wall.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(wall.begin(), wall.end());
    return wall[2];
  };
  torch::NoGradGuard ng;
  std::printf("threads: %d (wall ms: skinny / torch::linear)\n", at::get_num_threads());
  for (auto [N, K] : std::vector<std::pair<int64_t, int64_t>>{{151936, 512}, {1024, 256}, {704, 256}, {256, 704}, {128, 256}, {2816, 512}})
    for (auto wt : {torch::kFloat32, torch::kBFloat16}) {
      auto w = torch::randn({N, K}).to(wt);
      for (int64_t M : {1, 8, 32, 64, 128}) {
        auto x = torch::randn({M, K});
        double a = time([&] { skinny_linear(x, w); });
        double b = wt == torch::kFloat32 ? time([&] { torch::linear(x, w); })
                                         : time([&] { torch::linear(x.to(wt), w); });
        std::printf("N %ld K %ld %s M %3ld: %8.2f / %8.2f\n", long(N), long(K), c10::toString(wt), long(M), a, b);
      }
    }
}
