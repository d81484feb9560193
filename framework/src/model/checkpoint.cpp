// See checkpoint.h.
#include "model/checkpoint.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "model/lora.h"
#include "model/safetensors.h"
#include "warmup/durable_io.h"
#include "text/tokenizer.h"
#include "util/brief.h"
#include "util/errors.h"

namespace warmup {
namespace fs = std::filesystem;
using nlohmann::json;

torch::ScalarType parse_dtype(const std::string& name, const ModelConfig& config) {
  std::string n = name == "auto" ? config.torch_dtype : name;
  if (n == "float32" || n == "fp32" || n == "f32") return torch::kFloat32;
  if (n == "bfloat16" || n == "bf16") return torch::kBFloat16;
  if (n == "float16" || n == "fp16" || n == "half") return torch::kFloat16;
  throw ConfigError("unsupported dtype '" + n + "' (float32, bfloat16, float16)");
}

std::string dtype_name(torch::ScalarType t) {
  if (t == torch::kFloat32) return "float32";
  if (t == torch::kBFloat16) return "bfloat16";
  if (t == torch::kFloat16) return "float16";
  return c10::toString(t);
}

torch::Device parse_device(const std::string& name) {
  if (name == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  std::optional<torch::Device> d;
  try {
    d = torch::Device(name);
  } catch (const std::exception&) {
    throw ConfigError("unknown device '" + name + "' (cpu, cuda, cuda:N, auto)");
  }
  if (d->is_cuda()) {  // one line, not c10's stack trace from the first CUDA call
    int64_t n = torch::cuda::is_available() ? int64_t(torch::cuda::device_count()) : 0;
    if (n == 0)
      throw ConfigError("device '" + name + "': CUDA is not usable here (" +
                        std::string(torch::cuda::is_available() ? "no CUDA device" : "no CUDA device or driver found") +
                        "); use device = \"cpu\" or \"auto\"");
    if (d->has_index() && d->index() >= n)
      throw ConfigError("device '" + name + "': only " + std::to_string(n) + " CUDA device(s) here (cuda:0..cuda:" +
                        std::to_string(n - 1) + ")");
  }
  return *d;
}

CausalLM load_model(const fs::path& dir, const LoadOptions& opt) {
  if (is_adapter_dir(dir)) {  // a PEFT LoRA adapter: its base model with the adapter merged
    static thread_local int depth = 0;
    if (depth > 16) throw DataError(dir.string() + ": adapters stacked more than 16 deep (a cycle of base_model_name_or_path?)");
    fs::path base;
    LoraOptions lo = read_adapter_config(dir, &base);
    ++depth;
    CausalLM model{nullptr};
    try {
      model = load_model(base, opt);
    } catch (...) {
      --depth;
      throw;
    }
    --depth;
    check_adapter_file(*model, lo, dir);  // from the header, before anything is allocated
    add_lora(*model, lo, 0);
    load_adapter_weights(*model, dir);
    merge_lora(*model);
    model->eval();
    return model;
  }
  ModelConfig config = ModelConfig::load(dir);
  torch::ScalarType dtype = parse_dtype(opt.dtype, config);
  torch::Device device = parse_device(opt.device);
  SafetensorsCheckpoint ckpt(dir);
  // Every parameter the config implies is checked against the checkpoint (present, same shape, a
  // float dtype) before the model is built: the checkpoint's real bytes, not config.json's numbers,
  // bound what gets allocated.
  std::set<std::string> expected;
  for (const auto& [name, shape] : parameter_shapes(config)) {
    if (!ckpt.contains(name))
      throw DataError(dir.string() + ": checkpoint has no tensor '" + name + "' required by " + config.architecture +
                      " with the sizes of " + config.source);
    const TensorInfo& info = ckpt.info(name);
    if (info.shape != shape) {
      std::ostringstream os;
      os << dir.string() << ": tensor '" << name << "' has shape " << c10::IntArrayRef(info.shape)
         << " but the config needs " << c10::IntArrayRef(shape);
      throw DataError(os.str());
    }
    if (info.dtype != torch::kFloat32 && info.dtype != torch::kBFloat16 && info.dtype != torch::kFloat16)
      throw DataError(dir.string() + ": tensor '" + name + "' has dtype " + info.dtype_name + ", expected F32, BF16 or F16");
    expected.insert(name);
  }
  for (const auto& n : ckpt.names())
    if (!expected.count(n) && n != "lm_head.weight" && n.find("rotary_emb") == std::string::npos)
      throw DataError(dir.string() + ": unexpected tensor '" + brief(n) + "' for " + config.architecture);
  CausalLM model(config);
  torch::NoGradGuard no_grad;
  for (auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor& param = item.value();
    if (!expected.count(name) || ckpt.info(name).shape != param.sizes().vec())  // parameter_shapes out of sync
      throw std::logic_error("parameter_shapes() does not list '" + name + "' as the model has it");
    torch::Tensor t = ckpt.tensor(name);
    if (device.is_cpu() && t.scalar_type() == dtype) param.set_data(t);  // zero-copy, copy-on-write map
    else param.set_data(t.to(device, dtype));
  }
  for (auto& b : model->buffers()) b.set_data(b.to(device));
  model->rotary.inv_freq = model->rotary.inv_freq.to(device);
  model->eval();
  return model;
}

namespace {

void copy_if_exists(const fs::path& from, const fs::path& to) {
  if (!from.empty() && fs::exists(from) && fs::absolute(from) != fs::absolute(to))
  {
    std::ifstream in(from, std::ios::binary);
    std::ostringstream os;
    os << in.rdbuf();
    if (!in && !in.eof()) throw std::runtime_error(from.string() + ": cannot read");
    durable::write_file_durable(to, os.str());
  }
}

}  // namespace

void save_model(CausalLM& model, const fs::path& dir, uint64_t shard_bytes, const fs::path& source_dir) {
  fs::create_directories(dir);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  torch::ScalarType dtype = torch::kFloat32;
  for (const auto& item : model->named_parameters()) {
    tensors.emplace_back(item.key(), item.value().detach());
    dtype = item.value().scalar_type();
  }
  save_safetensors(dir, tensors, shard_bytes);
  json cfg = model->config.raw;
  cfg["torch_dtype"] = dtype_name(dtype);
  if (cfg.contains("dtype")) cfg["dtype"] = dtype_name(dtype);
  durable::write_file_durable(dir / "config.json", cfg.dump(2) + "\n");
  if (!source_dir.empty()) {
    for (const char* f : {"generation_config.json", "tokenizer.json", "tokenizer_config.json",
                          "special_tokens_map.json", "vocab.json", "merges.txt", "chat_template.jinja"})
      copy_if_exists(source_dir / f, dir / f);
  }
  if (!fs::exists(dir / "generation_config.json")) {
    json gen = json::object();
    const ModelConfig& c = model->config;
    if (c.bos_token_id) gen["bos_token_id"] = *c.bos_token_id;
    if (c.eos_token_id) gen["eos_token_id"] = *c.eos_token_id;
    if (c.pad_token_id) gen["pad_token_id"] = *c.pad_token_id;
    durable::write_file_durable(dir / "generation_config.json", gen.dump(2) + "\n");
  }
}

void check_fits_in_memory(const ModelConfig& config, torch::ScalarType dtype) {
  // Built in float32, then converted: both copies exist for a moment.
  uint64_t params = 0;
  for (const auto& [name, shape] : parameter_shapes(config)) {
    uint64_t n = 1;
    for (int64_t d : shape) n *= uint64_t(d);  // bounded by the config limits: no overflow
    params += n;
  }
  uint64_t per = 4 + (dtype == torch::kFloat32 ? 0 : uint64_t(c10::elementSize(dtype)));
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return;
  uint64_t memory = uint64_t(pages) * uint64_t(page);
  if (params > memory / per) {
    char msg[256];
    std::snprintf(msg, sizeof(msg), "a model of %llu parameters needs %.1f GB to build in %s, more than this machine's %.1f GB of memory",
                  static_cast<unsigned long long>(params), double(params) * double(per) / 1e9, dtype_name(dtype).c_str(),
                  double(memory) / 1e9);
    throw ConfigError((config.source.empty() ? std::string("model config") : config.source) + ": " + msg);
  }
}

CausalLM init_model(const ModelConfig& config, uint64_t seed, torch::ScalarType dtype) {
  check_fits_in_memory(config, dtype);
  torch::manual_seed(seed);
  CausalLM model(config);
  torch::NoGradGuard no_grad;
  double std = config.initializer_range;
  for (auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor& p = item.value();
    bool norm = name.find("norm") != std::string::npos;
    if (norm) p.fill_(1.0);
    else if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0) p.zero_();
    else p.normal_(0.0, std);
  }
  model->to(dtype);
  return model;
}

ModelConfig create_model_dir(const fs::path& config_json, const fs::path& out, uint64_t seed,
                             const std::string& dtype_name_, const fs::path& tokenizer_dir, uint64_t shard_bytes) {
  ModelConfig config = ModelConfig::load(config_json);
  torch::ScalarType dtype = parse_dtype(dtype_name_, config);
  CausalLM model = init_model(config, seed, dtype);
  fs::create_directories(out);
  if (tokenizer_dir.empty()) {
    std::vector<std::string> specials = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    if (config.vocab_size < 256 + int64_t(specials.size()))
      throw ConfigError(config_json.string() + ": vocab_size " + std::to_string(config.vocab_size) +
                        " is too small for the byte-level tokenizer (needs >= 259)");
    std::ofstream(out / "tokenizer.json") << Tokenizer::byte_level_json(specials);
    json tc = {{"tokenizer_class", "PreTrainedTokenizerFast"}, {"bos_token", nullptr}, {"eos_token", "<|endoftext|>"},
               {"pad_token", "<|endoftext|>"}, {"model_max_length", config.max_position_embeddings},
               {"add_bos_token", false}, {"clean_up_tokenization_spaces", false}};
    std::ofstream(out / "tokenizer_config.json") << tc.dump(2) << "\n";
    if (!config.eos_token_id) config.raw["eos_token_id"] = 256, model->config.raw["eos_token_id"] = 256;
  }
  save_model(model, out, shard_bytes, tokenizer_dir);
  config.torch_dtype = dtype_name(dtype);
  return config;
}

}  // namespace warmup
