// The stage's model for plugins that train or sample (SFT, GRPO, model evaluation). Optional part
// of the SDK: including it requires LibTorch (and the torch fingerprint must then match the
// host's). The host implements Policy; a plugin gets it with warmup::policy(ctx).
#pragma once

#include <torch/torch.h>

#include <filesystem>
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
  virtual torch::Tensor token_logprobs(const torch::Tensor& ids, const torch::Tensor& targets,
                                       const torch::Tensor& attention_mask) = 0;
  virtual void set_activation_checkpointing(bool on) = 0;
  // A Hugging Face directory (safetensors, config, tokenizer) of the current weights.
  virtual void save(const std::filesystem::path& dir) = 0;
  // Replaces the weights with those of a directory written by save() (resume).
  virtual void load_weights(const std::filesystem::path& dir) = 0;
  // Completions through the host's engine, with the current weights.
  virtual std::vector<std::vector<Completion>> generate(const std::vector<std::string>& prompts,
                                                        const SampleOptions& options) = 0;
};

inline Policy& policy(StageContext& ctx) {
  void* p = ctx.service("policy");
  if (!p) throw ConfigError("stage '" + ctx.stage_name() + "' needs a model: set [model] path");
  return *static_cast<Policy*>(p);
}

}  // namespace warmup
