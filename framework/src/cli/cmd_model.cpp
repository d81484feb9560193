// `warmup model init|info|convert|logits`: Hugging Face model directories from the command line.
#include <fstream>

#include <nlohmann/json.hpp>

#include "cli/options_util.h"
#include "model/checkpoint.h"
#include "model/lora.h"
#include "model/safetensors.h"
#include "text/tokenizer.h"
#include "util/errors.h"
#include "util/table.h"

namespace warmup::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const char* kUsage =
    "usage: warmup model init --config CONFIG.json --out DIR [--seed N] [--dtype D] [--tokenizer DIR]\n"
    "       warmup model info DIR [--json]\n"
    "       warmup model convert DIR --out DIR [--dtype bf16|fp16|fp32] [--shard-size 5GB]\n"
    "       warmup model logits DIR (--text TEXT | --batch FILE.json) [--top-k N] [--out FILE.safetensors]\n"
    "       warmup model merge ADAPTER_DIR --out DIR [--dtype D] [--shard-size 5GB]";

int init(const po::variables_map& vm) {
  if (!vm.count("config") || !vm.count("out")) throw UsageError("warmup model init: --config and --out are required");
  fs::path out = vm["out"].as<std::string>();
  fs::path tok_src = vm.count("tokenizer") ? fs::path(vm["tokenizer"].as<std::string>()) : fs::path();
  ModelConfig config = create_model_dir(vm["config"].as<std::string>(), out, vm["seed"].as<uint64_t>(),
                                        vm["dtype"].as<std::string>(), tok_src,
                                        parse_size(vm["shard-size"].as<std::string>()));
  std::cout << "wrote " << arch_name(config.arch) << " with " << config.num_parameters() << " parameters ("
            << config.torch_dtype << ", seed " << vm["seed"].as<uint64_t>() << ") to " << out.string() << "\n";
  return 0;
}

int info(const fs::path& dir, bool as_json) {
  ModelConfig c = ModelConfig::load(dir);
  SafetensorsCheckpoint ckpt(dir);
  json tensors = json::array();
  int64_t params = 0;
  std::map<std::string, int64_t> by_dtype;
  for (const auto& n : ckpt.names()) {
    const TensorInfo& t = ckpt.info(n);
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    params += numel;
    by_dtype[t.dtype_name] += numel;
    tensors.push_back({{"name", n}, {"dtype", t.dtype_name}, {"shape", t.shape}});
  }
  json j = {{"architecture", c.architecture}, {"parameters", params}, {"config_dtype", c.torch_dtype},
            {"dtypes", by_dtype}, {"hidden_size", c.hidden_size}, {"layers", c.num_hidden_layers},
            {"heads", c.num_attention_heads}, {"kv_heads", c.num_key_value_heads}, {"head_dim", c.head_dim},
            {"intermediate_size", c.intermediate_size}, {"vocab_size", c.vocab_size},
            {"tie_word_embeddings", c.tie_word_embeddings}, {"tensors", tensors}};
  if (as_json) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << c.architecture << "  " << params << " parameters (" << format_number(double(params) / 1e6)
            << "M), dtype " << c.torch_dtype << "\n"
            << "  hidden " << c.hidden_size << ", layers " << c.num_hidden_layers << ", heads " << c.num_attention_heads
            << " (kv " << c.num_key_value_heads << ", dim " << c.head_dim << "), mlp " << c.intermediate_size
            << ", vocab " << c.vocab_size << (c.tie_word_embeddings ? ", tied embeddings" : "") << "\n";
  TextTable t({"tensor", "dtype", "shape"});
  for (const auto& x : tensors) t.add({x["name"], x["dtype"], x["shape"].dump()});
  t.print(std::cout);
  return 0;
}

