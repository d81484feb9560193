// See engine.h. One step: schedule (running sequences' next tokens, decode first, then preempted
// and new requests' prefill chunks, within the token budget and the KV blocks; preempting the
// newest sequence when blocks run out), one paged forward over the flat batch, prompt log-probs
// where asked, one batched sampling call for every sequence that reached its end.
#include "engine/engine.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <limits>
#include <random>

#include <nlohmann/json.hpp>
#if WARMUP_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

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
  std::vector<int64_t> blocks;  // block table
  int64_t keyed = 0;            // leading full blocks whose prefix-cache keys are known
  uint64_t last_key = 0;        // key of block keyed - 1 (0: none)
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
  bool prompt_done = false;  // seqs[0] has computed the prompt and the others were forked
  size_t max_stop = 0;  // longest stop string
  std::vector<float> prompt_logprobs;             // params.prompt_logprobs >= 0
  std::vector<TopLogprobs> prompt_top_logprobs;
  std::promise<GenerationResult> promise;
};

namespace {

// (free, total) bytes of the device's memory: cudaMemGetInfo on CUDA, /proc/meminfo's
// MemAvailable and MemTotal on the CPU.
std::pair<double, double> device_memory(torch::Device device) {
#if WARMUP_WITH_CUDA
  if (device.is_cuda()) {
    size_t free = 0, total = 0;
    c10::cuda::CUDAGuard guard(device);
    if (cudaMemGetInfo(&free, &total) != cudaSuccess) throw std::runtime_error("cudaMemGetInfo failed");
    return {double(free), double(total)};
  }
#endif
  if (!device.is_cpu()) throw ConfigError("gpu_memory_utilization: cannot read the free memory of " + device.str());
  std::ifstream in("/proc/meminfo");
  std::string key;
  double value = 0, free = -1, total = -1;
  std::string unit;
  while (in >> key >> value >> unit) {
    if (key == "MemAvailable:") free = value * 1024;
    if (key == "MemTotal:") total = value * 1024;
  }
  if (free < 0 || total < 0) throw ConfigError("gpu_memory_utilization: /proc/meminfo has no MemAvailable/MemTotal");
  return {free, total};
}

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
  if (opt_.max_num_batched_tokens < 1) throw ConfigError("max_num_batched_tokens must be >= 1");
  if (opt_.block_size < 1 || opt_.block_size > 1024) throw ConfigError("block_size must be in [1, 1024]");
  if (opt_.max_batch < 1) throw ConfigError("max_num_seqs (max_batch) must be >= 1");
  if (!(opt_.gpu_memory_utilization >= 0 && opt_.gpu_memory_utilization <= 1))
    throw ConfigError("gpu_memory_utilization must be in (0, 1] (0: use kv_cache_mb)");
  auto dtype = model_->output_weight().scalar_type();
  double mb = opt_.kv_cache_mb;
  if (opt_.gpu_memory_utilization > 0) {
    // vLLM's rule: the instance may use this fraction of the device's total memory; the weights
    // are loaded (counted in what is used now), one step's activations are estimated.
    const ModelConfig& c = model_->config;
    double elem = double(c10::elementSize(dtype));
    double activations = double(opt_.max_num_batched_tokens) * double(4 * c.hidden_size + 2 * c.intermediate_size) * elem +
                         double(opt_.max_batch) * double(c.vocab_size) * 4.0 * 3.0;
    auto [free, total] = device_memory(device_);
    double bytes = opt_.gpu_memory_utilization * total - (total - free) - activations;
    if (bytes < BlockPool::bytes_per_block(c, opt_.block_size, dtype))
      throw ConfigError("gpu_memory_utilization " + std::to_string(opt_.gpu_memory_utilization) + " leaves no room for the KV cache on " +
                        device_.str() + " (" + std::to_string(int64_t(free / 1048576)) + " of " +
                        std::to_string(int64_t(total / 1048576)) + " MiB free)");
    mb = bytes / 1048576.0;
  }
  int64_t blocks = BlockPool::blocks_for_budget(model_->config, opt_.block_size, dtype, mb);
  pool_ = std::make_unique<BlockPool>(model_->config, blocks, opt_.block_size, dtype, device_,
                                      opt_.enable_prefix_caching);
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
    if (closed_) {  // run() has returned: nothing would ever answer
      GenerationResult r;
      r.id = g->req.id, r.prompt_tokens = P, r.error = "the server is shutting down";
      g->promise.set_value(std::move(r));
      return fut;
    }
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
  while (true) {
    bool more;
    try {
      more = step();
    } catch (const std::exception& e) {  // the requests in flight fail; queued ones still run
      fail_active(e.what());
      more = true;
    }
    if (!more) break;
    if (progress) progress(stats());
  }
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
      fail_active(e.what());
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
  closed_ = true;
}

