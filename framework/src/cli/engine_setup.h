// Shared by `warmup generate` and `warmup serve`: engine options on the command line and loading
// a model directory into an Engine (EOS ids from generation_config.json and the tokenizer).
#pragma once

#include <filesystem>
#include <fstream>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli/options_util.h"
#include "engine/engine.h"
#include "model/checkpoint.h"
#include "model/lora.h"
#include "util/errors.h"

namespace warmup::cli {

inline void add_engine_options(po::options_description& opts) {
  opts.add_options()
      ("model,m", po::value<std::string>()->required(), "Hugging Face model directory")
      ("dtype", po::value<std::string>()->default_value("auto"), "float32 | bfloat16 | float16 | auto")
      ("device", po::value<std::string>()->default_value("auto"), "cpu | cuda | cuda:N | auto")
      ("max-model-len", po::value<int64_t>()->default_value(0), "prompt + completion cap in tokens (0: the model's max_position_embeddings)")
      ("max-num-seqs", po::value<int64_t>()->default_value(64), "sequences in flight together (vLLM's max_num_seqs)")
      ("max-batch", po::value<int64_t>(), "the old name of --max-num-seqs")
      ("max-num-batched-tokens", po::value<int64_t>()->default_value(2048), "new tokens per engine step: decode tokens and prefill chunks (vLLM's max_num_batched_tokens)")
      ("kv-cache-mb", po::value<double>()->default_value(1024), "KV cache budget in MiB")
      ("gpu-memory-utilization", po::value<double>()->default_value(0), "size the KV cache to use this fraction of the device's memory (0 < f <= 1; on the CPU of MemTotal); overrides --kv-cache-mb")
      ("no-enable-prefix-caching", po::bool_switch(), "turn off prefix caching (on by default, as vLLM)")
      ("block-size", po::value<int64_t>()->default_value(16), "tokens per KV block")
      ("threads", po::value<int>()->default_value(0), "CPU threads (0: torch default)");
}

inline std::unique_ptr<Engine> make_engine(const po::variables_map& vm) {
  std::filesystem::path dir = vm["model"].as<std::string>();
  if (int t = vm["threads"].as<int>(); t > 0) torch::set_num_threads(t);
  LoadOptions lo;
  lo.dtype = vm["dtype"].as<std::string>();
  lo.device = vm["device"].as<std::string>();
  CausalLM model = load_model(dir, lo);  // a PEFT adapter directory: its base with it merged
  const std::filesystem::path files = model_files_dir(dir);  // tokenizer, generation_config
  auto tok = std::make_shared<const Tokenizer>(Tokenizer::load(files));
  EngineOptions eo;
  eo.max_model_len = vm["max-model-len"].as<int64_t>();
  if (eo.max_model_len < 0) throw UsageError("--max-model-len must be >= 0 (0: the model's positions)");
  if (eo.max_model_len == 0) eo.max_model_len = model->config.max_position_embeddings;
  if (eo.max_model_len > model->config.max_position_embeddings)  // as vLLM: no silent extrapolation
    throw UsageError("--max-model-len " + std::to_string(eo.max_model_len) + " is more than the model's " +
                     std::to_string(model->config.max_position_embeddings) + " positions (" +
                     (dir / "config.json").string() + " max_position_embeddings)");
  eo.max_batch = vm.count("max-batch") ? vm["max-batch"].as<int64_t>() : vm["max-num-seqs"].as<int64_t>();
  eo.max_num_batched_tokens = vm["max-num-batched-tokens"].as<int64_t>();
  eo.kv_cache_mb = vm["kv-cache-mb"].as<double>();
  eo.gpu_memory_utilization = vm["gpu-memory-utilization"].as<double>();
  eo.enable_prefix_caching = !vm["no-enable-prefix-caching"].as<bool>();
  if (eo.max_batch < 1) throw UsageError("--max-num-seqs must be >= 1");
  if (eo.max_num_batched_tokens < 1) throw UsageError("--max-num-batched-tokens must be >= 1");
  if (!(eo.kv_cache_mb > 0)) throw UsageError("--kv-cache-mb must be > 0");
  if (!(eo.gpu_memory_utilization >= 0 && eo.gpu_memory_utilization <= 1))
    throw UsageError("--gpu-memory-utilization must be in (0, 1] (0: use --kv-cache-mb)");
  if (eo.block_size < 1 || eo.block_size > 1024) throw UsageError("--block-size must be in [1, 1024]");
  eo.block_size = vm["block-size"].as<int64_t>();
  auto eos = eos_ids_for(files, *tok);
  return std::make_unique<Engine>(std::move(model), tok, eos, eo);
}

}  // namespace warmup::cli
