// Sampling parameters and the per-token sampler. Processing order (as transformers' logits
// processors): repetition penalty -> temperature -> top-k -> top-p -> min-p -> draw.
// temperature 0 is greedy. The returned log-prob is that of the chosen token under the
// temperature-scaled distribution before top-k/top-p/min-p (TRL's convention for GRPO).
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
  bool logprobs = false;             // return per-token log-probs

  // Empty when valid, else the reason (for HTTP 400s and config errors).
  std::string validate() const;
};

struct Sampled {
  int32_t token;
  float logprob;
};

// logits: (V) fp32 on CPU. context: prompt and generated tokens (for the repetition penalty).
Sampled sample_token(torch::Tensor logits, const SamplingParams& p, torch::Generator& gen,
                     const std::vector<int32_t>& context);

// The distribution `sample_token` draws from (after all processing), for tests: (V) fp32.
torch::Tensor sampling_distribution(torch::Tensor logits, const SamplingParams& p,
                                    const std::vector<int32_t>& context);

}  // namespace warmup
