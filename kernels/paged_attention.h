// Attention over a paged KV cache, read in place (no dense copy of any sequence's history).
//
// One call serves a flat batch of N new tokens from S sequences: prefill chunks (many tokens of
// one sequence), decode tokens (one each) and prefill-with-cache (a chunk after cached positions,
// e.g. a prefix-cache hit or the second chunk of a long prompt), mixed in any order. The layout is
// vLLM's FlashAttention metadata (vllm/v1/attention/backends/flash_attn.py): query_start_loc
// (cu_seqlens_q), seq_lens, block_table, slot_mapping.
//
// Semantics: sequence s owns new tokens q[query_start_loc[s] .. query_start_loc[s+1]) (q_len_s of
// them); after this step it has seq_lens[s] positions in the cache, the new ones last. New token j
// (0-based) of sequence s sits at position p = seq_lens[s] - q_len_s + j and attends to the cache
// positions 0..p (causal), where cache position t lives in slot
// block_table[s][t / block_size] * block_size + t % block_size. The caller writes the new tokens'
// keys/values into the cache (write_kv) before calling paged_attention. GQA: query head h reads KV
// head h / (Hq / Hkv).
//
// Implementations: `paged_attention_cpu` (kernels/cpu/paged_attention.cpp: OpenMP over sequences x
// KV heads x query tiles, vectorised, online softmax in fp32), `paged_attention_reference` (gathers
// each sequence's history and runs scaled_dot_product_attention: the oracle in tests and, until the
// CUDA kernels of the next issue, the path on other devices). `paged_attention` dispatches.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace warmup {

struct PagedAttentionMeta {
  torch::Tensor query_start_loc;  // (S + 1) int32, on the cache's device: cu_seqlens_q, [0] = 0, [S] = N
  torch::Tensor seq_lens;         // (S) int32: positions in the cache after this step (>= q_len_s >= 1)
  torch::Tensor block_table;      // (S, max_blocks) int32: block ids; entries past a sequence's blocks unused
  torch::Tensor slot_mapping;     // (N) int64: cache slot of each new token
  int64_t block_size = 16;
  int64_t max_query_len = 0;      // max over s of q_len_s (host)
  int64_t max_seq_len = 0;        // max over s of seq_lens[s] (host)
  int64_t num_seqs() const { return seq_lens.size(0); }
};

// k_cache/v_cache[slot_mapping[i]] = k/v[i]. k, v: (N, Hkv, D); caches (num_slots, Hkv, D), where
// num_slots = num_blocks * block_size; same dtype.
void write_kv(torch::Tensor& k_cache, torch::Tensor& v_cache, const torch::Tensor& k, const torch::Tensor& v,
              const torch::Tensor& slot_mapping);

// q (N, Hq, D); k_cache, v_cache (num_slots, Hkv, D), Hq % Hkv == 0; all one dtype (fp32, bf16 or
// fp16) and device. Returns (N, Hq, D) in q's dtype: softmax(scale * q k^T, causal as above) v.
// Throws std::invalid_argument on inconsistent shapes, dtypes or devices.
torch::Tensor paged_attention(const torch::Tensor& q, const torch::Tensor& k_cache, const torch::Tensor& v_cache,
                              const PagedAttentionMeta& meta, double scale);
torch::Tensor paged_attention_cpu(const torch::Tensor& q, const torch::Tensor& k_cache, const torch::Tensor& v_cache,
                                  const PagedAttentionMeta& meta, double scale);
torch::Tensor paged_attention_reference(const torch::Tensor& q, const torch::Tensor& k_cache,
                                        const torch::Tensor& v_cache, const PagedAttentionMeta& meta, double scale);

}  // namespace warmup
