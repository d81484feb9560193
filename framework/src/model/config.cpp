#include "model/config.h"

#include <fstream>

#include "util/errors.h"

namespace warmup {
namespace fs = std::filesystem;
using nlohmann::json;

std::string arch_name(Arch a) {
  switch (a) {
    case Arch::kQwen2: return "Qwen2ForCausalLM";
    case Arch::kLlama: return "LlamaForCausalLM";
    case Arch::kQwen3: return "Qwen3ForCausalLM";
  }
  return "?";
}

namespace {
ModelConfig parse_config(const json& j, const std::string& where);
}  // namespace

ModelConfig ModelConfig::from_json(const json& j, const std::string& where) {
  try {
    return parse_config(j, where);
  } catch (const json::exception& e) {
    throw DataError(where + ": malformed field: " + e.what());
  }
}

namespace {

ModelConfig parse_config(const json& j, const std::string& where) {
  auto fail = [&](const std::string& what) -> void { throw DataError(where + ": " + what); };
  ModelConfig c;
  c.raw = j;
  if (!j.contains("architectures") || !j["architectures"].is_array() || j["architectures"].empty())
    fail("no \"architectures\" list");
  c.architecture = j["architectures"][0].get<std::string>();
  if (c.architecture == "Qwen2ForCausalLM") c.arch = Arch::kQwen2;
  else if (c.architecture == "LlamaForCausalLM") c.arch = Arch::kLlama;
  else if (c.architecture == "Qwen3ForCausalLM") c.arch = Arch::kQwen3;
  else fail("unknown architecture '" + c.architecture + "' (supported: Qwen2ForCausalLM, LlamaForCausalLM, Qwen3ForCausalLM)");
  auto req = [&](const char* k) -> int64_t {
    if (!j.contains(k) || !j[k].is_number_integer() || j[k].get<int64_t>() <= 0) fail(std::string("\"") + k + "\" must be a positive integer");
    return j[k].get<int64_t>();
  };
  c.vocab_size = req("vocab_size");
  c.hidden_size = req("hidden_size");
  c.intermediate_size = req("intermediate_size");
  c.num_hidden_layers = req("num_hidden_layers");
  c.num_attention_heads = req("num_attention_heads");
  c.num_key_value_heads = j.value("num_key_value_heads", c.num_attention_heads);
  if (j.contains("head_dim") && !j["head_dim"].is_null()) c.head_dim = j["head_dim"].get<int64_t>();
  else c.head_dim = c.hidden_size / c.num_attention_heads;
  if (c.num_key_value_heads <= 0 || c.num_attention_heads % c.num_key_value_heads != 0)
    fail("num_attention_heads must be a multiple of num_key_value_heads");
  if (c.head_dim % 2 != 0) fail("head_dim must be even for RoPE");
  c.rope_theta = j.value("rope_theta", 10000.0);
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object())  // transformers v5 name
    c.rope_theta = j["rope_parameters"].value("rope_theta", c.rope_theta);
  json rs = j.value("rope_scaling", json());
  if (rs.is_null() && j.contains("rope_parameters")) rs = j["rope_parameters"];
  if (rs.is_object()) {
    std::string type = rs.value("rope_type", rs.value("type", std::string("default")));
    if (type != "default" && type != "linear" && type != "llama3")
      fail("rope_scaling type '" + type + "' is not supported (default, linear, llama3)");
    c.rope_scaling.type = type;
    c.rope_scaling.factor = rs.value("factor", 1.0);
    c.rope_scaling.low_freq_factor = rs.value("low_freq_factor", 1.0);
    c.rope_scaling.high_freq_factor = rs.value("high_freq_factor", 4.0);
    c.rope_scaling.original_max_position_embeddings = rs.value("original_max_position_embeddings", int64_t(8192));
  }
  c.rms_norm_eps = j.value("rms_norm_eps", 1e-6);
  c.tie_word_embeddings = j.value("tie_word_embeddings", false);
  c.max_position_embeddings = j.value("max_position_embeddings", int64_t(32768));
  c.hidden_act = j.value("hidden_act", std::string("silu"));
  if (c.hidden_act != "silu") fail("hidden_act '" + c.hidden_act + "' is not supported (silu)");
  c.attention_bias = c.arch == Arch::kQwen2 ? true : j.value("attention_bias", false);
  c.mlp_bias = c.arch == Arch::kLlama ? j.value("mlp_bias", false) : false;
  c.qk_norm = c.arch == Arch::kQwen3;
  std::string dt = j.value("torch_dtype", j.value("dtype", std::string("float32")));
  c.torch_dtype = dt;
  c.initializer_range = j.value("initializer_range", 0.02);
  auto opt_id = [&](const char* k) -> std::optional<int64_t> {
    if (j.contains(k) && j[k].is_number_integer()) return j[k].get<int64_t>();
    if (j.contains(k) && j[k].is_array() && !j[k].empty()) return j[k][0].get<int64_t>();
    return std::nullopt;
  };
  c.bos_token_id = opt_id("bos_token_id"), c.eos_token_id = opt_id("eos_token_id"), c.pad_token_id = opt_id("pad_token_id");
  return c;
}

}  // namespace

ModelConfig ModelConfig::load(const fs::path& p) {
  fs::path file = fs::is_directory(p) ? p / "config.json" : p;
  std::ifstream in(file);
  if (!in) throw DataError(file.string() + ": cannot read model config");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::parse_error& e) {
    throw DataError(file.string() + ": not valid JSON: " + e.what());
  }
  return from_json(j, file.string());
}

int64_t ModelConfig::num_parameters() const {
  int64_t h = hidden_size, q = num_attention_heads * head_dim, kv = num_key_value_heads * head_dim;
  int64_t attn = h * q + 2 * h * kv + q * h + (attention_bias ? q + 2 * kv : 0) + (qk_norm ? 2 * head_dim : 0);
  int64_t mlp = 3 * h * intermediate_size;
  int64_t layer = attn + mlp + 2 * h;
  return vocab_size * h * (tie_word_embeddings ? 1 : 2) + num_hidden_layers * layer + h;
}

}  // namespace warmup