void Engine::fail_active(const std::string& why) {
  std::vector<std::shared_ptr<Group>> groups;
  {
    std::lock_guard<std::mutex> lock(mu_);
    groups = active_;
  }
  for (auto& g : groups) fail(*g, why);
  running_.clear();
  preempted_.clear();
  std::lock_guard<std::mutex> lock(mu_);
  retired_.clear();
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

struct Engine::Work {
  Seq* seq;
  int64_t start = 0;         // first new position
  int64_t count = 0;         // new tokens this step (0: dropped, its sequence was preempted)
  bool all_logits = false;   // prompt log-probs: logits of every new token
  int64_t first_row = -1;    // its first row in the step's logits
};

bool Engine::step() {
  struct Retire {  // finished groups are freed once nothing points into them
    Engine* e;
    ~Retire() {
      std::lock_guard<std::mutex> lock(e->mu_);
      e->retired_.clear();
    }
  } retire_at_end{this};
  auto t0 = std::chrono::steady_clock::now();
  double fwd_before, smp_before;
  {
    std::lock_guard<std::mutex> lock(mu_);
    fwd_before = stats_.forward_seconds, smp_before = stats_.sample_seconds;
  }
  drop_cancelled();
  if (!pool_->allocated()) pool_->reallocate();
  std::vector<Work> work = schedule();
  int64_t batched = 0;
  for (const Work& w : work) batched += w.count;
  if (batched > 0) forward_and_sample(work);
  bool waiting;
  std::lock_guard<std::mutex> lock(mu_);
  waiting = !waiting_.empty();
  stats_.running = int64_t(running_.size());
  stats_.waiting = int64_t(waiting_.size() + preempted_.size());
  stats_.kv_blocks_used = pool_->used_blocks();
  stats_.kv_blocks_total = pool_->num_blocks();
  stats_.batched_tokens = batched;
  if (batched > 0) stats_.steps++;
  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  stats_.host_seconds += total - (stats_.forward_seconds - fwd_before) - (stats_.sample_seconds - smp_before);
  return batched > 0 || waiting || !running_.empty() || !preempted_.empty();
}

void Engine::release_kv_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!active_.empty() || !waiting_.empty()) throw std::logic_error("release_kv_cache: requests are in flight");
  pool_->release_memory();
}

bool Engine::grow(Seq& s, int64_t tokens) {
  int64_t bs = opt_.block_size;
  while (int64_t(s.blocks.size()) * bs < tokens) {
    int64_t b = pool_->allocate();
    if (b < 0) return false;
    s.blocks.push_back(b);
  }
  return true;
}

void Engine::release_blocks(Seq& s) {
  for (int64_t b : s.blocks) pool_->release(b);
  s.blocks.clear();
  s.computed = 0, s.keyed = 0, s.last_key = 0;
}

void Engine::take_cached_prefix(Seq& s) {
  // At least the last token is computed again: its logits are what the step is for.
  int64_t bs = opt_.block_size, len = int64_t(s.tokens.size());
  int64_t max_blocks = (len - 1) / bs;
  int64_t hits = 0;
  uint64_t parent = 0;
  for (int64_t i = 0; i < max_blocks; ++i) {
    const int32_t* t = s.tokens.data() + i * bs;
    uint64_t key = block_key(parent, t, bs);
    int64_t b = pool_->lookup(key, parent, t);
    if (b < 0) break;
    s.blocks.push_back(b);
    parent = key;
    ++hits;
  }
  s.computed = hits * bs, s.keyed = hits, s.last_key = parent;
}

void Engine::count_prefix_query(const Seq& s) {
  if (!pool_->prefix_caching()) return;
  std::lock_guard<std::mutex> lock(mu_);
  stats_.prefix_cache_queries += int64_t(s.tokens.size());
  stats_.prefix_cache_hits += s.computed;
}

