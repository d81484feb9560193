#include "engine/sampling.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace warmup {

std::string SamplingParams::validate() const {
  if (n < 1 || n > 1024) return "n must be between 1 and 1024";
  // Written so that NaN fails every test; infinities are refused by name.
  if (!(temperature >= 0) || std::isinf(temperature)) return "temperature must be a finite number >= 0";
  if (!(top_p > 0 && top_p <= 1)) return "top_p must be in (0, 1]";
  if (top_k < -1) return "top_k must be -1, 0 or positive";
  if (!(min_p >= 0 && min_p <= 1)) return "min_p must be in [0, 1]";
  // The penalty divides positive logits: 0, NaN or inf would turn them into inf or NaN.
  if (!(repetition_penalty > 0) || std::isinf(repetition_penalty))
    return "repetition_penalty must be a finite number > 0";
  if (max_new_tokens < 0) return "max_tokens must be >= 0";
  if (!(presence_penalty >= -2 && presence_penalty <= 2)) return "presence_penalty must be in [-2, 2]";
  if (!(frequency_penalty >= -2 && frequency_penalty <= 2)) return "frequency_penalty must be in [-2, 2]";
  for (const auto& [id, bias] : logit_bias)
    if (!(bias >= -100 && bias <= 100)) return "logit_bias values must be in [-100, 100]";
  if (min_tokens < 0) return "min_tokens must be >= 0";
  if (min_tokens > max_new_tokens) return "min_tokens must be <= max_tokens";
  if (top_logprobs < 0 || top_logprobs > kMaxLogprobs)
    return "the number of log-probs must be in [0, " + std::to_string(kMaxLogprobs) + "]";
  if (prompt_logprobs < -1 || prompt_logprobs > kMaxLogprobs)
    return "prompt_logprobs must be in [0, " + std::to_string(kMaxLogprobs) + "]";
  for (const auto& s : stop)
    if (s.empty()) return "stop strings must not be empty";
  return "";
}

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Applies penalty, temperature, top-k, top-p, min-p in place; returns the scaled logits' log-probs
// (before filtering) for the reported log-prob.
torch::Tensor process(torch::Tensor& logits, const SamplingParams& p, const std::vector<int32_t>& context,
                      size_t prompt_len) {
  int64_t V = logits.size(0);
  if (!p.logit_bias.empty()) {
    auto acc = logits.accessor<float, 1>();
    for (const auto& [id, bias] : p.logit_bias)
      if (id >= 0 && id < V) acc[id] += bias;
  }
  if (p.repetition_penalty != 1.0 && !context.empty()) {
    auto idx = torch::tensor(std::vector<int64_t>(context.begin(), context.end()), torch::kInt64);
    auto vals = logits.index_select(0, idx);
    vals = torch::where(vals > 0, vals / p.repetition_penalty, vals * p.repetition_penalty);
    logits.index_put_({idx}, vals);
  }
  if ((p.presence_penalty != 0 || p.frequency_penalty != 0) && context.size() > prompt_len) {
    std::vector<int64_t> ids;
    std::vector<float> counts;  // distinct output tokens and how often each occurs
    {
      std::vector<int32_t> out(context.begin() + std::ptrdiff_t(prompt_len), context.end());
      std::sort(out.begin(), out.end());
      for (size_t i = 0; i < out.size(); ++i) {
        if (out[i] < 0 || out[i] >= V) continue;
        if (ids.empty() || ids.back() != out[i]) ids.push_back(out[i]), counts.push_back(0);
        counts.back() += 1;
      }
    }
    auto idx = torch::tensor(ids, torch::kInt64);
    auto c = torch::tensor(counts, torch::kFloat32);
    auto sub = c * float(p.frequency_penalty) + float(p.presence_penalty);
    logits.index_put_({idx}, logits.index_select(0, idx) - sub);
  }
  if (!p.greedy()) logits = logits / p.temperature;
  // A penalty or temperature may overflow a finite logit (1 / 1e-45): keep such logits at the
  // float range's ends, their limit, so the distribution stays defined. NaN (a broken model) stays.
  logits.clamp_(std::numeric_limits<float>::lowest(), std::numeric_limits<float>::max());
  torch::Tensor logprobs = torch::log_softmax(logits, 0);
  if (p.top_k > 0 && p.top_k < V) {
    auto kth = std::get<0>(logits.topk(p.top_k)).min();
    logits.masked_fill_(logits < kth, kNegInf);
  }
  if (p.top_p < 1.0) {
    auto [sorted, order] = logits.sort(0, /*descending=*/true);
    auto probs = sorted.softmax(0);
    auto before = probs.cumsum(0) - probs;  // mass of strictly more likely tokens
    auto drop_sorted = before >= p.top_p;
    drop_sorted[0] = false;  // always keep the most likely token
    auto drop = torch::zeros_like(drop_sorted).scatter_(0, order, drop_sorted);
    logits.masked_fill_(drop, kNegInf);
  }
  if (p.min_p > 0) {
    auto probs = logits.softmax(0);
    logits.masked_fill_(probs < p.min_p * probs.max(), kNegInf);
  }
  return logprobs;
}

}  // namespace

torch::Tensor sampling_distribution(torch::Tensor logits, const SamplingParams& p, const std::vector<int32_t>& context,
                                    size_t prompt_len) {
  torch::Tensor l = logits.to(torch::kFloat32).clone();
  process(l, p, context, prompt_len);
  if (p.greedy()) return torch::one_hot(l.argmax(), l.size(0)).to(torch::kFloat32);
  return l.softmax(0);
}

Sampled sample_token(torch::Tensor logits, const SamplingParams& p, torch::Generator& gen,
                     const std::vector<int32_t>& context, size_t prompt_len) {
  torch::Tensor l = logits.to(torch::kFloat32).clone();
  if (p.greedy()) {
    SamplingParams greedy = p;
    greedy.temperature = 0;
    torch::Tensor lp = process(l, greedy, context, prompt_len);
    int64_t tok = l.argmax().item<int64_t>();
    return {int32_t(tok), lp[tok].item<float>()};
  }
  torch::Tensor lp = process(l, p, context, prompt_len);
  torch::Tensor probs = l.softmax(0);
  // NaN or infinite logits (a broken model, an extreme penalty) leave no distribution to draw from.
  if (!torch::isfinite(probs).all().item<bool>() || !(probs.sum().item<double>() > 0))
    throw std::runtime_error("the model's logits for this sequence are not finite (NaN or inf); nothing to sample from");
  int64_t tok = torch::multinomial(probs, 1, false, gen).item<int64_t>();
  return {int32_t(tok), lp[tok].item<float>()};
}

std::vector<std::pair<int32_t, float>> top_logprobs(const torch::Tensor& logprobs, int k) {
  std::vector<std::pair<int32_t, float>> out;
  if (k <= 0) return out;
  auto [vals, idx] = logprobs.topk(std::min<int64_t>(k, logprobs.size(0)));
  auto v = vals.accessor<float, 1>();
  auto i = idx.accessor<int64_t, 1>();
  for (int64_t j = 0; j < vals.size(0); ++j) out.emplace_back(int32_t(i[j]), v[j]);
  return out;
}

}  // namespace warmup
