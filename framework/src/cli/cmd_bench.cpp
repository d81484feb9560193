// `warmup bench`: measurements printed as JSON, for the peer comparisons in bench/ (which run the
// peer in the same session and compute the ratios). Never used as a test.
#include <sys/resource.h>

#include <chrono>
#include <fstream>

#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>
#include <torch/csrc/autograd/profiler_legacy.h>

#include "cli/options_util.h"
#include "model/checkpoint.h"
#include "text/tokenizer.h"
#include "util/errors.h"
#include "warmup/training.h"

namespace warmup::cli {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;
}

// Documents: one per line; JSONL lines are read through `field` (or every string field joined).
std::vector<std::string> read_corpus(const std::string& path, const std::string& field) {
  std::ifstream in(path);
  if (!in) throw UsageError(path + ": cannot read corpus");
  std::vector<std::string> docs;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line[0] != '{') {
      docs.push_back(line);
      continue;
    }
    nlohmann::ordered_json j = nlohmann::ordered_json::parse(line);  // field order as in the file
    std::string doc;
    for (const auto& [k, v] : j.items())
      if (v.is_string() && (field.empty() || k == field)) doc += (doc.empty() ? "" : "\n") + v.get<std::string>();
    docs.push_back(doc);
  }
  return docs;
}

int bench_tokenizer(const po::variables_map& vm) {
  Tokenizer tok = Tokenizer::load(vm["tokenizer"].as<std::string>());
  auto docs = read_corpus(vm["corpus"].as<std::string>(), vm["field"].as<std::string>());
  size_t bytes = 0;
  for (const auto& d : docs) bytes += d.size();
  // Pass 1 starts with an empty piece cache ("cold"); later passes reuse it ("warm", best of).
  double cold = 0, warm = 1e30;
  size_t tokens = 0;
  int repeat = std::max(2, vm["repeat"].as<int>());
  for (int r = 0; r < repeat; ++r) {
    auto t0 = Clock::now();
    size_t n = 0;
    for (const auto& d : docs) n += tok.encode(d).size();
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (r == 0) cold = s;
    else warm = std::min(warm, s);
    tokens = n;
  }
  json j = {{"bench", "tokenizer_encode"}, {"impl", "warmup"}, {"threads", 1}, {"documents", docs.size()},
            {"bytes", bytes}, {"tokens", tokens}, {"cold_seconds", cold}, {"warm_seconds", warm},
            {"cold_tokens_per_s", double(tokens) / cold}, {"warm_tokens_per_s", double(tokens) / warm}};
  std::cout << j.dump() << "\n";
  return 0;
}

int bench_train_step(const po::variables_map& vm) {
  int threads = vm["threads"].as<int>();
  at::set_num_threads(threads);
  ModelConfig config = ModelConfig::load(vm["config"].as<std::string>());
  torch::ScalarType dtype = parse_dtype(vm["dtype"].as<std::string>(), config);
  CausalLM model = init_model(config, 0, dtype);
  model->train();
  model->activation_checkpointing = vm.count("checkpointing") > 0;
  int64_t B = vm["batch"].as<int64_t>(), T = vm["seq"].as<int64_t>();
  torch::manual_seed(1);
  auto ids = torch::randint(0, config.vocab_size, {B, T}, torch::kInt64);
  auto targets = torch::roll(ids, -1, 1);
  int steps = vm["steps"].as<int>(), warm = vm["warmup"].as<int>();
  std::vector<double> times;
  double loss_value = 0;
  bool bf16 = vm.count("bf16") > 0;
  std::string profile = vm["profile"].as<std::string>();
  for (int s = 0; s < warm + steps; ++s) {
    // --profile: a Chrome trace of the last measured step (op names, shapes, self times).
    std::optional<torch::autograd::profiler::RecordProfile> rec;
    if (!profile.empty() && s == warm + steps - 1) rec.emplace(profile);
    auto t0 = Clock::now();
    torch::Tensor loss;
    Autocast autocast(torch::kCPU, bf16);
    if (vm["head"].as<std::string>() == "fused") {
      auto w = torch::full({B, T}, -1.0 / double(B * T));  // mean NLL
      loss = model->weighted_logprob_sum(ids, targets, w, {}, {}, vm["chunk"].as<int64_t>());
    } else {
      loss = -model->token_logprobs(ids, targets, {}, {}, vm["chunk"].as<int64_t>()).mean();
    }
    loss.backward();
    for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
    loss_value = loss.item<double>();
    if (s >= warm) times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  double median = times[times.size() / 2];
  json j = {{"bench", "train_step_fwd_bwd"}, {"impl", "warmup"}, {"threads", threads},
            {"parameters", config.num_parameters()}, {"dtype", dtype_name(dtype)}, {"batch", B}, {"seq", T},
            {"steps", steps}, {"median_step_s", median}, {"tokens_per_s", double(B * T) / median},
            {"loss", loss_value}, {"head", vm["head"].as<std::string>()}, {"bf16_autocast", bf16},
            {"peak_rss_mb", peak_rss_mb()}};
  std::cout << j.dump() << "\n";
  return 0;
}

}  // namespace