void Engine::publish_full_blocks(Seq& s) {
  int64_t bs = opt_.block_size;
  while ((s.keyed + 1) * bs <= s.computed) {
    const int32_t* t = s.tokens.data() + s.keyed * bs;
    uint64_t key = block_key(s.last_key, t, bs);
    pool_->publish(s.blocks[size_t(s.keyed)], key, s.last_key, t);
    s.last_key = key;
    ++s.keyed;
  }
}

void Engine::preempt(Seq* s) {
  running_.erase(std::remove(running_.begin(), running_.end(), s), running_.end());
  release_blocks(*s);
  Group& g = *s->group;
  if (s->index == 0 && !g.prompt_done) {  // its prompt log-probs are computed again
    g.prompt_logprobs.clear();
    g.prompt_top_logprobs.clear();
  }
  preempted_.push_front(s);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.preemptions++;
}

std::vector<Engine::Work> Engine::schedule() {
  constexpr int64_t kLogprobChunk = 256;  // prompt log-probs: (chunk, V) fp32 logits at a time
  std::vector<Work> work;
  int64_t budget = opt_.max_num_batched_tokens;
  bool preempted_now = false;
  auto needs_all_logits = [](const Seq& s) {
    return s.index == 0 && !s.group->prompt_done && s.group->req.params.prompt_logprobs >= 0;
  };
  auto chunk_of = [&](const Seq& s) {
    int64_t c = std::min<int64_t>(int64_t(s.tokens.size()) - s.computed, budget);
    return needs_all_logits(s) ? std::min(c, kLogprobChunk) : c;
  };
  // Running sequences: decode tokens first, then prefill chunks, oldest first within each.
  std::vector<Seq*> order;
  for (Seq* s : running_)
    if (int64_t(s->tokens.size()) - s->computed == 1) order.push_back(s);
  for (Seq* s : running_)
    if (int64_t(s->tokens.size()) - s->computed > 1) order.push_back(s);
  for (Seq* s : order) {
    if (budget <= 0) break;
    if (std::find(running_.begin(), running_.end(), s) == running_.end()) continue;  // preempted just now
    int64_t q = chunk_of(*s);
    bool fits = true;
    while (!grow(*s, s->computed + q)) {
      Seq* victim = running_.back();
      if (victim == s && running_.size() == 1) {  // cannot grow even alone: stop it
        finish(*s, "length");
        fits = false;
        break;
      }
      for (Work& w : work)
        if (w.seq == victim) budget += w.count, w.count = 0;
      preempt(victim);
      preempted_now = true;
      if (victim == s) {
        fits = false;
        break;
      }
    }
    if (!fits) continue;
    work.push_back({s, s->computed, q, needs_all_logits(*s)});
    budget -= q;
  }
  if (preempted_now) return work;
  // Preempted sequences are computed again before new requests start.
  while (budget > 0 && !preempted_.empty()) {
    Seq* s = preempted_.front();
    if (!needs_all_logits(*s)) take_cached_prefix(*s);
    int64_t len = int64_t(s->tokens.size());
    int64_t need = (len + opt_.block_size - 1) / opt_.block_size;
    if (running_.empty() && need > pool_->num_blocks()) {  // cannot fit again even alone: stop it
      release_blocks(*s);
      preempted_.pop_front();
      finish(*s, "length");
      continue;
    }
    // One block of headroom to grow into, unless it runs alone (then the whole pool may be its).
    int64_t more = need - int64_t(s->blocks.size()) + (running_.empty() ? 0 : 1);
    int64_t q = chunk_of(*s);
    if (pool_->free_blocks() < more || !grow(*s, s->computed + q)) {
      release_blocks(*s);
      break;
    }
    preempted_.pop_front();
    running_.push_back(s);
    count_prefix_query(*s);
    work.push_back({s, s->computed, q, needs_all_logits(*s)});
    budget -= q;
  }
  if (!preempted_.empty()) return work;
  while (budget > 0) {
    std::shared_ptr<Group> g;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (waiting_.empty()) break;
      const auto& next = waiting_.front();
      int64_t n = next->req.params.n;
      if (live_seqs_ > 0 && live_seqs_ + n > opt_.max_batch) break;
      g = next;
    }
    Seq& first = *g->seqs[0];
    const SamplingParams& p = g->req.params;
    if (p.prompt_logprobs < 0) take_cached_prefix(first);
    int64_t P = first.prompt_len, bs = opt_.block_size;
    int64_t more = (P + bs - 1) / bs - int64_t(first.blocks.size()) + p.n;
    int64_t q = chunk_of(first);
    if (pool_->free_blocks() < more || !grow(first, first.computed + q)) {
      release_blocks(first);
      break;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      waiting_.pop_front();
      active_.push_back(g);
      stats_.prompt_tokens += P;
    }
    count_prefix_query(first);
    live_seqs_ += p.n;
    if (p.max_new_tokens == 0 && p.prompt_logprobs < 0) {  // nothing to compute
      release_blocks(first);
      for (auto& s : g->seqs) finish(*s, "length");
      continue;
    }
    running_.push_back(&first);
    work.push_back({&first, first.computed, q, needs_all_logits(first)});
    budget -= q;
  }
  return work;
}