int logits(const fs::path& dir, const po::variables_map& vm) {
  LoadOptions lo;
  lo.dtype = vm["dtype"].as<std::string>();
  lo.device = vm["device"].as<std::string>();
  CausalLM model = load_model(dir, lo);
  torch::Device device = model->output_weight().device();
  torch::Tensor ids, mask, pos;
  if (vm.count("batch")) {
    std::ifstream in(vm["batch"].as<std::string>());
    json b = json::parse(in);
    auto to_tensor = [](const json& rows) {
      std::vector<int64_t> flat;
      int64_t cols = int64_t(rows.at(0).size());
      for (const auto& r : rows) {
        if (int64_t(r.size()) != cols) throw UsageError("--batch: rows must have equal length (pad them)");
        for (const auto& v : r) flat.push_back(v.get<int64_t>());
      }
      return torch::tensor(flat, torch::kInt64).view({int64_t(rows.size()), cols});
    };
    ids = to_tensor(b.at("input_ids"));
    if (b.contains("attention_mask")) mask = to_tensor(b["attention_mask"]);
    if (b.contains("position_ids")) pos = to_tensor(b["position_ids"]);
  } else if (vm.count("text")) {
    Tokenizer tok = Tokenizer::load(dir);
    auto v = tok.encode(vm["text"].as<std::string>());
    if (v.empty()) throw UsageError("--text encodes to no tokens");
    ids = torch::tensor(std::vector<int64_t>(v.begin(), v.end()), torch::kInt64).unsqueeze(0);
  } else {
    throw UsageError("warmup model logits: --text or --batch is required");
  }
  torch::NoGradGuard no_grad;
  ids = ids.to(device);
  if (mask.defined()) mask = mask.to(device);
  if (pos.defined()) pos = pos.to(device);
  torch::Tensor out = model->forward(ids, mask, pos).to(torch::kFloat32).cpu();  // (B, T, V)
  if (vm.count("out")) {
    auto targets = torch::roll(ids, -1, 1);
    auto lp = model->token_logprobs(ids, targets, mask, pos, vm["chunk"].as<int64_t>()).cpu();
    write_safetensors_file(vm["out"].as<std::string>(), {{"logits", out}, {"token_logprobs", lp}});
  }
  int64_t k = vm["top-k"].as<int64_t>();
  std::optional<Tokenizer> tok;
  if (fs::exists(dir / "tokenizer.json")) tok = Tokenizer::load(dir);
  for (int64_t b = 0; b < out.size(0); ++b) {
    auto last = out[b][out.size(1) - 1];
    auto [values, indices] = last.topk(k);
    std::cout << "sequence " << b << " next-token top-" << k << ":";
    for (int64_t i = 0; i < k; ++i) {
      int64_t id = indices[i].item<int64_t>();
      std::cout << "  " << id;
      if (tok && id < tok->vocab_size()) std::cout << " " << json(tok->decode({int32_t(id)})).dump();
      std::cout << " " << format_number(values[i].item<double>());
    }
    std::cout << "\n";
  }
  return 0;
}

}  // namespace

int cmd_model(const Args& args) {
  po::options_description opts("options");
  opts.add_options()
      ("action", po::value<std::string>(), "init | info | convert | logits | merge")
      ("dir", po::value<std::string>(), "model directory")
      ("config", po::value<std::string>(), "init: config.json of the model to create")
      ("out,o", po::value<std::string>(), "init/convert/merge: output directory; logits: safetensors file")
      ("seed", po::value<uint64_t>()->default_value(0), "init: random seed")
      ("dtype", po::value<std::string>()->default_value("auto"), "float32 | bfloat16 | float16 | auto")
      ("tokenizer", po::value<std::string>(), "init: copy tokenizer files from DIR (default: byte-level)")
      ("shard-size", po::value<std::string>()->default_value("5GB"), "largest safetensors shard")
      ("json", "info: machine-readable")
      ("text", po::value<std::string>(), "logits: prompt text")
      ("batch", po::value<std::string>(), "logits: JSON {input_ids, attention_mask?, position_ids?}")
      ("top-k", po::value<int64_t>()->default_value(5), "logits: tokens to show")
      ("device", po::value<std::string>()->default_value("cpu"), "logits: cpu | cuda | cuda:N | auto")
      ("chunk", po::value<int64_t>()->default_value(1024), "logits: rows per chunk for token_logprobs");
  po::positional_options_description pos;
  pos.add("action", 1).add("dir", 1);
  po::variables_map vm;
  if (!parse(args, kUsage, opts, vm, &pos)) return 0;
  if (!vm.count("action")) throw UsageError(std::string("warmup model: missing action\n") + kUsage);
  std::string action = vm["action"].as<std::string>();
  if (action == "init") return init(vm);
  if (!vm.count("dir")) throw UsageError("warmup model " + action + ": missing model DIR");
  fs::path dir = vm["dir"].as<std::string>();
  if (action == "info") return info(dir, vm.count("json") > 0);
  if (action == "logits") return logits(dir, vm);
  if (action == "convert") {
    if (!vm.count("out")) throw UsageError("warmup model convert: --out is required");
    LoadOptions lo;
    lo.dtype = vm["dtype"].as<std::string>();
    CausalLM model = load_model(dir, lo);
    save_model(model, vm["out"].as<std::string>(), parse_size(vm["shard-size"].as<std::string>()), dir);
    std::cout << "wrote " << vm["out"].as<std::string>() << "\n";
    return 0;
  }
  if (action == "merge") {
    // PEFT's merge_and_unload + save_pretrained: the base model with W += scale * B @ A.
    if (!vm.count("out")) throw UsageError("warmup model merge: --out is required");
    if (!is_adapter_dir(dir))
      throw UsageError("warmup model merge: " + dir.string() + " is not a PEFT adapter directory (no adapter_config.json, or it also has a config.json)");
    fs::path base;
    LoraOptions lo_opts = read_adapter_config(dir, &base);
    LoadOptions lo;
    lo.dtype = vm["dtype"].as<std::string>();
    CausalLM model = load_model(dir, lo);
    fs::path files = model_files_dir(dir);
    save_model(model, vm["out"].as<std::string>(), parse_size(vm["shard-size"].as<std::string>()), files);
    std::cout << "merged the LoRA adapter " << dir.string() << " (r " << lo_opts.r << ", alpha " << format_number(lo_opts.alpha)
              << ") into " << base.string() << "; wrote " << vm["out"].as<std::string>() << "\n";
    return 0;
  }
  throw UsageError("warmup model: unknown action '" + action + "' (init, info, convert, logits, merge)");
}

}  // namespace warmup::cli
