// LoRA adapters on a CausalLM, in PEFT's format (peft/tuners/lora, PEFT 0.21): added to the
// linear layers a LoraOptions targets, saved as adapter_config.json + adapter_model.safetensors
// (tensor names "base_model.model.<module>.lora_A.weight"), read back from PEFT's or our files,
// and merged into the base weights (PEFT's merge_and_unload: W += scale * B @ A).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <warmup/model.h>

#include "model/transformer.h"

namespace warmup {

// A linear layer that can carry an adapter: its module name ("model.layers.0.self_attn.q_proj"),
// the layer and its adapter slot.
struct LoraSite {
  std::string name;
  torch::nn::Linear* linear;
  LoraAdapter* adapter;
};
std::vector<LoraSite> lora_sites(CausalLMImpl& model);

// The module names `o` targets (PEFT's check_target_module_exists: a name or its dotted suffix,
// "all-linear", or target_regex fully matching); throws ConfigError when none matches.
std::vector<LoraSite> lora_targets(CausalLMImpl& model, const LoraOptions& o);

// Adds adapters (A kaiming-uniform from `seed`, B zero, float32, on the model's device) to the
// targeted layers and freezes every base parameter. Returns the number of adapted layers.
// Throws ConfigError (nothing targeted, adapters already on).
int64_t add_lora(CausalLMImpl& model, const LoraOptions& o, uint64_t seed);
bool has_lora(CausalLMImpl& model);

// PEFT's tensor names and the adapters' tensors (detached), in module order.
std::vector<std::pair<std::string, torch::Tensor>> lora_tensors(CausalLMImpl& model);

// Writes `dir`/adapter_config.json and adapter_model.safetensors (PEFT's), naming
// `base_model` (absolute) as base_model_name_or_path; copies tokenizer files from `files_from`.
void save_adapter(CausalLMImpl& model, const LoraOptions& o, const std::filesystem::path& dir,
                  const std::filesystem::path& base_model, const std::filesystem::path& files_from);

// A directory holding a PEFT LoRA adapter (adapter_config.json, no config.json).
bool is_adapter_dir(const std::filesystem::path& dir);
// Its options and base model (base_model_name_or_path, relative paths against `dir`). Throws
// DataError naming the file and key for what is not a plain LoRA (DoRA, bias, rank patterns,
// modules_to_save, fan_in_fan_out...).
LoraOptions read_adapter_config(const std::filesystem::path& dir, std::filesystem::path* base_model = nullptr);
// The plain model directory at the bottom of a chain of adapters (`dir` itself when it is not
// one); DataError past 16 adapters (a cycle).
std::filesystem::path adapter_root_model(const std::filesystem::path& dir);
// Where a model directory's tokenizer, generation_config.json and chat template are: `dir`, or,
// for an adapter directory lacking tokenizer.json or generation_config.json (PEFT saves neither
// unless told), the nearest directory down its chain that has both (else the plain base model).
std::filesystem::path model_files_dir(const std::filesystem::path& dir);
// Throws DataError (naming the file and tensor) unless `dir`'s adapter_model.safetensors holds,
// for every layer `o` targets in `model`, lora_A (r, in) and lora_B (out, r): checked from the
// file's header before any adapter is allocated.
void check_adapter_file(CausalLMImpl& model, const LoraOptions& o, const std::filesystem::path& dir);

// Copies the adapter tensors of `dir` into the model's adapters (which must match: DataError).
void load_adapter_weights(CausalLMImpl& model, const std::filesystem::path& dir);

// W += scale * B @ A for every adapter (computed in float32, stored in W's dtype), then the
// adapters are removed and every parameter requires grad again.
void merge_lora(CausalLMImpl& model);

}  // namespace warmup
