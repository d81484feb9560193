// The stage's model for plugins that train or sample (SFT, GRPO, model evaluation). Optional part
// of the SDK: including it requires LibTorch (and the torch fingerprint must then match the
// host's). The host implements Policy; a plugin gets it with warmup::policy(ctx).
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "algorithm.h"

namespace warmup {

struct SampleOptions {
  int n = 1;
  double temperature = 1.0;  // 0 = greedy
  double top_p = 1.0;
  int64_t top_k = 0;         // 0 = off
  double min_p = 0.0;
  int64_t max_new_tokens = 256;
  std::vector<std::string> stop;  // removed from the text
  uint64_t seed = 0;              // prompt i uses seed + 1000 * i, sample j adds j
};

// LoRA (Hu et al. 2021, arXiv:2106.09685) as PEFT implements it (peft/tuners/lora/layer.py,
// PEFT 0.21): each targeted linear layer y = W x + b gains y += scale * B(A(dropout(x))), A (r, in)
// kaiming-uniform, B (out, r) zero, scale = lora_alpha / r (lora_alpha / sqrt(r) with use_rslora);
// the adapters are float32 (PEFT's autocast_adapter_dtype) and the base weights are frozen.
// Option names are TRL's ModelConfig's.
struct LoraOptions {
  int64_t r = 16;          // lora_r
  double alpha = 32;       // lora_alpha
  double dropout = 0.05;   // lora_dropout (training forward only)
  // lora_target_modules: names matched as PEFT matches a list (the module's name, or its last
  // components: "q_proj", "self_attn.o_proj"); one entry "all-linear" (every linear layer but the
  // output head); or, as `target_regex`, a regular expression fully matching the module's name
  // (PEFT's string form). Empty: PEFT's default for the architecture (q_proj and v_proj).
  std::vector<std::string> target_modules;
  std::string target_regex;
  bool use_rslora = false;
};

// A sampled completion with its token ids (what RL algorithms train on; never re-tokenised).
struct TokenCompletion {
  std::vector<int32_t> ids;     // completion tokens as sampled (EOS included when it ended the sample)
  std::string text;             // decoded, stop string removed
  std::string finish_reason;    // "stop" | "length"
};

// attention_mask, wherever a Policy takes one: (B, T), 1 on real tokens and 0 on padding (either
// side); or packed rows (ABI 1.3, as axolotl's multipack): each sequence in a row has its own id
// 1, 2, ..., attends only within itself, and its positions restart at 0. Log-probs at padding
// positions are unspecified: give them zero weight.
class Policy {
 public:
  virtual ~Policy() = default;
  virtual std::vector<int32_t> encode(const std::string& text) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual std::vector<int32_t> eos_ids() const = 0;
  virtual int64_t max_position_embeddings() const = 0;
  virtual torch::nn::Module& module() = 0;  // parameters(), train(), eval()
  virtual torch::Device device() const = 0;
  // sum(weights * log p(targets)) over (B, T); its gradient is computed in this call (see
  // CausalLM::weighted_logprob_sum). logprobs, if given, receives the per-token values.
  virtual torch::Tensor weighted_logprob_sum(const torch::Tensor& ids, const torch::Tensor& targets,
                                             const torch::Tensor& weights, const torch::Tensor& attention_mask,
                                             torch::Tensor* logprobs) = 0;
  // Per-token log p(targets) (B, T), differentiable, memory-bounded (chunks recomputed in backward).
  // Deprecated since ABI 1.5 (no in-tree caller; use token_logprobs_at with temperature 1): to be
  // removed in a later minor version, after which plugins must not call it.
  virtual torch::Tensor token_logprobs(const torch::Tensor& ids, const torch::Tensor& targets,
                                       const torch::Tensor& attention_mask) = 0;
  virtual void set_activation_checkpointing(bool on) = 0;
  // A Hugging Face directory (safetensors, config, tokenizer) of the current weights.
  virtual void save(const std::filesystem::path& dir) = 0;
  // Replaces the weights with those of a directory written by save() (resume).
  virtual void load_weights(const std::filesystem::path& dir) = 0;
  // Completions through the host's engine, with the current weights.
  // Deprecated since ABI 1.5 (no in-tree caller; use generate_ids, which also returns token ids):
  // to be removed in a later minor version, after which plugins must not call it.
  virtual std::vector<std::vector<Completion>> generate(const std::vector<std::string>& prompts,
                                                        const SampleOptions& options) = 0;

