#include "model/lora.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "model/safetensors.h"
#include "util/errors.h"
#include "warmup/durable_io.h"

namespace warmup {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const char* const kPrefix = "base_model.model.";  // PEFT's prefix of a CAUSAL_LM adapter's tensors

// PEFT's default target modules for the architectures we load
// (peft/utils/constants.py TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING: qwen2, llama, qwen3).
const std::vector<std::string> kDefaultTargets = {"q_proj", "v_proj"};

std::string short_name(const std::string& name) { return name.substr(name.rfind('.') + 1); }

}  // namespace

std::vector<LoraSite> lora_sites(CausalLMImpl& m) {
  std::vector<LoraSite> out;
  int64_t i = 0;
  for (const auto& mod : *m.model->layers) {
    auto* layer = mod->as<DecoderLayerImpl>();
    std::string l = "model.layers." + std::to_string(i++) + ".";
    auto& a = *layer->self_attn;
    auto& p = *layer->mlp;
    out.push_back({l + "self_attn.q_proj", &a.q_proj, &a.lora[0]});
    out.push_back({l + "self_attn.k_proj", &a.k_proj, &a.lora[1]});
    out.push_back({l + "self_attn.v_proj", &a.v_proj, &a.lora[2]});
    out.push_back({l + "self_attn.o_proj", &a.o_proj, &a.lora[3]});
    out.push_back({l + "mlp.gate_proj", &p.gate_proj, &p.lora[0]});
    out.push_back({l + "mlp.up_proj", &p.up_proj, &p.lora[1]});
    out.push_back({l + "mlp.down_proj", &p.down_proj, &p.lora[2]});
  }
  return out;
}

std::vector<LoraSite> lora_targets(CausalLMImpl& m, const LoraOptions& o) {
  auto sites = lora_sites(m);
  std::vector<LoraSite> out;
  bool all_linear = o.target_modules.size() == 1 && o.target_modules[0] == "all-linear";
  const auto& names = o.target_modules.empty() && o.target_regex.empty() ? kDefaultTargets : o.target_modules;
  std::regex re;
  if (!o.target_regex.empty()) {
    try {
      re = std::regex(o.target_regex, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      throw ConfigError("lora_target_modules: '" + o.target_regex + "' is not a regular expression: " + e.what());
    }
  }
  for (const auto& s : sites) {
    bool hit = all_linear;
    if (!o.target_regex.empty()) hit = std::regex_match(s.name, re);
    else
      for (const auto& n : names)
        hit = hit || s.name == n || (s.name.size() > n.size() && s.name.compare(s.name.size() - n.size(), n.size(), n) == 0 &&
                                     s.name[s.name.size() - n.size() - 1] == '.');
    if (hit) out.push_back(s);
  }
  if (out.empty()) {
    std::string what = o.target_regex.empty() ? "" : o.target_regex;
    for (const auto& n : names) what += (what.empty() ? "" : ", ") + n;
    throw ConfigError("lora_target_modules (" + what + ") matches no linear layer of the model (its layers: "
                      "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, e.g. " + sites.front().name + ")");
  }
  return out;
}

int64_t add_lora(CausalLMImpl& m, const LoraOptions& o, uint64_t seed) {
  if (has_lora(m)) throw ConfigError("LoRA adapters are already on this model");
  if (o.r < 1) throw ConfigError("lora_r must be >= 1");
  auto targets = lora_targets(m, o);
  torch::NoGradGuard ng;
  for (auto& p : m.parameters()) p.set_requires_grad(false);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const double scale = o.use_rslora ? o.alpha / std::sqrt(double(o.r)) : o.alpha / double(o.r);
  for (auto& t : targets) {
    auto& w = (*t.linear)->weight;
    int64_t out_f = w.size(0), in_f = w.size(1);
    auto dev = torch::TensorOptions().dtype(torch::kFloat32);
    LoraAdapter& a = *t.adapter;
    a.A = torch::nn::Linear(torch::nn::LinearOptions(in_f, o.r).bias(false));
    a.B = torch::nn::Linear(torch::nn::LinearOptions(o.r, out_f).bias(false));
    // kaiming_uniform_(a=sqrt(5)) as PEFT (and nn.Linear): U(-1/sqrt(in), 1/sqrt(in)); B = 0.
    double bound = 1.0 / std::sqrt(double(in_f));
    a.A->weight.set_data(at::empty({o.r, in_f}, dev).uniform_(-bound, bound, gen).to(w.device()));
    a.B->weight.set_data(torch::zeros({out_f, o.r}, dev.device(w.device())));
    a.A->weight.set_requires_grad(true);
    a.B->weight.set_requires_grad(true);
    a.scale = scale, a.dropout = o.dropout;
    (*t.linear)->register_module("lora_A", a.A);
    (*t.linear)->register_module("lora_B", a.B);
    a.A->train((*t.linear)->is_training());
    a.B->train((*t.linear)->is_training());
  }
  return int64_t(targets.size());
}

bool has_lora(CausalLMImpl& m) {
  for (auto& s : lora_sites(m))
    if (s.adapter->on()) return true;
  return false;
}

std::vector<std::pair<std::string, torch::Tensor>> lora_tensors(CausalLMImpl& m) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (auto& s : lora_sites(m)) {
    if (!s.adapter->on()) continue;
    out.emplace_back(kPrefix + s.name + ".lora_A.weight", s.adapter->A->weight.detach());
    out.emplace_back(kPrefix + s.name + ".lora_B.weight", s.adapter->B->weight.detach());
  }
  return out;
}

