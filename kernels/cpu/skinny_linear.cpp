// See skinny_linear.h: the checks and the dispatch to the AVX2 build of cpu/skinny_linear_kernel.h
// where the CPU has AVX2 + FMA + F16C, else the baseline build below
// (WARMUP_SKINNY_LINEAR_BASELINE=1 forces it; the tests run both).
#include "skinny_linear.h"

#include <cstdlib>
#include <stdexcept>
#include <string>

#define WARMUP_KERNEL_ISA base
#include "cpu/skinny_linear_kernel.h"

#if defined(__x86_64__)
namespace warmup::skinny_detail {
void run_avx2(const SkinnyArgs& a);  // skinny_linear_avx2.cpp
}
#endif

namespace warmup {
namespace {

const char* reject(const torch::Tensor& x, const torch::Tensor& w, int64_t max_rows) {
  if (!x.defined() || !w.defined()) return "undefined tensor";
  if (!x.is_cpu() || !w.is_cpu()) return "tensors must be on the CPU";
  if (x.dim() != 2 || w.dim() != 2) return "x must be (M, K) and weight (N, K)";
  if (x.scalar_type() != at::kFloat) return "x must be fp32";
  auto wt = w.scalar_type();
  if (wt != at::kFloat && wt != at::kBFloat16 && wt != at::kHalf) return "weight must be fp32, bf16 or fp16";
  if (x.size(1) != w.size(1)) return "x and weight have different K";
  if (x.size(1) % 8 != 0) return "K must be a multiple of 8";
  if (w.size(1) > 1 && w.stride(1) != 1) return "weight rows must be contiguous along K";
  if (x.size(0) > max_rows) return "too many rows";
  if (torch::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad())) return "no autograd";
  return nullptr;
}

}  // namespace

bool skinny_linear_applies(const torch::Tensor& x, const torch::Tensor& weight, int64_t max_rows) {
  return reject(x, weight, max_rows) == nullptr;
}

torch::Tensor skinny_linear(const torch::Tensor& x, const torch::Tensor& weight) {
  if (const char* why = reject(x, weight, INT64_MAX))
    throw std::invalid_argument(std::string("skinny_linear: ") + why + " (x " + c10::str(x.sizes()) + " " +
                                c10::str(x.scalar_type()) + ", weight " + c10::str(weight.sizes()) + " " +
                                c10::str(weight.scalar_type()) + ")");
  torch::Tensor xc = x.stride(1) == 1 ? x : x.contiguous();
  const int64_t M = x.size(0), N = weight.size(0), K = x.size(1);
  torch::Tensor out = torch::empty({M, N}, x.options());
  if (M == 0 || N == 0) return out;
  if (K == 0) return out.zero_();
  using skinny_detail::Dtype;
  auto wt = weight.scalar_type();
  skinny_detail::SkinnyArgs a{xc.data_ptr<float>(), weight.data_ptr(), out.data_ptr<float>(),
                              wt == at::kFloat ? Dtype::f32 : wt == at::kBFloat16 ? Dtype::bf16 : Dtype::f16,
                              M, N, K, xc.stride(0), weight.stride(0)};
#if defined(__x86_64__)
  static const bool avx2 =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  if (avx2 && !std::getenv("WARMUP_SKINNY_LINEAR_BASELINE")) {
    skinny_detail::run_avx2(a);
    return out;
  }
#endif
  skinny_detail::base::run(a);
  return out;
}

}  // namespace warmup
