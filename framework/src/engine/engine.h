// Generation engine, scheduled as vLLM's v1 scheduler: every step runs ONE forward over a flat
// batch of at most `max_num_batched_tokens` new tokens, mixing decode tokens of running sequences
// (first) with prefill chunks of new or preempted ones (long prompts are prefilled over several
// steps); a paged KV cache read in place by the attention (kernels/paged_attention.h); prefix
// caching across requests (kv_cache.h); the n samples of a prompt share its blocks; batched
// sampling on the model's device with per-sequence generators (sampling.h); preemption by
// recomputation when blocks run out; per-request seeds, stop strings and stop tokens,
// max_new_tokens and max_model_len.
//
// Synchronous use: generate(requests). Server use: submit() from any thread and run() the loop on
// one thread (it waits for work); stop() ends it after the in-flight requests (drain) or at once.
// Not here: HTTP (cli/cmd_serve.cpp), prompt rendering (text/tokenizer.h).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/kv_cache.h"
#include "engine/sampling.h"
#include "model/transformer.h"
#include "text/tokenizer.h"

namespace warmup {

// EOS ids of a model directory: generation_config.json's eos_token_id (int or list), else the
// tokenizer's eos token.
std::vector<int32_t> eos_ids_for(const std::filesystem::path& model_dir, const Tokenizer& tokenizer);

struct EngineOptions {
  int64_t max_batch = 64;                 // vLLM's max_num_seqs: sequences in flight together
  int64_t max_num_batched_tokens = 2048;  // new tokens per step (decode tokens + prefill chunks)
  int64_t block_size = 16;                // tokens per KV block
  double kv_cache_mb = 1024;              // KV cache budget in MiB (ignored when gpu_memory_utilization > 0)
  // > 0: size the KV cache so that the device's used memory reaches this fraction of its total
  // (vLLM's gpu_memory_utilization; on the CPU, of MemTotal, counting MemAvailable as free), after
  // the weights and an estimate of one step's activations.
  double gpu_memory_utilization = 0;
  bool enable_prefix_caching = true;      // vLLM's enable_prefix_caching
  int64_t max_model_len = 4096;           // prompt + completion cap (at most the model's positions)
  bool keep_logits = false;               // tests: keep every step's raw logits per sample
};

// What a streamed sample produced since its previous delta. The concatenated texts equal the
// final text, and the concatenated tokens (with their log-probs) the final token list; text is
// held back while it could still become a stop string, so a delta's text and tokens need not align.
struct StreamDelta {
  int index = 0;                         // sample index within the request
  std::string text;
  std::vector<int32_t> token_ids;
  std::vector<float> logprobs;           // when params.logprobs
  std::vector<TopLogprobs> top_logprobs; // when params.top_logprobs > 0
  std::string finish_reason;             // set on the sample's last delta
  // The sample's first delta, when params.prompt_logprobs >= 0: as GenerationResult's.
  std::vector<float> prompt_logprobs;
  std::vector<TopLogprobs> prompt_top_logprobs;
};

struct GenerationRequest {
  std::string id;
  std::vector<int32_t> prompt_ids;
  SamplingParams params;
  // Streaming: called on the engine thread with each sample's new text and tokens; the last call
  // of a sample carries its finish_reason.
  std::function<void(const StreamDelta&)> on_delta;
  // Set (from any thread) to abandon the request: at its next step the engine frees its cache and
  // answers it with an error ("cancelled").
  std::shared_ptr<std::atomic<bool>> cancelled;
};

struct SampleResult {
  std::vector<int32_t> token_ids;
  std::string text;
  std::vector<float> logprobs;            // when params.logprobs: raw log p(token) (vLLM's raw_logprobs)
  std::vector<TopLogprobs> top_logprobs;  // when params.top_logprobs > 0: per token
  std::vector<float> sampling_logprobs;   // when params.sampling_logprobs: SampledRow::sampling_logprob per token
  std::string finish_reason;              // "stop" | "length"
  std::vector<torch::Tensor> step_logits; // keep_logits only: (V) raw fp32 logits per token
};

struct GenerationResult {
  std::string id;
  int64_t prompt_tokens = 0;
  std::vector<SampleResult> samples;
  // params.prompt_logprobs >= 0: raw log p(prompt[i] | prompt[<i]) for i = 1..P-1 (the first
  // token has none) and that many alternatives per position.
  std::vector<float> prompt_logprobs;
  std::vector<TopLogprobs> prompt_top_logprobs;
  std::string error;  // non-empty: rejected (e.g. prompt longer than max_model_len) or failed
  bool internal_error = false;  // the failure is ours (e.g. non-finite logits), not the request's
};

// Counters are totals since the engine was made; gauges describe the last step.
struct EngineStats {
  int64_t prompt_tokens = 0, generated_tokens = 0, steps = 0, preemptions = 0;
  int64_t running = 0, waiting = 0;          // gauges: sequences decoding / waiting or preempted
  int64_t kv_blocks_used = 0, kv_blocks_total = 0;  // gauges
  int64_t prefix_cache_queries = 0;          // prompt tokens looked up in the prefix cache
  int64_t prefix_cache_hits = 0;             // of which found (not computed again)
  int64_t batched_tokens = 0;                // gauge: new tokens in the last step's forward
  double forward_seconds = 0;                // model forward (all steps)
  double sample_seconds = 0;                 // sampling
  double host_seconds = 0;                   // scheduling and bookkeeping (all but the two above)
  double kv_cache_usage() const { return kv_blocks_total ? double(kv_blocks_used) / double(kv_blocks_total) : 0; }
  double prefix_cache_hit_rate() const {
    return prefix_cache_queries ? double(prefix_cache_hits) / double(prefix_cache_queries) : 0;
  }
};

class Engine {
 public:
  Engine(CausalLM model, std::shared_ptr<const Tokenizer> tokenizer, std::vector<int32_t> eos_ids,
         EngineOptions options);
  ~Engine();

