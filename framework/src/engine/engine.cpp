// See engine.h. One scheduling iteration: admit (re-prefill preempted sequences, then prefill new
// prompts while batch slots and KV blocks allow), then one decode step for every running sequence.
#include "engine/engine.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <random>

#include <nlohmann/json.hpp>

#include "util/brief.h"
#include "util/errors.h"
#include "util/log.h"

namespace warmup {

struct Engine::Seq {
  Group* group = nullptr;
  int index = 0;
  std::vector<int32_t> tokens;  // prompt + generated
  int64_t prompt_len = 0;
  int64_t computed = 0;         // positions whose keys/values are in the cache
  SeqBlocks kv;
  torch::Generator gen;
  SampleResult result;
  Utf8Stream stream;
  std::string text;
  size_t streamed = 0;   // bytes of text already passed to on_delta
  size_t reported = 0;   // tokens already passed to on_delta
  bool started = false;  // on_delta called at least once
  bool done = false;
};

struct Engine::Group {
  GenerationRequest req;
  std::vector<std::unique_ptr<Seq>> seqs;
  int remaining = 0;
  size_t max_stop = 0;  // longest stop string
  std::vector<float> prompt_logprobs;             // params.prompt_logprobs >= 0
  std::vector<TopLogprobs> prompt_top_logprobs;
  std::promise<GenerationResult> promise;
};

namespace {

constexpr float kMasked = std::numeric_limits<float>::lowest() / 2;

}  // namespace

std::vector<int32_t> eos_ids_for(const std::filesystem::path& dir, const Tokenizer& tok) {
  std::vector<int32_t> ids;
  std::filesystem::path file = dir / "generation_config.json";
  std::ifstream in(file);
  if (in) {
    auto j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_object() && j.contains("eos_token_id") && !j["eos_token_id"].is_null()) {
      const auto& e = j["eos_token_id"];
      nlohmann::json list = e.is_array() ? e : nlohmann::json::array({e});
      for (const auto& x : list) {
        if (!x.is_number_unsigned() || x.get<uint64_t>() >= uint64_t(tok.vocab_size()))
          throw DataError(file.string() + ": eos_token_id " + brief(e) + " is not a token id (integers in 0.." +
                          std::to_string(tok.vocab_size() - 1) + ", the tokenizer's ids)");
        ids.push_back(int32_t(x.get<uint64_t>()));
      }
    }
  }
  if (ids.empty() && tok.eos_id()) ids.push_back(*tok.eos_id());
  return ids;
}

Engine::Engine(CausalLM model, std::shared_ptr<const Tokenizer> tokenizer, std::vector<int32_t> eos_ids,
               EngineOptions options)
    : model_(std::move(model)), tok_(std::move(tokenizer)), eos_(std::move(eos_ids)), opt_(options),
      device_(model_->output_weight().device()) {
  if (opt_.max_model_len > model_->config.max_position_embeddings)
    throw ConfigError("max_model_len " + std::to_string(opt_.max_model_len) + " is more than the model's " +
                      std::to_string(model_->config.max_position_embeddings) +
                      " positions (config.json max_position_embeddings)");
  model_->eval();
  auto dtype = model_->output_weight().scalar_type();
  int64_t blocks = BlockPool::blocks_for_budget(model_->config, opt_.block_size, dtype, opt_.kv_cache_mb);
  pool_ = std::make_unique<BlockPool>(model_->config, blocks, opt_.block_size, dtype, device_);
}

Engine::~Engine() = default;

