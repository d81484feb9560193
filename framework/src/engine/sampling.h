// Sampling parameters and the batched sampler. Processing order (vLLM's sampler,
// vllm/v1/sample/sampler.py and ops/penalties.py): banned ids (min_tokens) -> logit_bias -> repetition penalty (prompt and
// output tokens) -> frequency and presence penalties (output tokens only, OpenAI's formula
// logit -= count * frequency_penalty + (count > 0) * presence_penalty) -> temperature -> top-k ->
// top-p -> min-p -> draw. temperature 0 (below 1e-5) is greedy. `Sampled::logprob` is the chosen token's
// log-prob under the temperature-scaled distribution before top-k/top-p/min-p (TRL's convention
// for GRPO); the engine reports raw log-probs (vLLM's default logprobs_mode) separately.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace warmup {

struct SamplingParams {
  int n = 1;                         // completions per prompt
  double temperature = 1.0;          // 0 = greedy
  double top_p = 1.0;                // nucleus mass kept, (0, 1]
  int64_t top_k = 0;                 // keep the k most likely; 0 or -1 = off
  double min_p = 0.0;                // drop tokens below min_p * p(max); 0 = off
  double repetition_penalty = 1.0;   // >1 discourages tokens already in prompt or output
  std::optional<uint64_t> seed;      // per request; sample i uses seed + i
  int64_t max_new_tokens = 16;
  std::vector<std::string> stop;             // stop strings (not in the text unless include_stop)
  std::vector<int32_t> stop_token_ids;       // in addition to EOS
  bool include_stop_str_in_output = false;
  bool ignore_eos = false;
  double presence_penalty = 0.0;     // OpenAI: [-2, 2], once per distinct generated token
  double frequency_penalty = 0.0;    // OpenAI: [-2, 2], times the token's count in the output
  std::vector<std::pair<int32_t, float>> logit_bias;  // OpenAI: token id -> bias in [-100, 100]
  int64_t min_tokens = 0;            // vLLM: EOS and stop_token_ids cannot end the output earlier
  bool logprobs = false;             // return each generated token's raw log-prob
  int top_logprobs = 0;              // and this many most likely alternatives (0..kMaxLogprobs)
  int prompt_logprobs = -1;          // vLLM: >= 0 returns the prompt tokens' raw log-probs with
                                     // this many alternatives each; -1 = off
  bool sampling_logprobs = false;    // return each generated token's log-prob under the distribution
                                     // it was drawn from (vLLM's logprobs_mode = "processed_logprobs")

  static constexpr int kMaxLogprobs = 20;  // vLLM's default max_logprobs

  // Empty when valid, else the reason (for HTTP 400s and config errors).
  std::string validate() const;
  // Temperatures below 1e-5 sample greedily (vLLM's _SAMPLING_EPS): dividing by them overflows.
  static constexpr double kGreedyBelow = 1e-5;
  bool greedy() const { return temperature < kGreedyBelow; }
};

struct Sampled {
  int32_t token;
  float logprob;
};

// (token id, raw log-prob) alternatives of one position, most likely first.
using TopLogprobs = std::vector<std::pair<int32_t, float>>;

// One sequence's row of a batched sampling step.
struct SampleRow {
  const SamplingParams* params = nullptr;
  const std::vector<int32_t>* context = nullptr;  // prompt + generated tokens
  size_t prompt_len = 0;                          // the first prompt_len of context are the prompt
  std::vector<int32_t> banned;                    // ids that cannot be drawn this step (min_tokens)
  torch::Generator* generator = nullptr;          // the sequence's own CPU generator: one draw per step
  bool raw_logprobs = false;                      // report the chosen token's raw log-prob ...
  int top_logprobs = 0;                           // ... and this many raw alternatives
};

struct SampledRow {
  int32_t token = -1;
  float logprob = 0;      // as Sampled::logprob (temperature-scaled, before top-k/top-p/min-p)
  // log p(token) under the distribution it was drawn from: temperature-scaled, after top-k/top-p/
  // min-p, renormalised over the kept tokens (vLLM's processed_logprobs; 0 for greedy rows)
  float sampling_logprob = 0;
  float raw_logprob = 0;  // raw_logprobs: log_softmax of the unprocessed logits at `token`
  TopLogprobs top;        // top_logprobs > 0
  std::string error;      // non-empty: nothing to sample from (non-finite logits); token is -1
};

// Samples one token per row of logits (B, V) fp32, on the logits' device, as batched tensor ops:
// penalties, temperature, top-k/top-p/min-p over (B, V) without a per-row loop and without sorting
// the vocabulary when top-k bounds it; each row draws with its own generator (inverse CDF of one
// uniform per row), so a row's token does not depend on the other rows. Only the chosen ids and
// the requested log-probs cross to the host. Same processing and distribution as sample_token.
//
// Order: banned ids -> -inf, logit_bias, repetition penalty, frequency/presence penalties,
// temperature (greedy rows: none), clamp to the float range, softmax q of the scaled logits.
// SampledRow::logprob is log q[token], SampledRow::sampling_logprob log(q[token] / kept mass) (the
// kept mass: the q of the tokens the filters keep, the inverse CDF's total). Greedy rows: the first argmax. Other rows:
//   top_k (0 < k < V): candidates topk(K + 1) for the batch's largest k, widened when a row's
//     k-th logit ties past them; a row keeps every logit >= its k-th (ties kept, as vLLM).
//   top_p without top_k: candidates topk(1,024), then topk(16,384); a row finishes on them when
//     the candidates strictly above the last one's logit hold >= top_p + 1e-5 (then top-p drops
//     every other token exactly); else it sorts its full row.
//   neither (temperature, min_p): no sort; the row in vocabulary order.
// Candidates are ordered logit-descending, id-ascending among ties (a stable sort's order), so a
// row's result does not depend on how many candidates the batch fetched. top-p keeps tokens
// whose strictly more likely mass < top_p (of the top-k survivors' mass with top_k; the first
// always), min-p drops q < min_p * max q. Draw: u = (random64() >> 40) * 2^-24 from the row's
// generator (under its mutex; the default CPU generator when null; greedy rows draw nothing),
// token = the first position whose running sum of the kept q exceeds u * (kept mass)
// (cumsum + searchsorted). On CPU the running sum is sequential in double, so a row's token and
// log-probs are bit-identical whatever the batch. A row whose q is NaN (NaN logits) gets `error`
// and token -1 (greedy rows too); the others sample. Raw log-probs: log_softmax of the
// unprocessed logits at the token; alternatives ordered as the candidates, lowest ids at a tie
// across the last place.
std::vector<SampledRow> sample_batch(const torch::Tensor& logits, const std::vector<SampleRow>& rows);

// One row through sample_batch; throws std::runtime_error where that row gets an error.
// logits: (V) fp32. context: prompt and generated tokens; the first `prompt_len` are the
// prompt (repetition penalty: all of them; frequency/presence penalties: the rest).
Sampled sample_token(torch::Tensor logits, const SamplingParams& p, torch::Generator& gen,
                     const std::vector<int32_t>& context, size_t prompt_len = 0);

// The distribution `sample_token` draws from (after all processing), for tests: (V) fp32. An
// independent per-row implementation (full sort for top-p), the reference sample_batch is tested against.
torch::Tensor sampling_distribution(torch::Tensor logits, const SamplingParams& p,
                                    const std::vector<int32_t>& context, size_t prompt_len = 0);

// The k most likely tokens of raw logits (V) and their log-probs, most likely first.
std::vector<std::pair<int32_t, float>> top_logprobs(const torch::Tensor& logprobs, int k);

}  // namespace warmup
