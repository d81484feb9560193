// Fused CPU kernels for the transformer's elementwise work: RMSNorm and the rotary embedding,
// forward and backward, each one pass over memory instead of the 5-10 ATen ops (and
// their saved intermediates) of the composite form. On CPU tensors these are what the model runs;
// the composite forms in model/transformer.cpp stay as the reference (and the path on other
// devices). Numerics: statistics and products in fp32, one rounding to the output dtype; in fp32 the
// results equal the composite forms up to summation order (~1e-7 relative).
#pragma once

#include <torch/torch.h>

namespace warmup::kernels {

// weight * (x * rsqrt(mean(x^2, -1) + eps)).to(x.dtype) over the last dimension, the output in the
// promoted dtype of x and weight (as transformers' Qwen2RMSNorm). Differentiable in x and weight.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);

// x * cos + rotate_half(x) * sin for x (B, T, H, D) and cos/sin (B, T, D) (fp32), output in x's
// dtype. Differentiable in x.
torch::Tensor rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

}  // namespace warmup::kernels