std::future<GenerationResult> Engine::submit(GenerationRequest req) {
  auto g = std::make_shared<Group>();
  auto fut = g->promise.get_future();
  const SamplingParams& p = req.params;
  std::string error = p.validate();
  int64_t P = int64_t(req.prompt_ids.size());
  if (error.empty() && P == 0) error = "the prompt is empty";
  if (error.empty() && P >= opt_.max_model_len)
    error = "the prompt has " + std::to_string(P) + " tokens; max_model_len is " + std::to_string(opt_.max_model_len);
  for (int32_t t : req.prompt_ids)
    if (error.empty() && (t < 0 || t >= model_->config.vocab_size)) error = "prompt token id " + std::to_string(t) + " is outside the vocabulary";
  for (const auto& [t, bias] : p.logit_bias)
    if (error.empty() && (t < 0 || t >= model_->config.vocab_size))
      error = "logit_bias token id " + std::to_string(t) + " is outside the vocabulary (0.." +
              std::to_string(model_->config.vocab_size - 1) + ")";
  if (error.empty()) {
    int64_t blocks_needed = (P + opt_.block_size - 1) / opt_.block_size + p.n;
    if (blocks_needed > pool_->num_blocks())
      error = "the request needs " + std::to_string(blocks_needed) + " KV blocks; the cache has " +
              std::to_string(pool_->num_blocks()) + " (raise kv_cache_mb)";
  }
  if (!error.empty()) {
    GenerationResult r;
    r.id = req.id, r.prompt_tokens = P, r.error = error;
    g->promise.set_value(std::move(r));
    return fut;
  }
  for (const auto& s : p.stop) g->max_stop = std::max(g->max_stop, s.size());
  uint64_t seed = p.seed ? *p.seed : std::random_device()();
  for (int i = 0; i < p.n; ++i) {
    auto s = std::make_unique<Seq>();
    s->group = g.get();
    s->index = i;
    s->tokens = req.prompt_ids;
    s->prompt_len = P;
    s->gen = at::make_generator<at::CPUGeneratorImpl>(seed + uint64_t(i));
    g->seqs.push_back(std::move(s));
  }
  g->remaining = p.n;
  g->req = std::move(req);
  {
    std::lock_guard<std::mutex> lock(mu_);
    waiting_.push_back(std::move(g));
    stats_.waiting = int64_t(waiting_.size());
  }
  cv_.notify_all();
  return fut;
}

std::vector<GenerationResult> Engine::generate(std::vector<GenerationRequest> requests,
                                               const std::function<void(const EngineStats&)>& progress) {
  std::vector<std::future<GenerationResult>> futures;
  for (auto& r : requests) futures.push_back(submit(std::move(r)));
  torch::NoGradGuard no_grad;
  while (step())
    if (progress) progress(stats());
  std::vector<GenerationResult> out;
  for (auto& f : futures) out.push_back(f.get());
  return out;
}

void Engine::run() {
  torch::NoGradGuard no_grad;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !waiting_.empty() || !running_.empty() || !preempted_.empty(); });
      bool idle = waiting_.empty() && running_.empty() && preempted_.empty();
      if (stopping_ && (!drain_ || idle)) break;
    }
    try {
      step();
    } catch (const std::exception& e) {  // a failed forward pass fails the requests in it, not the server
      log_warn(std::string("engine step failed: ") + e.what() + "; failing the requests in flight");
      std::vector<std::shared_ptr<Group>> groups;
      {
        std::lock_guard<std::mutex> lock(mu_);
        groups = active_;
      }
      for (auto& g : groups) fail(*g, e.what());
      running_.clear();
      preempted_.clear();
      std::lock_guard<std::mutex> lock(mu_);
      retired_.clear();
    }
  }
  // Not draining: whatever is left is answered with an error.
  std::lock_guard<std::mutex> lock(mu_);
  auto fail = [](Group& g) {
    GenerationResult r;
    r.id = g.req.id, r.error = "the server is shutting down";
    g.promise.set_value(std::move(r));
  };
  for (auto& g : waiting_) fail(*g);
  waiting_.clear();
  for (auto& g : active_) fail(*g);
  active_.clear();
  running_.clear();
  preempted_.clear();
}

void Engine::stop(bool drain) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    drain_ = drain;
  }
  cv_.notify_all();
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

