// y = x W^T for few rows of x (decode-sized batches): the LM head of a decode step, where a GEMM
// library's packing of W (one copy of the whole (V, H) weight per call: 311 MB for a 151,936 x 512
// fp32 head) costs as much as the product itself.
//
// Each task takes a block of W's rows, reads each row from memory once and dots it with every row
// of x (x stays in cache): dot-product micro-kernel of 4 x rows x 3 W rows, fp32 accumulation,
// `at::vec` (AVX2+FMA build picked at run time, like the paged-attention kernel). Semantics are
// torch::linear(x, W) without bias; only the summation order differs (fp32 <= 1e-5 relative).
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace warmup {

// Rows of x at or below which skinny_linear beats the GEMM library on the CPU (fp32 weights;
// measured with `warmup_kernel_tests -tc='bench: skinny linear' -ns` and in whole rollouts, see
// kernels/README.md): a layer's projections (N of a few thousand) up to 32, an LM head
// (N = vocabulary) up to 128.
constexpr int64_t kSkinnyLinearMaxRows = 32;
constexpr int64_t kSkinnyLinearHeadMaxRows = 128;

// Whether skinny_linear takes (x, weight): CPU, x (M, K) fp32 with M <= max_rows, weight (N, K)
// fp32/bf16/fp16 with unit stride along K, K a multiple of 8, no gradient needed.
bool skinny_linear_applies(const torch::Tensor& x, const torch::Tensor& weight,
                           int64_t max_rows = kSkinnyLinearMaxRows);

// x (M, K) fp32, weight (N, K) fp32/bf16/fp16 (rows may be strided, K contiguous). Returns (M, N)
// fp32 = x weight^T, accumulated in fp32. Throws std::invalid_argument when skinny_linear_applies
// is false (any M is accepted here; max_rows only advises).
torch::Tensor skinny_linear(const torch::Tensor& x, const torch::Tensor& weight);

}  // namespace warmup
