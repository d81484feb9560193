// The host's warmup::Policy: a CausalLM with its tokenizer, trained in place by algorithm plugins
// and sampled through an Engine created on first use (it shares the weights, so samples always
// come from the current parameters).
#pragma once

#include <memory>
#include <mutex>
#include <optional>

#include "engine/engine.h"
#include "text/chat_template.h"
#include "warmup/algorithm.h"
#include "warmup/model.h"

namespace warmup {

class HostPolicy final : public Policy {
 public:
  explicit HostPolicy(const ModelSpec& spec);
  std::vector<int32_t> encode(const std::string& text) const override { return tok_->encode(text); }
  std::string apply_chat_template(const nlohmann::json& messages, bool add_generation_prompt) const override;
  ChatTokens apply_training_chat_template(const nlohmann::json& messages, bool add_generation_prompt) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  std::vector<int32_t> eos_ids() const override { return eos_; }
  int64_t max_position_embeddings() const override { return model_->config.max_position_embeddings; }
  torch::nn::Module& module() override { return *model_; }
  torch::Device device() const override { return device_; }
  torch::Tensor weighted_logprob_sum(const torch::Tensor& ids, const torch::Tensor& targets, const torch::Tensor& weights,
                                     const torch::Tensor& attention_mask, torch::Tensor* logprobs) override;
  torch::Tensor token_logprobs(const torch::Tensor& ids, const torch::Tensor& targets,
                               const torch::Tensor& attention_mask) override;
  void set_activation_checkpointing(bool on) override { model_->activation_checkpointing = on; }
  void save(const std::filesystem::path& dir) override;
  void load_weights(const std::filesystem::path& dir) override;
  std::vector<std::vector<Completion>> generate(const std::vector<std::string>& prompts,
                                                const SampleOptions& options) override;
  torch::Tensor token_logprobs_at(const torch::Tensor& ids, const torch::Tensor& targets,
                                  const torch::Tensor& attention_mask, double temperature) override;
  torch::Tensor weighted_logprob_sum_at(const torch::Tensor& ids, const torch::Tensor& targets,
                                        const torch::Tensor& weights, const torch::Tensor& attention_mask,
                                        double temperature, torch::Tensor* logprobs, torch::Tensor* entropy) override;
  std::vector<std::vector<TokenCompletion>> generate_ids(const std::vector<std::vector<int32_t>>& prompts,
                                                         const SampleOptions& options) override;
  std::unique_ptr<Policy> frozen_copy() override;
  std::vector<std::pair<std::string, double>> last_generation_stats() const override { return last_stats_; }
  std::vector<std::vector<std::vector<float>>> last_sampling_logprobs() const override { return last_sampling_; }
  int64_t enable_lora(const LoraOptions& options, uint64_t seed) override;

 private:
  HostPolicy(const HostPolicy& other, bool frozen);
  std::vector<GenerationResult> run_engine(const std::vector<std::vector<int32_t>>& prompts, const SampleOptions& o);
  std::filesystem::path source_;
  std::filesystem::path files_;  // where the tokenizer and chat template are: source_, or an adapter's base
  std::optional<LoraOptions> lora_;  // enable_lora's
  CausalLM model_{nullptr};
  std::shared_ptr<const Tokenizer> tok_;
  mutable std::once_flag chat_once_;  // the chat template is loaded on first use
  mutable std::shared_ptr<const ChatTemplate> chat_;
  mutable std::once_flag training_once_;  // TRL's training variant, chosen on first use
  mutable std::shared_ptr<const ChatTemplate> training_chat_;
  const ChatTemplate& chat_template() const;
  std::vector<int32_t> eos_;
  std::unique_ptr<Engine> engine_;
  std::vector<std::pair<std::string, double>> last_stats_;
  std::vector<std::vector<std::vector<float>>> last_sampling_;  // of the last run_engine call
  torch::Device device_{torch::kCPU};
};

}  // namespace warmup