bool Engine::step() {
  struct Retire {  // finished groups are freed once nothing points into them
    Engine* e;
    ~Retire() {
      std::lock_guard<std::mutex> lock(e->mu_);
      e->retired_.clear();
    }
  } retire{this};
  drop_cancelled();
  admit();
  bool waiting;
  {
    std::lock_guard<std::mutex> lock(mu_);
    waiting = !waiting_.empty();
  }
  auto count = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.running = int64_t(running_.size());
    stats_.waiting = int64_t(waiting_.size() + preempted_.size());
  };
  if (running_.empty()) {
    count();
    return waiting || !preempted_.empty();
  }
  decode();
  count();
  std::lock_guard<std::mutex> lock(mu_);
  stats_.steps++;
  return true;
}

// Runs `count` tokens of `s` from position `s.computed` through the model (B = 1) and returns the
// logits of the last one (V), or of all of them (count, V) with all_positions.
static torch::Tensor prefill_tokens(CausalLM& model, BlockPool& pool, Engine::Seq& s, int64_t count,
                                    torch::Device device, bool all_positions = false);

void Engine::admit() {
  while (!preempted_.empty() && int64_t(running_.size()) < opt_.max_batch) {
    Seq* s = preempted_.front();
    int64_t len = int64_t(s->tokens.size());
    if (pool_->free_blocks() < (len + opt_.block_size - 1) / opt_.block_size + 1) break;
    s->kv.reserve(*pool_, len);
    prefill_tokens(model_, *pool_, *s, len - 1, device_);  // the last token is decoded next
    running_.push_back(s);
    preempted_.pop_front();
  }
  if (!preempted_.empty()) return;  // they go first
  while (true) {
    std::shared_ptr<Group> g;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (waiting_.empty()) return;
      const auto& next = waiting_.front();
      int64_t n = next->req.params.n, P = int64_t(next->req.prompt_ids.size());
      if (!running_.empty() && int64_t(running_.size()) + n > opt_.max_batch) return;
      if (pool_->free_blocks() < (P + opt_.block_size - 1) / opt_.block_size + n) return;
      g = waiting_.front();
      waiting_.pop_front();
      active_.push_back(g);
    }
    prefill(*g);
  }
}

static torch::Tensor prefill_tokens(CausalLM& model, BlockPool& pool, Engine::Seq& s, int64_t count,
                                    torch::Device device, bool all_positions) {
  int64_t start = s.computed, bs = pool.block_size();
  std::vector<int64_t> ids(s.tokens.begin() + start, s.tokens.begin() + start + count), write, read;
  for (int64_t p = start; p < start + count; ++p) write.push_back(s.kv.slot(p, bs));
  for (int64_t p = 0; p < start + count; ++p) read.push_back(s.kv.slot(p, bs));
  auto i64 = torch::TensorOptions().dtype(torch::kInt64).device(device);
  KVView kv;
  kv.k_pool = &pool.k, kv.v_pool = &pool.v;
  kv.write_slots = torch::tensor(write, i64);
  kv.read_slots = torch::tensor(read, i64).unsqueeze(0);  // (1, L)
  int64_t L = start + count;
  auto q_pos = torch::arange(start, start + count, i64).unsqueeze(1);  // (T, 1)
  auto k_pos = torch::arange(0, L, i64).unsqueeze(0);                  // (1, L)
  kv.mask = torch::zeros({count, L}, pool.k[0].options()).masked_fill(k_pos > q_pos, kMasked).view({1, 1, count, L});
  auto logits = model->forward_cached(torch::tensor(ids, i64).unsqueeze(0), q_pos.view({1, count}), kv, all_positions);
  s.computed = start + count;
  return logits[0].to(torch::kCPU);
}

// Prefills the whole prompt of `s` in chunks of all-position logits, recording the raw log-prob of
// each prompt token after the first (and `top` alternatives) into lp/top_lp; returns the last
// position's logits (V). Memory: one chunk's (chunk, V) logits at a time.
static torch::Tensor prefill_with_prompt_logprobs(CausalLM& model, BlockPool& pool, Engine::Seq& s, int64_t P,
                                                  torch::Device device, int top, std::vector<float>& lp,
                                                  std::vector<TopLogprobs>& top_lp) {
  constexpr int64_t kChunk = 256;
  torch::Tensor last;
  while (s.computed < P) {
    int64_t start = s.computed, count = std::min(kChunk, P - start);
    torch::Tensor logits = prefill_tokens(model, pool, s, count, device, /*all_positions=*/true);  // (count, V)
    torch::Tensor logp = torch::log_softmax(logits, 1);
    for (int64_t j = 0; j < count; ++j) {
      int64_t target = start + j + 1;  // position start + j predicts token start + j + 1
      if (target >= P) break;
      lp.push_back(logp[j][s.tokens[size_t(target)]].item<float>());
      if (top > 0) top_lp.push_back(top_logprobs(logp[j], top));
    }
    last = logits[count - 1];
  }
  return last;
}