void Engine::fork(Group& g) {
  Seq& first = *g.seqs[0];
  int64_t P = first.prompt_len, bs = opt_.block_size;
  int64_t full = P / bs, partial = P % bs;
  for (size_t i = 1; i < g.seqs.size(); ++i) {
    Seq& s = *g.seqs[i];
    if (s.done) continue;
    bool ok = true;
    if (partial > 0) {
      int64_t fresh = pool_->allocate();
      if (fresh < 0) {
        ok = false;
      } else {
        pool_->copy_slots(first.blocks[size_t(full)], fresh, partial);
        for (int64_t b = 0; b < full; ++b) pool_->retain(first.blocks[size_t(b)]), s.blocks.push_back(first.blocks[size_t(b)]);
        s.blocks.push_back(fresh);
      }
    } else {
      for (int64_t b = 0; b < full; ++b) pool_->retain(first.blocks[size_t(b)]), s.blocks.push_back(first.blocks[size_t(b)]);
    }
    if (!ok) {  // no block for its copy: it computes the prompt again later (prefix-cache hits)
      preempted_.push_back(&s);
      continue;
    }
    s.computed = P, s.keyed = first.keyed, s.last_key = first.last_key;  // keyed <= P / block_size
    running_.push_back(&s);
  }
}

void Engine::forward_and_sample(std::vector<Work>& work) {
  auto t_fwd = std::chrono::steady_clock::now();
  int64_t bs = opt_.block_size;
  std::vector<int64_t> ids, pos, slots, rows;
  std::vector<int32_t> qsl = {0}, seq_lens;
  int64_t max_blocks = 0, max_q = 0, max_len = 0;
  std::vector<Work*> live;
  for (Work& w : work) {
    if (w.count <= 0) continue;
    live.push_back(&w);
    max_blocks = std::max<int64_t>(max_blocks, int64_t(w.seq->blocks.size()));
  }
  auto table = torch::zeros({int64_t(live.size()), std::max<int64_t>(max_blocks, 1)}, torch::kInt32);
  auto tab = table.accessor<int32_t, 2>();
  for (size_t i = 0; i < live.size(); ++i) {
    Work& w = *live[i];
    Seq& s = *w.seq;
    int64_t end = w.start + w.count;
    for (int64_t p = w.start; p < end; ++p) {
      ids.push_back(s.tokens[size_t(p)]);
      pos.push_back(p);
      slots.push_back(s.blocks[size_t(p / bs)] * bs + p % bs);
    }
    if (w.all_logits) {
      w.first_row = int64_t(rows.size());
      for (int64_t j = 0; j < w.count; ++j) rows.push_back(qsl.back() + j);
    } else if (end == int64_t(s.tokens.size())) {
      w.first_row = int64_t(rows.size());
      rows.push_back(qsl.back() + w.count - 1);
    }
    qsl.push_back(qsl.back() + int32_t(w.count));
    seq_lens.push_back(int32_t(end));
    for (size_t b = 0; b < s.blocks.size(); ++b) tab[int64_t(i)][int64_t(b)] = int32_t(s.blocks[b]);
    max_q = std::max(max_q, w.count), max_len = std::max(max_len, end);
  }
  auto i64 = torch::TensorOptions().dtype(torch::kInt64).device(device_);
  auto i32 = torch::TensorOptions().dtype(torch::kInt32);
  PagedKV kv;
  kv.k_cache = &pool_->k, kv.v_cache = &pool_->v;
  kv.meta.query_start_loc = torch::tensor(qsl, i32).to(device_);
  kv.meta.seq_lens = torch::tensor(seq_lens, i32).to(device_);
  kv.meta.block_table = table.to(device_);
  kv.meta.slot_mapping = torch::tensor(slots, i64);
  kv.meta.block_size = bs;
  kv.meta.max_query_len = max_q, kv.meta.max_seq_len = max_len;
  t_fwd = std::chrono::steady_clock::now();  // building the batch above counts as host time
  torch::Tensor logits = model_->forward_paged(torch::tensor(ids, i64), torch::tensor(pos, i64), kv,
                                               torch::tensor(rows, i64));  // (R, V) fp32
  for (Work* w : live) {
    w->seq->computed = w->start + w->count;
    publish_full_blocks(*w->seq);
  }
  auto t_smp = std::chrono::steady_clock::now();

  // Prompt log-probs (raw): position j predicts token j + 1.
  for (Work* w : live) {
    if (!w->all_logits) continue;
    Seq& s = *w->seq;
    Group& g = *s.group;
    int64_t P = s.prompt_len, top = g.req.params.prompt_logprobs;
    torch::Tensor chunk = logits.narrow(0, w->first_row, w->count);
    torch::Tensor logp = torch::log_softmax(chunk, 1);
    std::vector<int64_t> targets;
    for (int64_t j = 0; j < w->count && w->start + j + 1 < P; ++j) targets.push_back(s.tokens[size_t(w->start + j + 1)]);
    if (targets.empty()) continue;
    int64_t T = int64_t(targets.size());
    auto tgt = torch::tensor(targets, i64).unsqueeze(1);
    auto lp = logp.narrow(0, 0, T).gather(1, tgt).squeeze(1).to(torch::kCPU);
    auto acc = lp.accessor<float, 1>();
    for (int64_t j = 0; j < T; ++j) g.prompt_logprobs.push_back(acc[j]);
    if (top > 0) {
      auto [vals, idx] = logp.narrow(0, 0, T).topk(top, 1);
      vals = vals.to(torch::kCPU), idx = idx.to(torch::kCPU);
      auto va = vals.accessor<float, 2>();
      auto ia = idx.accessor<int64_t, 2>();
      for (int64_t j = 0; j < T; ++j) {
        TopLogprobs t;
        for (int64_t k = 0; k < top; ++k) t.emplace_back(int32_t(ia[j][k]), va[j][k]);
        g.prompt_top_logprobs.push_back(std::move(t));
      }
    }
  }

  // Every sequence that reached its end draws its next token; a prompt's last chunk also starts
  // the request's other samples, from the same logits.
  std::vector<Seq*> drawing;
  std::vector<int64_t> row_of;
  for (Work* w : live) {
    Seq& s = *w->seq;
    if (s.done || s.computed != int64_t(s.tokens.size())) continue;
    int64_t row = w->first_row + (w->all_logits ? w->count - 1 : 0);
    Group& g = *s.group;
    if (s.index == 0 && !g.prompt_done) {
      g.prompt_done = true;
      if (g.req.params.max_new_tokens == 0) {  // prompt log-probs only
        for (auto& x : g.seqs)
          if (!x->done) finish(*x, "length");
        continue;
      }
      fork(g);
      for (size_t i = 1; i < g.seqs.size(); ++i)
        if (!g.seqs[i]->done && g.seqs[i]->computed == g.seqs[i]->prompt_len && !g.seqs[i]->blocks.empty())
          drawing.push_back(g.seqs[i].get()), row_of.push_back(row);
    }
    drawing.push_back(&s), row_of.push_back(row);
  }
  if (drawing.empty()) {
    running_.erase(std::remove_if(running_.begin(), running_.end(), [](Seq* s) { return s->done; }), running_.end());
    std::lock_guard<std::mutex> lock(mu_);
    stats_.forward_seconds += std::chrono::duration<double>(t_smp - t_fwd).count();
    stats_.sample_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t_smp).count();
    return;
  }
  torch::Tensor picked = logits.index_select(0, torch::tensor(row_of, i64));  // (B, V)
  std::vector<SampleRow> sample_rows;
  for (Seq* s : drawing) {
    const SamplingParams& p = s->group->req.params;
    SampleRow r;
    r.params = &p;
    r.context = &s->tokens;
    r.prompt_len = size_t(s->prompt_len);
    r.generator = &s->gen;
    r.raw_logprobs = p.logprobs;
    r.top_logprobs = p.logprobs ? p.top_logprobs : 0;
    int64_t generated = int64_t(s->tokens.size()) - s->prompt_len;
    if (generated < p.min_tokens) {  // vLLM's min_tokens: what would end the output cannot be drawn yet
      if (!p.ignore_eos) r.banned = eos_;
      r.banned.insert(r.banned.end(), p.stop_token_ids.begin(), p.stop_token_ids.end());
    }
    sample_rows.push_back(std::move(r));
  }
  std::vector<SampledRow> drawn = sample_batch(picked, sample_rows);
  for (size_t i = 0; i < drawing.size(); ++i) {
    Seq& s = *drawing[i];
    if (s.done) continue;  // its request failed earlier in this step
    if (!drawn[i].error.empty()) {
      fail(*s.group, drawn[i].error);
      continue;
    }
    append(s, drawn[i], opt_.keep_logits ? picked[int64_t(i)] : torch::Tensor());
  }
  running_.erase(std::remove_if(running_.begin(), running_.end(), [](Seq* s) { return s->done; }), running_.end());
  std::lock_guard<std::mutex> lock(mu_);
  stats_.forward_seconds += std::chrono::duration<double>(t_smp - t_fwd).count();
  stats_.sample_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t_smp).count();
}

