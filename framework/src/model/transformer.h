// Decoder-only transformer in LibTorch for Qwen2 / Llama / Qwen3 checkpoints: RMSNorm, RoPE
// (default, linear, llama3 scaling), GQA attention through scaled_dot_product_attention, SwiGLU
// MLP. Module and parameter names equal the Hugging Face names ("model.layers.0.self_attn.q_proj
// .weight"), so checkpoints map one to one.
//
// Not here: KV cache and sampling (the engine), weight I/O (checkpoint.h).
#pragma once

#include <torch/torch.h>

#include <array>

#include "model/config.h"
#include "paged_attention.h"

namespace warmup {

struct RMSNormImpl : torch::nn::Module {
  RMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);  // statistics in fp32, as transformers
  torch::Tensor weight;
  double eps;
};
TORCH_MODULE(RMSNorm);

struct RotaryEmbedding {
  explicit RotaryEmbedding(const ModelConfig& c);
  // cos, sin for positions (B, T): each (B, T, head_dim), fp32.
  std::pair<torch::Tensor, torch::Tensor> operator()(const torch::Tensor& positions) const;
  torch::Tensor inv_freq;  // (head_dim / 2), fp32
};

// Key/value cache of a paged forward: per layer one pool of slots, and the batch's layout (which
// new token goes to which slot, which blocks each sequence reads): kernels/paged_attention.h.
struct PagedKV {
  std::vector<torch::Tensor>* k_cache = nullptr;  // per layer (num_slots, Hkv, D)
  std::vector<torch::Tensor>* v_cache = nullptr;
  PagedAttentionMeta meta;
};

// One LoRA adapter of a linear layer (added by model/lora.h; empty by default). A (r, in) and B
// (out, r) are registered inside the layer as lora_A and lora_B, so the parameters are named as
// PEFT names them ("...q_proj.lora_A.weight").
struct LoraAdapter {
  torch::nn::Linear A{nullptr}, B{nullptr};
  double scale = 0, dropout = 0;
  bool on() const { return !A.is_empty(); }
  // y, the layer's output for x (..., in), plus scale * B(A(dropout(x))), computed in the
  // adapters' dtype and returned in y's (PEFT's LoraLayer.forward); dropout only when training.
  torch::Tensor operator()(const torch::Tensor& y, const torch::Tensor& x, bool training) const {
    if (!on()) return y;
    auto h = x.to(A->weight.scalar_type());
    if (training && dropout > 0) h = torch::dropout(h, dropout, true);
    auto delta = torch::nn::functional::linear(torch::nn::functional::linear(h, A->weight), B->weight) * scale;
    return (y + delta).to(y.scalar_type());  // added in the wider dtype, rounded once (PEFT)
  }
};

struct AttentionImpl : torch::nn::Module {
  explicit AttentionImpl(const ModelConfig& c);
  // x (B, T, H); cos/sin (B, T, D); mask: additive (B, 1, T, T) or undefined for plain causal.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask);
  // Paged: x (1, N, H) new tokens of several sequences, flat; cos/sin (1, N, D). Writes their
  // keys/values into layer `layer` of the cache and attends over it in place.
  torch::Tensor forward_paged(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                              PagedKV& kv, int64_t layer);
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  std::array<LoraAdapter, 4> lora;  // of q_proj, k_proj, v_proj, o_proj
  RMSNorm q_norm{nullptr}, k_norm{nullptr};  // Qwen3 only
  int64_t heads, kv_heads, head_dim;
};
TORCH_MODULE(Attention);

struct MLPImpl : torch::nn::Module {
  explicit MLPImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x);        // down(silu(gate(x)) * up(x))
  torch::Tensor forward_paged(const torch::Tensor& x);  // the same for the engine's flat batch x (1, N, H)
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
  std::array<LoraAdapter, 3> lora;  // of gate_proj, up_proj, down_proj
};
TORCH_MODULE(MLP);

struct DecoderLayerImpl : torch::nn::Module {
  explicit DecoderLayerImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask);
  torch::Tensor forward_paged(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                              PagedKV& kv, int64_t layer);
  Attention self_attn{nullptr};
  MLP mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(DecoderLayer);