void Engine::prefill(Group& g) {
  Seq& first = *g.seqs[0];
  int64_t P = first.prompt_len;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.prompt_tokens += P;
  }
  const SamplingParams& p = g.req.params;
  if (p.max_new_tokens == 0 && p.prompt_logprobs < 0) {
    for (auto& s : g.seqs) finish(*s, "length");
    return;
  }
  first.kv.reserve(*pool_, P);
  torch::Tensor logits = p.prompt_logprobs >= 0
                             ? prefill_with_prompt_logprobs(model_, *pool_, first, P, device_, p.prompt_logprobs,
                                                            g.prompt_logprobs, g.prompt_top_logprobs)
                             : prefill_tokens(model_, *pool_, first, P, device_);
  if (p.max_new_tokens == 0) {
    for (auto& s : g.seqs) finish(*s, "length");
    return;
  }
  for (size_t i = 1; i < g.seqs.size(); ++i) {  // the other samples share the prompt's cache
    g.seqs[i]->kv = first.kv.fork(*pool_, P);
    g.seqs[i]->computed = P;
  }
  std::vector<Seq*> live;
  for (auto& s : g.seqs) live.push_back(s.get());
  for (Seq* s : live) {
    if (s->done) continue;
    try {
      append(*s, sample(*s, logits), logits);
    } catch (const std::exception& e) {
      fail(g, e.what());
    }
  }
  for (Seq* s : live)
    if (!s->done) running_.push_back(s);
}

void Engine::preempt_one() {
  Seq* victim = running_.back();
  running_.pop_back();
  victim->kv.release(*pool_);
  victim->computed = 0;
  preempted_.push_front(victim);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.preemptions++;
}

void Engine::decode() {
  int64_t bs = opt_.block_size;
  // Make room for one more position per sequence, preempting the newest when blocks run out.
  while (true) {
    int64_t need = 0;
    for (Seq* s : running_) need += int64_t(s->tokens.size()) > int64_t(s->kv.blocks.size()) * bs;
    if (need <= pool_->free_blocks()) break;
    if (running_.size() == 1) {  // cannot grow even alone: stop it
      finish(*running_[0], "length");
      running_.clear();
      return;
    }
    preempt_one();
  }
  for (Seq* s : running_) s->kv.reserve(*pool_, int64_t(s->tokens.size()));

  int64_t B = int64_t(running_.size()), Lmax = 0;
  for (Seq* s : running_) Lmax = std::max(Lmax, int64_t(s->tokens.size()));
  std::vector<int64_t> ids, pos, write, read(size_t(B * Lmax));
  auto mask = torch::zeros({B, Lmax}, torch::kFloat32);
  auto m = mask.accessor<float, 2>();
  for (int64_t b = 0; b < B; ++b) {
    Seq* s = running_[size_t(b)];
    int64_t len = int64_t(s->tokens.size());
    ids.push_back(s->tokens.back());
    pos.push_back(len - 1);
    write.push_back(s->kv.slot(len - 1, bs));
    for (int64_t j = 0; j < Lmax; ++j) {
      read[size_t(b * Lmax + j)] = s->kv.slot(j < len ? j : 0, bs);
      if (j >= len) m[b][j] = kMasked;
    }
  }
  auto i64 = torch::TensorOptions().dtype(torch::kInt64).device(device_);
  KVView kv;
  kv.k_pool = &pool_->k, kv.v_pool = &pool_->v;
  kv.write_slots = torch::tensor(write, i64);
  kv.read_slots = torch::tensor(read, i64).view({B, Lmax});
  kv.mask = mask.to(device_, pool_->k[0].scalar_type()).view({B, 1, 1, Lmax});
  auto logits = model_->forward_cached(torch::tensor(ids, i64).view({B, 1}), torch::tensor(pos, i64).view({B, 1}), kv)
                    .to(torch::kCPU);  // (B, V)
  std::vector<Seq*> batch = running_;
  for (int64_t b = 0; b < B; ++b) {
    Seq* s = batch[size_t(b)];
    if (s->done) continue;  // its request failed earlier in this step
    s->computed = int64_t(s->tokens.size());
    auto row = logits[b];
    try {
      append(*s, sample(*s, row), row);
    } catch (const std::exception& e) {
      fail(*s->group, e.what());
    }
  }
  running_.erase(std::remove_if(running_.begin(), running_.end(), [](Seq* s) { return s->done; }), running_.end());
}

