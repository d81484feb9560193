#include "runtime/host_policy.h"

#include <chrono>

#include <fstream>

#include "model/checkpoint.h"
#include "model/lora.h"
#include "model/safetensors.h"
#include "util/errors.h"
#include "util/log.h"

namespace warmup {
namespace fs = std::filesystem;

HostPolicy::HostPolicy(const ModelSpec& spec) : source_(spec.path) {
  if (spec.path.empty()) throw ConfigError("[model] path is required by this stage");
  LoadOptions lo;
  lo.dtype = spec.dtype;
  lo.device = spec.device;
  model_ = load_model(spec.path, lo);
  // Training writes into the weights: give the model its own memory, not the file's mapping.
  {
    torch::NoGradGuard ng;
    for (auto& p : model_->parameters()) p.set_data(p.clone());
  }
  device_ = model_->output_weight().device();
  // A PEFT adapter directory without tokenizer files (PEFT saves none unless told): its base's.
  files_ = model_files_dir(spec.path);
  tok_ = std::make_shared<const Tokenizer>(Tokenizer::load(files_));
  eos_ = eos_ids_for(files_, *tok_);
}

int64_t HostPolicy::enable_lora(const LoraOptions& options, uint64_t seed) {
  int64_t n = add_lora(*model_, options, seed);
  lora_ = options;
  return n;
}

const ChatTemplate& HostPolicy::chat_template() const {
  std::call_once(chat_once_, [this] {
    if (auto t = ChatTemplate::load(files_)) chat_ = std::make_shared<const ChatTemplate>(std::move(*t));
  });
  if (!chat_)
    throw DataError(source_.string() + ": the model has no chat template (no chat_template.jinja, no chat_template "
                    "in tokenizer_config.json): conversational data needs one");
  return *chat_;
}

std::string HostPolicy::apply_chat_template(const nlohmann::json& messages, bool add_generation_prompt) const {
  return chat_template().render(messages, add_generation_prompt);
}

ChatTokens HostPolicy::apply_training_chat_template(const nlohmann::json& messages, bool add_generation_prompt) const {
  chat_template();
  std::call_once(training_once_, [this] {
    training_chat_ = training_chat_template(chat_);
    if (std::string w = end_of_turn_warning(*training_chat_, *tok_); !w.empty()) log_warn(w);  // TRL warns too
  });
  return chat_template_tokens(*training_chat_, *tok_, messages, add_generation_prompt, true);
}

std::string HostPolicy::decode(const std::vector<int32_t>& ids) const {
  std::vector<int32_t> known;
  for (int32_t t : ids)
    if (t >= 0 && t < tok_->vocab_size()) known.push_back(t);
  return tok_->decode(known);
}

torch::Tensor HostPolicy::weighted_logprob_sum(const torch::Tensor& ids, const torch::Tensor& targets,
                                               const torch::Tensor& weights, const torch::Tensor& attention_mask,
                                               torch::Tensor* logprobs) {
  return model_->weighted_logprob_sum(ids.to(device()), targets.to(device()), weights.to(device()),
                                      attention_mask.defined() ? attention_mask.to(device()) : attention_mask, {},
                                      1024, logprobs);
}

torch::Tensor HostPolicy::token_logprobs(const torch::Tensor& ids, const torch::Tensor& targets,
                                         const torch::Tensor& attention_mask) {
  return model_->token_logprobs(ids.to(device()), targets.to(device()),
                                attention_mask.defined() ? attention_mask.to(device()) : attention_mask);
}

void HostPolicy::save(const fs::path& dir) {
  if (lora_) save_adapter(*model_, *lora_, dir, source_, files_);  // PEFT's format: the adapters only
  else save_model(model_, dir, 5'000'000'000ULL, files_);
}

void HostPolicy::load_weights(const fs::path& dir) {
  if (lora_) {
    load_adapter_weights(*model_, dir);
    return;
  }
  SafetensorsCheckpoint ckpt(dir);
  torch::NoGradGuard ng;
  for (auto& item : model_->named_parameters()) {
    auto t = ckpt.tensor(item.key());
    if (t.sizes() != item.value().sizes())
      throw DataError(dir.string() + ": tensor '" + item.key() + "' has the wrong shape for this model");
    item.value().copy_(t.to(item.value().device(), item.value().scalar_type()));
  }
}

// Copy: a new module with the same config, dtype and device holding a copy of the weights.
HostPolicy::HostPolicy(const HostPolicy& other, bool frozen)
    : source_(other.source_), files_(other.files_), model_(CausalLM(other.model_->config)), tok_(other.tok_), eos_(other.eos_),
      device_(other.device_) {
  auto dtype = const_cast<CausalLM&>(other.model_)->output_weight().scalar_type();
  model_->to(device_, dtype);
  torch::NoGradGuard ng;
  auto src = other.model_->named_parameters();
  for (auto& item : model_->named_parameters()) {
    item.value().copy_(src[item.key()]);
    if (frozen) item.value().set_requires_grad(false);
  }
  model_->activation_checkpointing = false;
  if (frozen) model_->eval();
}

std::unique_ptr<Policy> HostPolicy::frozen_copy() { return std::unique_ptr<Policy>(new HostPolicy(*this, true)); }

torch::Tensor HostPolicy::token_logprobs_at(const torch::Tensor& ids, const torch::Tensor& targets,
                                            const torch::Tensor& attention_mask, double temperature) {
  return model_->token_logprobs(ids.to(device()), targets.to(device()),
                                attention_mask.defined() ? attention_mask.to(device()) : attention_mask, {}, 1024,
                                temperature);
}

torch::Tensor HostPolicy::weighted_logprob_sum_at(const torch::Tensor& ids, const torch::Tensor& targets,
                                                  const torch::Tensor& weights, const torch::Tensor& attention_mask,
                                                  double temperature, torch::Tensor* logprobs, torch::Tensor* entropy) {
  return model_->weighted_logprob_sum(ids.to(device()), targets.to(device()), weights.to(device()),
                                      attention_mask.defined() ? attention_mask.to(device()) : attention_mask, {},
                                      1024, logprobs, temperature, entropy);
}

std::vector<GenerationResult> HostPolicy::run_engine(const std::vector<std::vector<int32_t>>& prompts,
                                                     const SampleOptions& o) {
  bool was_training = model_->is_training();
  if (!engine_) {
    EngineOptions eo;
    eo.kv_cache_mb = 256;
    eo.max_model_len = model_->config.max_position_embeddings;
    engine_ = std::make_unique<Engine>(model_, tok_, eos_, eo);
  }
  model_->eval();
  std::vector<GenerationRequest> reqs;
  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerationRequest r;
    r.id = std::to_string(i);
    r.prompt_ids = prompts[i];
    r.params.n = o.n, r.params.temperature = o.temperature, r.params.top_p = o.top_p, r.params.top_k = o.top_k;
    r.params.min_p = o.min_p, r.params.max_new_tokens = o.max_new_tokens, r.params.stop = o.stop;
    r.params.seed = o.seed + 1000 * uint64_t(i);
    r.params.sampling_logprobs = true;  // one float per token: last_sampling_logprobs
    reqs.push_back(std::move(r));
  }
  EngineStats before = engine_->stats();
  int64_t peak_running = 0, peak_blocks = 0;
  auto t0 = std::chrono::steady_clock::now();
  auto results = engine_->generate(std::move(reqs), [&](const EngineStats& s) {
    peak_running = std::max(peak_running, s.running);
    peak_blocks = std::max(peak_blocks, s.kv_blocks_used);
  });
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EngineStats after = engine_->stats();
  int64_t queries = after.prefix_cache_queries - before.prefix_cache_queries;
  last_stats_ = {{"forward_s", after.forward_seconds - before.forward_seconds},
                 {"sample_s", after.sample_seconds - before.sample_seconds},
                 {"host_s", after.host_seconds - before.host_seconds},
                 {"tokens_per_s", double(after.generated_tokens - before.generated_tokens) / std::max(wall, 1e-9)},
                 {"steps", double(after.steps - before.steps)},
                 {"num_preemptions", double(after.preemptions - before.preemptions)},
                 {"prefix_cache_hit_rate",
                  queries ? double(after.prefix_cache_hits - before.prefix_cache_hits) / double(queries) : 0.0},
                 {"kv_cache_usage_perc", after.kv_blocks_total ? double(peak_blocks) / double(after.kv_blocks_total) : 0.0},
                 {"max_num_running", double(peak_running)}};
  // The KV cache is given back between rollouts: the training step that follows needs the memory.
  engine_->release_kv_cache();
  model_->train(was_training);
  last_sampling_.clear();
  for (const auto& r : results)
    if (!r.error.empty()) throw DataError("generation: " + r.error);
  for (const auto& r : results) {
    last_sampling_.emplace_back();
    for (const auto& smp : r.samples) last_sampling_.back().push_back(smp.sampling_logprobs);
  }
  return results;
}

std::vector<std::vector<Completion>> HostPolicy::generate(const std::vector<std::string>& prompts,
                                                          const SampleOptions& o) {
  std::vector<std::vector<int32_t>> ids;
  for (const auto& p : prompts) ids.push_back(tok_->encode(p));
  std::vector<std::vector<Completion>> out;
  for (const auto& r : run_engine(ids, o)) {
    std::vector<Completion> cs;
    for (const auto& s : r.samples) cs.push_back({s.text, s.finish_reason, int64_t(s.token_ids.size())});
    out.push_back(std::move(cs));
  }
  return out;
}

std::vector<std::vector<TokenCompletion>> HostPolicy::generate_ids(const std::vector<std::vector<int32_t>>& prompts,
                                                                   const SampleOptions& o) {
  std::vector<std::vector<TokenCompletion>> out;
  for (const auto& r : run_engine(prompts, o)) {
    std::vector<TokenCompletion> cs;
    for (const auto& s : r.samples) cs.push_back({s.token_ids, s.text, s.finish_reason});
    out.push_back(std::move(cs));
  }
  return out;
}

}  // namespace warmup