int cmd_bench(const Args& args) {
  po::options_description opts("options");
  opts.add_options()
      ("what", po::value<std::string>(), "tokenizer | train-step")
      ("tokenizer", po::value<std::string>(), "tokenizer: directory with tokenizer.json")
      ("corpus", po::value<std::string>(), "tokenizer: text file (a document per line) or JSONL")
      ("field", po::value<std::string>()->default_value(""), "tokenizer: JSONL field to use (default: all strings)")
      ("repeat", po::value<int>()->default_value(3), "tokenizer: passes over the corpus; the best is reported")
      ("config", po::value<std::string>(), "train-step: model config.json")
      ("batch", po::value<int64_t>()->default_value(4), "train-step: sequences per step")
      ("seq", po::value<int64_t>()->default_value(256), "train-step: tokens per sequence")
      ("steps", po::value<int>()->default_value(5), "train-step: measured steps")
      ("warmup", po::value<int>()->default_value(1), "train-step: unmeasured steps first")
      ("threads", po::value<int>()->default_value(1), "train-step: intra-op threads")
      ("dtype", po::value<std::string>()->default_value("float32"), "train-step: parameter dtype")
      ("chunk", po::value<int64_t>()->default_value(1024), "train-step: log-prob rows per chunk")
      ("checkpointing", "train-step: activation checkpointing")
      ("bf16", "train-step: bf16 autocast (as sft/grpo with bf16 = true)")
      ("profile", po::value<std::string>()->default_value(""), "train-step: write a Chrome trace of the last step here")
      ("head", po::value<std::string>()->default_value("fused"),
       "train-step: fused (gradient in the forward pass) | recompute (token_logprobs)");
  po::positional_options_description pos;
  pos.add("what", 1);
  po::variables_map vm;
  if (!parse(args, "usage: warmup bench tokenizer --tokenizer DIR --corpus FILE [--field F] [--repeat N]\n"
                   "       warmup bench train-step --config CONFIG.json [--batch B] [--seq T] [--threads N]",
             opts, vm, &pos))
    return 0;
  std::string what = vm.count("what") ? vm["what"].as<std::string>() : "";
  if (what == "tokenizer") {
    if (!vm.count("tokenizer") || !vm.count("corpus")) throw UsageError("bench tokenizer: --tokenizer and --corpus are required");
    return bench_tokenizer(vm);
  }
  if (what == "train-step") {
    if (!vm.count("config")) throw UsageError("bench train-step: --config is required");
    return bench_train_step(vm);
  }
  throw UsageError("warmup bench: expected tokenizer or train-step");
}

}  // namespace warmup::cli
