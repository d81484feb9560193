// Log-probabilities of targets under an LM head without keeping the (rows, V) logits: the head
// (h W^T, V up to 151,936) is computed chunk by chunk and each chunk's logits die with it. Plain
// ATen ops, so it runs on every device; autograd functions, so SFT, GRPO and distillation train
// through it. Used by model/transformer.cpp (CausalLM::weighted_logprob_sum, token_logprobs).
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace warmup::kernels {

// log_softmax(h W^T)[r, targets[r]] for h (rows, H), w (V, H), targets (rows) int64, `chunk` rows
// at a time; returns (rows) fp32. Differentiable in h and w (the backward recomputes each chunk's
// logits; no (rows, V) tensor stays alive between chunks).
torch::Tensor chunked_logprob(const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& targets,
                              int64_t chunk);

// sum_r weights[r] * log_softmax(h W^T)[r, targets[r]] as a 0-dim fp32 tensor. The weights are
// known before the pass, so the gradient w.r.t. h and w is computed during the forward pass from the
// same chunk's softmax (dlogits = weights * (onehot - softmax)) and saved: each chunk's logits are
// computed once (the GEMM count of materialising them, none of their memory). weights (rows), any
// float dtype. logprobs_out / entropy_out: (rows) fp32 tensors that receive each row's log-prob and
// the entropy -sum p log p of its distribution; empty tensors (numel 0) for none. Under autocast
// the gradient GEMMs run in the autocast dtype, accumulated in fp32.
torch::Tensor fused_weighted_logprob(const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& targets,
                                     const torch::Tensor& weights, int64_t chunk, const torch::Tensor& logprobs_out,
                                     const torch::Tensor& entropy_out);

}  // namespace warmup::kernels