  // --- ABI minor 3 (RL) ---------------------------------------------------------------------
  // As token_logprobs / weighted_logprob_sum, with the logits divided by `temperature` first
  // (TRL's GRPO convention: log-probs of the distribution that was sampled). `entropy`, if given,
  // receives the per-token entropy (B, T) of that distribution (detached).
  virtual torch::Tensor token_logprobs_at(const torch::Tensor& ids, const torch::Tensor& targets,
                                          const torch::Tensor& attention_mask, double temperature) = 0;
  virtual torch::Tensor weighted_logprob_sum_at(const torch::Tensor& ids, const torch::Tensor& targets,
                                                const torch::Tensor& weights, const torch::Tensor& attention_mask,
                                                double temperature, torch::Tensor* logprobs, torch::Tensor* entropy) = 0;
  // Completions of tokenised prompts with their token ids, from the current weights.
  virtual std::vector<std::vector<TokenCompletion>> generate_ids(const std::vector<std::vector<int32_t>>& prompts,
                                                                 const SampleOptions& options) = 0;
  // A frozen copy of the current weights (same device and dtype; e.g. a KL reference model).
  // With LoRA on (enable_lora), the copy is the base model without the adapters: the reference
  // TRL uses with PEFT (adapters disabled).
  virtual std::unique_ptr<Policy> frozen_copy() = 0;
  // ABI minor 5. The generation engine's statistics of the last generate/generate_ids call, as
  // (name, value): "forward_s", "sample_s", "host_s" (seconds in the model's forward, in sampling,
  // in scheduling and bookkeeping), "tokens_per_s" (generated tokens per wall second), "steps",
  // "num_preemptions", "prefix_cache_hit_rate" (share of prompt tokens found in the prefix cache),
  // "kv_cache_usage_perc" (peak share of KV blocks in use, 0..1), "max_num_running" (peak
  // sequences in the batch). Empty where the policy has no engine.
  virtual std::vector<std::pair<std::string, double>> last_generation_stats() const { return {}; }
  // ABI minor 6. `messages` ([{"role", "content"}...]) rendered with the model's chat template as
  // transformers' apply_chat_template(messages, tokenize=False, add_generation_prompt=...) does.
  // Throws DataError when the model has no chat template or rendering fails (naming the file).
  virtual std::string apply_chat_template(const nlohmann::json& messages, bool add_generation_prompt) const = 0;
  // ABI minor 7. TRL's tokenisation for assistant_only_loss (trl/trainer/sft_trainer.py, TRL
  // 1.16): `messages` rendered with the model's chat template when it has {% generation %}
  // markers, else with TRL's training variant of it (trl/chat_templates/*_training.jinja, chosen
  // as TRL's get_training_chat_template chooses), tokenised without special tokens, with
  // transformers' assistant_masks (1 on tokens inside {% generation %} blocks). Throws DataError
  // naming the template's file when the model has no template, the template has no markers and
  // TRL has no training variant of it, or rendering fails.
  virtual ChatTokens apply_training_chat_template(const nlohmann::json& messages, bool add_generation_prompt) const {
    (void)messages, (void)add_generation_prompt;
    throw ConfigError("this host does not offer Policy::apply_training_chat_template (SDK minor 7)");
  }
  // ABI minor 7. For the completions of the last generate_ids (or generate) call, [prompt][sample]
  // [token] as TokenCompletion::ids: log p(token) under the distribution the engine drew it from
  // (the logits at the call's temperature, after top-k/top-p/min-p, renormalised over the kept
  // tokens: vLLM's logprobs_mode = "processed_logprobs"; 0 for greedy sampling). What importance
  // sampling against the sampler (TIS) needs. Empty where the policy cannot say.
  virtual std::vector<std::vector<std::vector<float>>> last_sampling_logprobs() const { return {}; }
  // ABI minor 8. Adds LoRA adapters to the linear layers `options` targets and freezes every other
  // weight: module().parameters() then lists the base weights (requires_grad false) and the
  // adapters (warmup::trainable_parameters gives the latter). From then on save() writes the
  // adapters in PEFT's format (adapter_config.json, adapter_model.safetensors with PEFT's names,
  // base_model_name_or_path = this model's directory, and its tokenizer files) and load_weights()
  // reads them back; the engine applies the adapters unmerged (exact: no rounding of the base
  // weights). `seed` draws A. Returns the number of adapted layers. Throws ConfigError when no
  // layer matches or adapters are already on.
  virtual int64_t enable_lora(const LoraOptions& options, uint64_t seed) {
    (void)options, (void)seed;
    throw ConfigError("this host does not offer LoRA (Policy::enable_lora, SDK minor 8)");
  }
};

inline Policy& policy(StageContext& ctx) {
  void* p = ctx.service("policy");
  if (!p) throw ConfigError("stage '" + ctx.stage_name() + "' needs a model: set [model] path");
  return *static_cast<Policy*>(p);
}

}  // namespace warmup