Sampled Engine::sample(Seq& s, const torch::Tensor& logits) {
  const SamplingParams& p = s.group->req.params;
  int64_t generated = int64_t(s.tokens.size()) - s.prompt_len;
  if (generated >= p.min_tokens || (p.ignore_eos && p.stop_token_ids.empty()))
    return sample_token(logits, p, s.gen, s.tokens, size_t(s.prompt_len));
  // vLLM's min_tokens: the tokens that would end the output cannot be drawn yet.
  torch::Tensor l = logits.to(torch::kFloat32).clone();
  auto acc = l.accessor<float, 1>();
  if (!p.ignore_eos)
    for (int32_t t : eos_)
      if (t < l.size(0)) acc[t] = -std::numeric_limits<float>::infinity();
  for (int32_t t : p.stop_token_ids)
    if (t >= 0 && t < l.size(0)) acc[t] = -std::numeric_limits<float>::infinity();
  return sample_token(l, p, s.gen, s.tokens, size_t(s.prompt_len));
}

void Engine::append(Seq& s, const Sampled& t, const torch::Tensor& logits) {
  const SamplingParams& p = s.group->req.params;
  s.tokens.push_back(t.token);
  s.result.token_ids.push_back(t.token);
  if (p.logprobs) {  // raw: log_softmax of the model's logits before any processing
    torch::Tensor logp = torch::log_softmax(logits.to(torch::kFloat32), 0);
    s.result.logprobs.push_back(logp[t.token].item<float>());
    if (p.top_logprobs > 0) s.result.top_logprobs.push_back(top_logprobs(logp, p.top_logprobs));
  }
  if (opt_.keep_logits) s.result.step_logits.push_back(logits.clone());
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.generated_tokens++;
  }
  bool eos = !p.ignore_eos && std::find(eos_.begin(), eos_.end(), t.token) != eos_.end();
  bool stop_id = std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), t.token) != p.stop_token_ids.end();
  if (eos || stop_id) return finish(s, "stop");
  size_t before = s.text.size();
  // Ids past the tokenizer (padded embedding rows) carry no text.
  if (t.token < tok_->vocab_size()) s.text += s.stream.push(tok_->decode_bytes({t.token}));
  if (!p.stop.empty()) {
    size_t from = before >= s.group->max_stop ? before - s.group->max_stop + 1 : 0;
    size_t best = std::string::npos, best_len = 0;
    for (const auto& stop : p.stop) {
      size_t at = s.text.find(stop, from);
      if (at < best) best = at, best_len = stop.size();
    }
    if (best != std::string::npos) {
      s.text.resize(best + (p.include_stop_str_in_output ? best_len : 0));
      s.stream = Utf8Stream();  // bytes after the stop are dropped
      return finish(s, "stop");
    }
  }
  if (s.group->req.on_delta) {  // hold back what could still become a stop string
    size_t safe = s.text.size() - std::min(s.text.size(), s.group->max_stop ? s.group->max_stop - 1 : 0);
    while (safe > s.streamed && (static_cast<unsigned char>(s.text[safe]) & 0xC0) == 0x80) --safe;
    if (safe > s.streamed) emit(s, safe, "");
  }
  int64_t generated = int64_t(s.tokens.size()) - s.prompt_len;
  if (generated >= p.max_new_tokens || int64_t(s.tokens.size()) >= opt_.max_model_len) finish(s, "length");
}

