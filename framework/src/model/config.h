// Decoder-only model configuration read from a Hugging Face config.json. The architecture comes
// from `architectures`: Qwen2ForCausalLM (q/k/v bias), LlamaForCausalLM, Qwen3ForCausalLM (q/k
// RMSNorm). The original JSON is kept so saving preserves fields we do not use.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace warmup {

enum class Arch { kQwen2, kLlama, kQwen3 };

struct RopeScaling {
  std::string type = "default";  // default | linear | llama3
  double factor = 1.0;
  double low_freq_factor = 1.0, high_freq_factor = 4.0;  // llama3
  int64_t original_max_position_embeddings = 8192;       // llama3
};

struct ModelConfig {
  Arch arch = Arch::kQwen2;
  std::string architecture;        // as in config.json, e.g. "Qwen2ForCausalLM"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // GQA; default num_attention_heads
  int64_t head_dim = 0;             // default hidden_size / num_attention_heads
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  int64_t max_position_embeddings = 32768;
  bool attention_bias = false;      // q/k/v (and Llama: o) projections have biases
  bool mlp_bias = false;            // Llama only
  bool qk_norm = false;             // Qwen3
  std::string hidden_act = "silu";
  std::string torch_dtype = "float32";  // dtype the checkpoint declares
  double initializer_range = 0.02;
  std::optional<int64_t> bos_token_id, eos_token_id, pad_token_id;
  nlohmann::json raw;               // the whole config.json
  std::string source;               // where it came from (the file), for messages

  static ModelConfig from_json(const nlohmann::json& j, const std::string& where);
  static ModelConfig load(const std::filesystem::path& dir_or_file);
  int64_t num_parameters() const;
};

std::string arch_name(Arch a);

}  // namespace warmup