void Engine::append(Seq& s, const SampledRow& t, const torch::Tensor& logits_row) {
  const SamplingParams& p = s.group->req.params;
  s.tokens.push_back(t.token);
  s.result.token_ids.push_back(t.token);
  if (p.logprobs) {  // raw: log_softmax of the model's logits before any processing
    s.result.logprobs.push_back(t.raw_logprob);
    if (p.top_logprobs > 0) s.result.top_logprobs.push_back(t.top);
  }
  if (p.sampling_logprobs) s.result.sampling_logprobs.push_back(t.sampling_logprob);
  if (opt_.keep_logits) s.result.step_logits.push_back(logits_row.to(torch::kCPU).clone());
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

void Engine::retire(Group& g) {
  // Keep the group alive until the end of the step: callers still hold pointers to its sequences.
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find_if(active_.begin(), active_.end(), [&](const auto& p) { return p.get() == &g; });
  if (it != active_.end()) {
    retired_.push_back(std::move(*it));
    active_.erase(it);
  }
}

void Engine::fail(Group& g, const std::string& why) {
  if (g.remaining <= 0) return;
  for (auto& s : g.seqs) {
    if (s->done) continue;
    s->done = true;
    --live_seqs_;
    release_blocks(*s);
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
  retire(g);
}

void Engine::finish(Seq& s, const std::string& reason) {
  s.text += s.stream.finish();
  if (s.group->req.on_delta) emit(s, s.text.size(), reason);
  s.streamed = s.text.size();
  s.result.text = s.text;
  s.result.finish_reason = reason;
  s.done = true;
  --live_seqs_;
  release_blocks(s);
  // Nothing may point at it once its group is retired (freed at the end of the step, or during
  // unwinding if the step throws).
  running_.erase(std::remove(running_.begin(), running_.end(), &s), running_.end());
  preempted_.erase(std::remove(preempted_.begin(), preempted_.end(), &s), preempted_.end());
  Group& g = *s.group;
  if (--g.remaining > 0) return;
  GenerationResult r;
  r.id = g.req.id;
  r.prompt_tokens = int64_t(g.req.prompt_ids.size());
  r.prompt_logprobs = std::move(g.prompt_logprobs);
  r.prompt_top_logprobs = std::move(g.prompt_top_logprobs);
  for (auto& x : g.seqs) r.samples.push_back(std::move(x->result));
  g.promise.set_value(std::move(r));
  retire(g);
}

}  // namespace warmup