void Engine::emit(Seq& s, size_t text_end, const std::string& finish_reason) {
  StreamDelta d;
  d.index = s.index;
  d.text = s.text.substr(s.streamed, text_end - s.streamed);
  d.finish_reason = finish_reason;
  const SampleResult& r = s.result;
  d.token_ids.assign(r.token_ids.begin() + std::ptrdiff_t(s.reported), r.token_ids.end());
  if (!r.logprobs.empty()) d.logprobs.assign(r.logprobs.begin() + std::ptrdiff_t(s.reported), r.logprobs.end());
  if (!r.top_logprobs.empty())
    d.top_logprobs.assign(r.top_logprobs.begin() + std::ptrdiff_t(s.reported), r.top_logprobs.end());
  if (!s.started) {
    d.prompt_logprobs = s.group->prompt_logprobs;
    d.prompt_top_logprobs = s.group->prompt_top_logprobs;
    s.started = true;
  }
  s.streamed = text_end;
  s.reported = r.token_ids.size();
  s.group->req.on_delta(d);
}

void Engine::drop_cancelled() {
  auto is_cancelled = [](const std::shared_ptr<Group>& g) { return g->req.cancelled && g->req.cancelled->load(); };
  std::vector<std::shared_ptr<Group>> queued, admitted;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if (is_cancelled(*it)) {
        queued.push_back(*it);
        it = waiting_.erase(it);
      } else {
        ++it;
      }
    }
    for (const auto& g : active_)
      if (is_cancelled(g)) admitted.push_back(g);
  }
  for (auto& g : queued) {
    GenerationResult r;
    r.id = g->req.id, r.error = "cancelled", r.internal_error = true;
    g->promise.set_value(std::move(r));
  }
  for (auto& g : admitted) fail(*g, "cancelled");
}

void Engine::fail(Group& g, const std::string& why) {
  if (g.remaining <= 0) return;
  for (auto& s : g.seqs) {
    if (s->done) continue;
    s->done = true;
    s->kv.release(*pool_);
  }
  running_.erase(std::remove_if(running_.begin(), running_.end(), [&](Seq* s) { return s->group == &g; }), running_.end());
  preempted_.erase(std::remove_if(preempted_.begin(), preempted_.end(), [&](Seq* s) { return s->group == &g; }),
                   preempted_.end());
  g.remaining = 0;
  GenerationResult r;
  r.id = g.req.id;
  r.prompt_tokens = int64_t(g.req.prompt_ids.size());
  r.error = "generation failed: " + why;
  r.internal_error = true;
  g.promise.set_value(std::move(r));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find_if(active_.begin(), active_.end(), [&](const auto& p) { return p.get() == &g; });
  if (it != active_.end()) {
    retired_.push_back(std::move(*it));
    active_.erase(it);
  }
}

void Engine::finish(Seq& s, const std::string& reason) {
  s.text += s.stream.finish();
  if (s.group->req.on_delta) emit(s, s.text.size(), reason);
  s.streamed = s.text.size();
  s.result.text = s.text;
  s.result.finish_reason = reason;
  s.done = true;
  s.kv.release(*pool_);
  Group& g = *s.group;
  if (--g.remaining > 0) return;
  GenerationResult r;
  r.id = g.req.id;
  r.prompt_tokens = int64_t(g.req.prompt_ids.size());
  r.prompt_logprobs = std::move(g.prompt_logprobs);
  r.prompt_top_logprobs = std::move(g.prompt_top_logprobs);
  for (auto& x : g.seqs) r.samples.push_back(std::move(x->result));
  g.promise.set_value(std::move(r));
  // Keep the group alive until the end of the step: callers still hold pointers to its sequences.
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find_if(active_.begin(), active_.end(), [&](const auto& p) { return p.get() == &g; });
  if (it != active_.end()) {
    retired_.push_back(std::move(*it));
    active_.erase(it);
  }
}

}  // namespace warmup