void save_adapter(CausalLMImpl& m, const LoraOptions& o, const fs::path& dir, const fs::path& base_model,
                  const fs::path& files_from) {
  fs::create_directories(dir);
  auto tensors = lora_tensors(m);
  if (tensors.empty()) throw std::logic_error("save_adapter: the model has no adapters");
  write_safetensors_file(dir / "adapter_model.safetensors", tensors);
  json targets;
  if (!o.target_regex.empty()) {
    targets = o.target_regex;
  } else {  // the short names adapted (PEFT saves all-linear expanded too)
    std::set<std::string> names;
    for (auto& s : lora_sites(m))
      if (s.adapter->on()) names.insert(short_name(s.name));
    targets = std::vector<std::string>(names.begin(), names.end());
  }
  json cfg = {{"peft_type", "LORA"},
              {"task_type", "CAUSAL_LM"},
              {"base_model_name_or_path", fs::absolute(base_model).lexically_normal().string()},
              {"r", o.r},
              {"lora_alpha", o.alpha},
              {"lora_dropout", o.dropout},
              {"target_modules", targets},
              {"use_rslora", o.use_rslora},
              {"bias", "none"},
              {"fan_in_fan_out", false},
              {"init_lora_weights", true},
              {"inference_mode", true},
              {"modules_to_save", nullptr},
              {"layers_to_transform", nullptr},
              {"layers_pattern", nullptr},
              {"rank_pattern", json::object()},
              {"alpha_pattern", json::object()},
              {"use_dora", false},
              {"revision", nullptr}};
  durable::write_file_durable(dir / "adapter_config.json", cfg.dump(2) + "\n");
  if (!files_from.empty())
    for (const char* f : {"generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                          "vocab.json", "merges.txt", "chat_template.jinja"}) {
      fs::path src = files_from / f;
      if (!fs::exists(src) || fs::absolute(src) == fs::absolute(dir / f)) continue;
      std::ifstream in(src, std::ios::binary);
      std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      durable::write_file_durable(dir / f, bytes);
    }
}

bool is_adapter_dir(const fs::path& dir) {
  return fs::exists(dir / "adapter_config.json") && !fs::exists(dir / "config.json");
}

LoraOptions read_adapter_config(const fs::path& dir, fs::path* base_model) {
  fs::path file = dir / "adapter_config.json";
  std::ifstream in(file);
  if (!in) throw DataError(file.string() + ": cannot read");
  json j = json::parse(in, nullptr, false);
  if (!j.is_object()) throw DataError(file.string() + ": not a JSON object");
  auto bad = [&](const std::string& key, const std::string& why) -> DataError {
    return DataError(file.string() + ": " + key + ": " + why);
  };
  LoraOptions o;
  std::string peft_type, bias, base_name;
  try {
    peft_type = j.value("peft_type", "");
    bias = j.value("bias", "none");
    base_name = j.value("base_model_name_or_path", "");
    o.r = j.at("r").get<int64_t>();
    o.alpha = j.value("lora_alpha", 8.0);
    o.dropout = j.value("lora_dropout", 0.0);
    o.use_rslora = j.value("use_rslora", false);
  } catch (const json::exception& e) {
    throw DataError(file.string() + ": " + e.what());
  }
  if (peft_type != "LORA") throw bad("peft_type", "only LORA adapters are supported");
  if (o.r < 1 || o.r > 65536) throw bad("r", "must be in [1, 65536]");
  if (!(o.alpha > 0) || !std::isfinite(o.alpha)) throw bad("lora_alpha", "must be a finite number > 0");
  const json& t = j.contains("target_modules") ? j["target_modules"] : json();
  if (t.is_string()) {
    if (t.get<std::string>() == "all-linear") o.target_modules = {"all-linear"};
    else o.target_regex = t.get<std::string>();
    if (o.target_regex.size() > 1000) throw bad("target_modules", "a regular expression of more than 1000 characters");
  } else if (t.is_array() && !t.empty()) {
    for (const auto& n : t) {
      if (!n.is_string()) throw bad("target_modules", "expected names");
      o.target_modules.push_back(n.get<std::string>());
    }
  } else {
    throw bad("target_modules", "expected a list of module names or a regular expression");
  }
  auto absent = [&](const char* key) {
    return !j.contains(key) || j[key].is_null() || (j[key].is_object() && j[key].empty()) ||
           (j[key].is_array() && j[key].empty()) || (j[key].is_boolean() && !j[key].get<bool>());
  };
  for (const char* key : {"use_dora", "fan_in_fan_out", "modules_to_save", "layers_to_transform", "rank_pattern",
                          "alpha_pattern", "layer_replication"})
    if (!absent(key)) throw bad(key, "is not supported here (plain LoRA only): merge the adapter with PEFT first");
  if (bias != "none") throw bad("bias", "only \"none\" is supported");
  if (base_model) {
    const std::string& b = base_name;
    if (b.empty()) throw bad("base_model_name_or_path", "is missing: the base model's directory is needed");
    fs::path p(b);
    if (p.is_relative()) p = dir / p;
    if (!fs::exists(p / "config.json") && !fs::exists(p / "adapter_config.json"))
      throw bad("base_model_name_or_path", "'" + b + "' is not a model directory here (a Hugging Face hub id "
                "must be downloaded first; write its local path there)");
    *base_model = p;
  }
  return o;
}

namespace {

// Follows base_model_name_or_path from `dir` while `more(p)` holds (at most 16 adapters deep).
template <class More>
fs::path walk_adapters(const fs::path& dir, More more) {
  fs::path p = dir;
  for (int depth = 0; is_adapter_dir(p) && more(p); ++depth) {
    if (depth >= 16) throw DataError(dir.string() + ": adapters stacked more than 16 deep (a cycle of base_model_name_or_path?)");
    fs::path base;
    read_adapter_config(p, &base);
    p = base;
  }
  return p;
}

}  // namespace

fs::path adapter_root_model(const fs::path& dir) {
  return walk_adapters(dir, [](const fs::path&) { return true; });
}

fs::path model_files_dir(const fs::path& dir) {
  return walk_adapters(dir, [](const fs::path& p) {
    return !(fs::exists(p / "tokenizer.json") && fs::exists(p / "generation_config.json"));
  });
}

void check_adapter_file(CausalLMImpl& m, const LoraOptions& o, const fs::path& dir) {
  fs::path file = dir / "adapter_model.safetensors";
  if (!fs::exists(file)) throw DataError(file.string() + ": missing (adapter_model.bin is not read: convert it to safetensors)");
  SafetensorsFile f(file);
  for (auto& s : lora_targets(m, o)) {
    auto& w = (*s.linear)->weight;
    for (auto [part, shape] : {std::pair{"lora_A", std::vector<int64_t>{o.r, w.size(1)}},
                               std::pair{"lora_B", std::vector<int64_t>{w.size(0), o.r}}}) {
      std::string key = kPrefix + s.name + "." + part + ".weight";
      auto it = f.tensors().find(key);
      if (it == f.tensors().end()) it = f.tensors().find(kPrefix + s.name + "." + part + ".default.weight");
      if (it == f.tensors().end()) throw DataError(file.string() + ": no tensor '" + key + "' (r " + std::to_string(o.r) + ")");
      if (it->second.shape != shape) {
        std::ostringstream os;
        os << file.string() << ": tensor '" << it->first << "' has shape " << c10::IntArrayRef(it->second.shape)
           << ", adapter_config.json (r " << o.r << ") and the model need " << c10::IntArrayRef(shape);
        throw DataError(os.str());
      }
    }
  }
}

void load_adapter_weights(CausalLMImpl& m, const fs::path& dir) {
  fs::path file = dir / "adapter_model.safetensors";
  if (!fs::exists(file)) throw DataError(file.string() + ": missing (adapter_model.bin is not read: convert it to safetensors)");
  SafetensorsFile f(file);
  std::set<std::string> used;
  torch::NoGradGuard ng;
  for (auto& s : lora_sites(m)) {
    if (!s.adapter->on()) continue;
    for (auto [part, lin] : {std::pair{"lora_A", &s.adapter->A}, std::pair{"lora_B", &s.adapter->B}}) {
      std::string key = kPrefix + s.name + "." + part + ".weight";
      if (!f.tensors().count(key)) {
        // PEFT before 0.? kept the adapter name in the key ("lora_A.default.weight")
        std::string alt = kPrefix + s.name + "." + part + ".default.weight";
        if (!f.tensors().count(alt)) throw DataError(file.string() + ": no tensor '" + key + "'");
        key = alt;
      }
      auto t = f.tensor(key);
      auto& w = (*lin)->weight;
      if (t.sizes() != w.sizes()) {
        std::ostringstream os;
        os << file.string() << ": tensor '" << key << "' has shape " << t.sizes() << ", the adapter needs " << w.sizes();
        throw DataError(os.str());
      }
      w.copy_(t.to(w.device(), w.scalar_type()));
      used.insert(key);
    }
  }
  for (const auto& [name, info] : f.tensors())
    if (!used.count(name)) throw DataError(file.string() + ": tensor '" + name + "' belongs to no adapted layer");
}

void merge_lora(CausalLMImpl& m) {
  torch::NoGradGuard ng;
  for (auto& s : lora_sites(m)) {
    LoraAdapter& a = *s.adapter;
    if (!a.on()) continue;
    auto& w = (*s.linear)->weight;
    auto delta = torch::matmul(a.B->weight.to(torch::kFloat32), a.A->weight.to(torch::kFloat32)) * a.scale;
    w.copy_((w.to(torch::kFloat32) + delta.to(w.device())).to(w.scalar_type()));
    (*s.linear)->unregister_module("lora_A");
    (*s.linear)->unregister_module("lora_B");
    a = LoraAdapter{};
  }
  for (auto& p : m.parameters()) p.set_requires_grad(true);
}

}  // namespace warmup
