// Hugging Face model directories <-> CausalLM: load (config.json + safetensors, sharded or not,
// zero-copy on CPU when the dtype matches), save (safetensors shards of at most `shard_bytes`,
// config.json, generation_config.json, tokenizer files) such that
// transformers.AutoModelForCausalLM.from_pretrained(dir) loads it unchanged, and random init.
#pragma once

#include <filesystem>
#include <string>

#include "model/transformer.h"

namespace warmup {

// "auto" keeps the checkpoint's dtype (config torch_dtype); "float32" | "bfloat16" | "float16".
torch::ScalarType parse_dtype(const std::string& name, const ModelConfig& config);
std::string dtype_name(torch::ScalarType t);  // "float32", "bfloat16", "float16"
torch::Device parse_device(const std::string& name);  // "auto" -> cuda if available, else cpu

struct LoadOptions {
  std::string dtype = "auto";
  std::string device = "cpu";
};

CausalLM load_model(const std::filesystem::path& dir, const LoadOptions& options = {});

// Writes the model to `dir` (created), copying tokenizer and generation files from `source_dir`
// when given. The config written is the model's config.json with torch_dtype updated.
void save_model(CausalLM& model, const std::filesystem::path& dir, uint64_t shard_bytes = 5'000'000'000ULL,
                const std::filesystem::path& source_dir = {});

// Throws ConfigError naming config.source when building the model in `dtype` would need more than
// the machine's physical memory (a config.json with absurd sizes is refused before allocating).
void check_fits_in_memory(const ModelConfig& config, torch::ScalarType dtype);

// A model with transformers' initialisation (normal(0, initializer_range) for linear and
// embedding weights, zero biases, unit norms), seeded.
CausalLM init_model(const ModelConfig& config, uint64_t seed, torch::ScalarType dtype = torch::kFloat32);

// `warmup model init` and `[model] init`: a seeded from-scratch model saved as a Hugging Face
// directory `out`, with the tokenizer files of `tokenizer_dir` or, when empty, the byte-level
// tokenizer (bytes are ids 0-255, then <|endoftext|> (EOS), <|im_start|>, <|im_end|>).
ModelConfig create_model_dir(const std::filesystem::path& config_json, const std::filesystem::path& out,
                             uint64_t seed, const std::string& dtype, const std::filesystem::path& tokenizer_dir,
                             uint64_t shard_bytes = 5'000'000'000ULL);

}  // namespace warmup