struct DecoderImpl : torch::nn::Module {  // HF's "model" submodule
  explicit DecoderImpl(const ModelConfig& c);
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers;
  RMSNorm norm{nullptr};
};
TORCH_MODULE(Decoder);

struct CausalLMImpl : torch::nn::Module {
  explicit CausalLMImpl(const ModelConfig& c);

  // Final hidden states (B, T, H). attention_mask (B, T) of 1/0 marks real tokens (padding on
  // either side); position_ids default to cumsum(mask) - 1 (arange without a mask). Values above
  // 1 mean packed rows: each sequence has its own id (1, 2, ...; 0 = padding), attends only to
  // itself, and its positions restart at 0. Outputs at padding positions are unspecified.
  torch::Tensor hidden_states(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                              const torch::Tensor& position_ids = {});
  // Logits (B, T, V) in the model dtype.
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                        const torch::Tensor& position_ids = {});
  // log p(targets[b, t] | tokens <= t) as fp32 (B, T), computed `chunk` rows at a time with the
  // (rows, V) logits recomputed in backward instead of kept: memory O(chunk * V), not O(B*T*V).
  torch::Tensor token_logprobs(const torch::Tensor& input_ids, const torch::Tensor& targets,
                               const torch::Tensor& attention_mask = {}, const torch::Tensor& position_ids = {},
                               int64_t chunk = 1024, double temperature = 1.0);
  // sum(weights * log p(targets)) as an fp32 scalar, for losses that are linear in the token
  // log-probs (SFT's mean NLL; GRPO with precomputed per-token coefficients). Its gradient is
  // computed during this forward pass, so each logits chunk is computed once and dropped. Weight 0
  // masks a position; without `logprobs` and `entropy`, the head runs on weighted positions only
  // (prompt and pad tokens skip the vocabulary-wide GEMMs). `logprobs`, if given, receives the
  // detached per-token values (B, T); `entropy` the entropy of each position's distribution. Both
  // methods divide the logits by `temperature` first (RL: log-probs of the sampling distribution).
  torch::Tensor weighted_logprob_sum(const torch::Tensor& input_ids, const torch::Tensor& targets,
                                     const torch::Tensor& weights, const torch::Tensor& attention_mask = {},
                                     const torch::Tensor& position_ids = {}, int64_t chunk = 1024,
                                     torch::Tensor* logprobs = nullptr, double temperature = 1.0,
                                     torch::Tensor* entropy = nullptr);
  torch::Tensor output_weight();  // lm_head.weight, or the embedding when tied
  // Paged step (the engine's forward): N new tokens of several sequences, flat: input_ids and
  // positions (N) int64; kv says where their keys/values go and what each sequence attends to.
  // Returns fp32 logits (R, V) of the rows `logits_rows` (R) int64 only (the LM head runs on those:
  // a prefill chunk needs its last token's logits, not all of them).
  torch::Tensor forward_paged(const torch::Tensor& input_ids, const torch::Tensor& positions, PagedKV& kv,
                              const torch::Tensor& logits_rows);

  // Recompute each layer in backward instead of storing its activations.
  bool activation_checkpointing = false;

  ModelConfig config;
  RotaryEmbedding rotary;
  Decoder model{nullptr};
  torch::nn::Linear lm_head{nullptr};  // null when tie_word_embeddings
};
TORCH_MODULE(CausalLM);

// The names and shapes of CausalLM(config)'s parameters, computed without building it: what a
// checkpoint is checked against before any parameter is allocated.
std::vector<std::pair<std::string, std::vector<int64_t>>> parameter_shapes(const ModelConfig& config);

// Additive attention mask (B, 1, T, T) in `dtype` from a (B, T) 1/0 padding mask, causal.
torch::Tensor causal_padding_mask(const torch::Tensor& attention_mask, torch::ScalarType dtype);
// Packed rows: (B, T) sequence ids (1, 2, ..., 0 = padding) -> additive causal mask (B, 1, T, T)
// that keeps attention inside each sequence, and positions restarting at 0 for each sequence.
torch::Tensor packed_causal_mask(const torch::Tensor& documents, torch::ScalarType dtype);
torch::Tensor packed_positions(const torch::Tensor& documents);

}  // namespace warmup
