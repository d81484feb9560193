#include "model/config.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "util/brief.h"
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

// Bounds on the sizes a config.json may declare. Each is far above any released model (the largest
// vocabularies have ~262k tokens, the widest models hidden 16384, the deepest ~126 layers) and low
// enough that a corrupt or hostile file is refused before it sizes an allocation.
constexpr int64_t kMaxVocab = int64_t(1) << 24;          // token ids are int32
constexpr int64_t kMaxHidden = int64_t(1) << 16;
constexpr int64_t kMaxIntermediate = int64_t(1) << 20;
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxHeads = 1024;
constexpr int64_t kMaxHeadDim = 1024;
constexpr int64_t kMaxPositions = int64_t(1) << 24;

ModelConfig parse_config(const json& j, const std::string& where) {
  auto fail = [&](const std::string& what) -> void { throw DataError(where + ": " + what); };
  if (!j.is_object()) fail(std::string("must be a JSON object, got ") + j.type_name());
  ModelConfig c;
  c.raw = j;
  c.source = where;
  auto present = [&](const char* k) { return j.contains(k) && !j[k].is_null(); };
  // An integer field in [lo, hi]; `dflt` when absent (nullopt: required).
  auto integer = [&](const json& obj, const std::string& k, std::optional<int64_t> dflt, int64_t lo,
                     int64_t hi) -> int64_t {
    if (!obj.contains(k) || obj[k].is_null()) {
      if (!dflt) fail("\"" + k + "\" is required (an integer in " + std::to_string(lo) + ".." + std::to_string(hi) + ")");
      return *dflt;
    }
    const json& v = obj[k];
    bool ok = false;
    if (v.is_number_unsigned()) ok = v.get<uint64_t>() <= uint64_t(hi) && int64_t(v.get<uint64_t>()) >= lo;
    else if (v.is_number_integer()) ok = v.get<int64_t>() >= lo && v.get<int64_t>() <= hi;
    if (!ok)
      fail("\"" + k + "\" is " + brief(v) + ", must be an integer in " + std::to_string(lo) + ".." + std::to_string(hi));
    return v.get<int64_t>();
  };
  // A finite number in [lo, hi] ((lo, hi] when `open_lo`), `dflt` when absent.
  auto number = [&](const json& obj, const std::string& k, double dflt, double lo, double hi, bool open_lo) -> double {
    if (!obj.contains(k) || obj[k].is_null()) return dflt;
    const json& v = obj[k];
    double x = v.is_number() ? v.get<double>() : std::nan("");
    bool ok = std::isfinite(x) && (open_lo ? x > lo : x >= lo) && x <= hi;
    if (!ok) {
      std::ostringstream os;
      os << "\"" << k << "\" is " << brief(v) << ", must be a number " << (open_lo ? "> " : ">= ") << lo;
      if (hi < 1e300) os << " and <= " << hi;
      fail(os.str());
    }
    return x;
  };
  auto boolean = [&](const std::string& k, bool dflt) -> bool {
    if (!present(k.c_str())) return dflt;
    if (!j[k].is_boolean()) fail("\"" + k + "\" is " + brief(j[k]) + ", must be true or false");
    return j[k].get<bool>();
  };
  auto string = [&](const json& obj, const std::string& k, const std::string& dflt) -> std::string {
    if (!obj.contains(k) || obj[k].is_null()) return dflt;
    if (!obj[k].is_string()) fail("\"" + k + "\" is " + brief(obj[k]) + ", must be a string");
    return obj[k].get<std::string>();
  };

  if (!j.contains("architectures") || !j["architectures"].is_array() || j["architectures"].empty() ||
      !j["architectures"][0].is_string())
    fail("no \"architectures\" list of names");
  c.architecture = j["architectures"][0].get<std::string>();
  if (c.architecture == "Qwen2ForCausalLM") c.arch = Arch::kQwen2;
  else if (c.architecture == "LlamaForCausalLM") c.arch = Arch::kLlama;
  else if (c.architecture == "Qwen3ForCausalLM") c.arch = Arch::kQwen3;
  else fail("unknown architecture '" + brief(c.architecture) + "' (supported: Qwen2ForCausalLM, LlamaForCausalLM, Qwen3ForCausalLM)");

  c.vocab_size = integer(j, "vocab_size", std::nullopt, 1, kMaxVocab);
  c.hidden_size = integer(j, "hidden_size", std::nullopt, 1, kMaxHidden);
  c.intermediate_size = integer(j, "intermediate_size", std::nullopt, 1, kMaxIntermediate);
  c.num_hidden_layers = integer(j, "num_hidden_layers", std::nullopt, 1, kMaxLayers);
  c.num_attention_heads = integer(j, "num_attention_heads", std::nullopt, 1, kMaxHeads);
  c.num_key_value_heads = integer(j, "num_key_value_heads", c.num_attention_heads, 1, c.num_attention_heads);
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    fail("num_attention_heads " + std::to_string(c.num_attention_heads) + " must be a multiple of num_key_value_heads " +
         std::to_string(c.num_key_value_heads));
  if (present("head_dim")) {
    c.head_dim = integer(j, "head_dim", std::nullopt, 2, kMaxHeadDim);
  } else {
    if (c.hidden_size % c.num_attention_heads != 0)
      fail("hidden_size " + std::to_string(c.hidden_size) + " is not divisible by num_attention_heads " +
           std::to_string(c.num_attention_heads) + " (and no head_dim is given)");
    c.head_dim = c.hidden_size / c.num_attention_heads;
    if (c.head_dim > kMaxHeadDim)
      fail("head_dim hidden_size / num_attention_heads = " + std::to_string(c.head_dim) + " exceeds " +
           std::to_string(kMaxHeadDim));
  }
  if (c.head_dim % 2 != 0) fail("head_dim " + std::to_string(c.head_dim) + " must be even for RoPE");

  const double kHuge = 1e300;
  c.rope_theta = number(j, "rope_theta", 10000.0, 0.0, kHuge, true);
  if (present("rope_parameters") && j["rope_parameters"].is_object())  // transformers v5 name
    c.rope_theta = number(j["rope_parameters"], "rope_theta", c.rope_theta, 0.0, kHuge, true);
  json rs = present("rope_scaling") ? j["rope_scaling"] : json();
  if (rs.is_null() && present("rope_parameters")) rs = j["rope_parameters"];
  if (!rs.is_null() && !rs.is_object()) fail("\"rope_scaling\" is " + brief(rs) + ", must be an object or null");
  if (rs.is_object()) {
    std::string type = string(rs, "rope_type", string(rs, "type", "default"));
    if (type != "default" && type != "linear" && type != "llama3")
      fail("rope_scaling type '" + brief(type) + "' is not supported (default, linear, llama3)");
    c.rope_scaling.type = type;
    c.rope_scaling.factor = number(rs, "factor", 1.0, 0.0, kHuge, true);
    c.rope_scaling.low_freq_factor = number(rs, "low_freq_factor", 1.0, 0.0, kHuge, true);
    c.rope_scaling.high_freq_factor = number(rs, "high_freq_factor", 4.0, 0.0, kHuge, true);
    c.rope_scaling.original_max_position_embeddings =
        integer(rs, "original_max_position_embeddings", int64_t(8192), 1, kMaxPositions);
    if (type == "llama3" && c.rope_scaling.high_freq_factor <= c.rope_scaling.low_freq_factor)
      fail("rope_scaling high_freq_factor must be greater than low_freq_factor (llama3 divides by their difference)");
  }
  c.rms_norm_eps = number(j, "rms_norm_eps", 1e-6, 0.0, 1.0, true);
  c.tie_word_embeddings = boolean("tie_word_embeddings", false);
  c.max_position_embeddings = integer(j, "max_position_embeddings", int64_t(32768), 1, kMaxPositions);
  c.hidden_act = string(j, "hidden_act", "silu");
  if (c.hidden_act != "silu") fail("hidden_act '" + brief(c.hidden_act) + "' is not supported (silu)");
  c.attention_bias = c.arch == Arch::kQwen2 ? true : boolean("attention_bias", false);
  c.mlp_bias = c.arch == Arch::kLlama ? boolean("mlp_bias", false) : false;
  c.qk_norm = c.arch == Arch::kQwen3;
  c.torch_dtype = string(j, "torch_dtype", string(j, "dtype", "float32"));
  c.initializer_range = number(j, "initializer_range", 0.02, 0.0, 1.0, false);
  // Token ids: an integer, or a list of them (the first is used); each names a token of the vocab.
  auto opt_id = [&](const char* k) -> std::optional<int64_t> {
    if (!present(k)) return std::nullopt;
    json list = j[k].is_array() ? j[k] : json::array({j[k]});
    std::optional<int64_t> first;
    for (size_t i = 0; i < list.size(); ++i) {
      const json& v = list[i];
      bool ok = v.is_number_unsigned() ? v.get<uint64_t>() < uint64_t(c.vocab_size)
                : v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < c.vocab_size;
      if (!ok)
        fail("\"" + std::string(k) + "\" " + brief(j[k]) + " is not a token id: ids are integers in 0.." +
             std::to_string(c.vocab_size - 1) + " (vocab_size " + std::to_string(c.vocab_size) + ")");
      if (!first) first = v.get<int64_t>();
    }
    return first;
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