  std::vector<GenerationResult> generate(std::vector<GenerationRequest> requests,
                                         const std::function<void(const EngineStats&)>& progress = {});
  std::future<GenerationResult> submit(GenerationRequest request);
  void run();                 // serve loop: blocks until stop(); later submits fail at once
  void stop(bool drain);      // drain: finish queued and running requests first
  EngineStats stats() const;
  // Frees the KV cache's memory between uses (GRPO's training step needs it); the next
  // generate() takes it back. Call it from the thread that calls generate(), never while run()
  // serves. Throws std::logic_error while requests are in flight.
  void release_kv_cache();
  const EngineOptions& options() const { return opt_; }
  const Tokenizer& tokenizer() const { return *tok_; }

  struct Group;
  struct Seq;

 private:
  struct Work;
  bool step();  // one scheduling iteration; false when there was nothing to do
  void drop_cancelled();
  std::vector<Work> schedule();
  bool grow(Seq& s, int64_t tokens);   // blocks for `tokens` positions; false when the pool is out
  void take_cached_prefix(Seq& s);     // prefix-cache hits for s's tokens (all but the last)
  void count_prefix_query(const Seq& s);  // after an admission: its tokens and cached positions
  void publish_full_blocks(Seq& s);
  void preempt(Seq* s);
  void fork(Group& g);                 // the other samples take the prompt's blocks of seqs[0]
  void forward_and_sample(std::vector<Work>& work);
  void append(Seq& s, const SampledRow& t, const torch::Tensor& logits_row);
  void emit(Seq& s, size_t text_end, const std::string& finish_reason);  // on_delta with what is new
  void finish(Seq& s, const std::string& reason);
  void release_blocks(Seq& s);
  void retire(Group& g);               // the group's result is set: free it at the end of the step
  // Ends every sample of `g` with an internal error (their cache is freed); other requests go on.
  void fail(Group& g, const std::string& why);
  void fail_active(const std::string& why);  // a step threw: every admitted request fails

  CausalLM model_;
  std::shared_ptr<const Tokenizer> tok_;
  std::vector<int32_t> eos_;
  EngineOptions opt_;
  std::unique_ptr<BlockPool> pool_;
  torch::Device device_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Group>> waiting_;
  std::vector<std::shared_ptr<Group>> active_;  // admitted groups
  std::vector<std::shared_ptr<Group>> retired_; // finished during the current step
  std::vector<Seq*> running_;                    // scheduled sequences, oldest first
  std::deque<Seq*> preempted_;                   // to be recomputed before new requests start
  int64_t live_seqs_ = 0;                        // unfinished sequences of admitted groups
  bool stopping_ = false, drain_ = true;
  bool closed_ = false;  // run() returned: submit() answers at once
  EngineStats stats_;
};

}  // namespace warmup
