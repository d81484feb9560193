// Generation engine: a paged KV cache, continuous batching (finished sequences leave the running
// batch and queued requests join at every step), one prefill per prompt shared by its n samples,
// per-request seeds, stop strings and stop tokens, max_new_tokens and max_model_len.
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
  int64_t max_batch = 64;          // sequences decoded together
  int64_t block_size = 16;         // tokens per KV block
  double kv_cache_mb = 1024;       // KV cache budget
  int64_t max_model_len = 4096;    // prompt + completion cap (at most the model's positions)
  bool keep_logits = false;        // tests: keep every step's raw logits per sample
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

struct EngineStats {
  int64_t prompt_tokens = 0, generated_tokens = 0, steps = 0, preemptions = 0;
  int64_t running = 0, waiting = 0;
};

class Engine {
 public:
  Engine(CausalLM model, std::shared_ptr<const Tokenizer> tokenizer, std::vector<int32_t> eos_ids,
         EngineOptions options);
  ~Engine();

  std::vector<GenerationResult> generate(std::vector<GenerationRequest> requests,
                                         const std::function<void(const EngineStats&)>& progress = {});
  std::future<GenerationResult> submit(GenerationRequest request);
  void run();                 // serve loop: blocks until stop()
  void stop(bool drain);      // drain: finish queued and running requests first
  EngineStats stats() const;
  const EngineOptions& options() const { return opt_; }
  const Tokenizer& tokenizer() const { return *tok_; }

  struct Group;
  struct Seq;

 private:
  bool step();  // one scheduling iteration; false when there was nothing to do
  void drop_cancelled();
  void admit();
  void prefill(Group& g);
  void decode();
  Sampled sample(Seq& s, const torch::Tensor& logits);  // logits: (V) raw fp32 on CPU
  void append(Seq& s, const Sampled& t, const torch::Tensor& logits);
  void emit(Seq& s, size_t text_end, const std::string& finish_reason);  // on_delta with what is new
  void finish(Seq& s, const std::string& reason);
  void preempt_one();
  // Ends every sample of `g` with an internal error (their cache is freed); other requests go on.
  void fail(Group& g, const std::string& why);

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
  std::vector<Seq*> running_;                    // their unfinished, cached sequences
  std::deque<Seq*> preempted_;
  bool stopping_ = false, drain_ = true;
  EngineStats stats_;
};

}  // namespace warmup
