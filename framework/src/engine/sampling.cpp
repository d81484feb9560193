#include "engine/sampling.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <mutex>
#include <stdexcept>

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

namespace {

constexpr float kLowest = std::numeric_limits<float>::lowest();
constexpr float kMax = std::numeric_limits<float>::max();
// top_p candidates tried before a full sort (64, then 1,024, then 16,384: a trained model's nucleus
// is usually a few tokens), and the mass margin that makes the shortcut exact under float rounding
// of the running sums (see sample_batch).
constexpr int64_t kTopPFirst = 64;
constexpr int64_t kTopPCandidates = 1024;
constexpr double kTopPMargin = 1e-5;

torch::Tensor to_device(const std::vector<int64_t>& v, const torch::Device& dev) {
  return torch::tensor(v, torch::kInt64).to(dev);
}
torch::Tensor to_device(const std::vector<float>& v, const torch::Device& dev) {
  return torch::tensor(v, torch::kFloat32).to(dev);
}

// Rows `rows` (ascending) of t; t itself when they are all of its rows.
torch::Tensor take(const torch::Tensor& t, const std::vector<int64_t>& rows, const torch::Tensor& idx) {
  return int64_t(rows.size()) == t.size(0) ? t : t.index_select(0, idx);
}

template <class T>
std::vector<T> pick(const std::vector<T>& all, const std::vector<int64_t>& rows) {
  std::vector<T> out;
  out.reserve(rows.size());
  for (int64_t r : rows) out.push_back(all[size_t(r)]);
  return out;
}

// Inverse CDF: w (R, K) non-negative weights in draw order, u (R) in [0, 1). The position of the
// first running sum above u * total (never a zero weight). On CPU the running sum is sequential
// (accumulated in double), so a position's sum depends only on the weights before it. `kept`, if
// given, receives the total (R): the same sequential sum, so trailing zero weights (a wider
// candidate set) do not change it.
torch::Tensor inverse_cdf(const torch::Tensor& w, const torch::Tensor& u, torch::Tensor* kept = nullptr) {
  auto c = w.cumsum(1);
  auto total = c.select(1, c.size(1) - 1);
  if (kept) *kept = total;
  auto x = torch::minimum(u * total, torch::nextafter(total, torch::zeros_like(total)));
  auto pos = torch::searchsorted(c, x.unsqueeze(1).contiguous(), /*out_int32=*/false, /*right=*/true).squeeze(1);
  return pos.clamp_max(c.size(1) - 1);
}

// Candidates (R, K) of logit values and ids in canonical order: logit descending, id ascending
// among ties (the order a stable descending sort of the row gives), whatever order topk left.
std::pair<torch::Tensor, torch::Tensor> canonical(const torch::Tensor& vals, const torch::Tensor& ids) {
  auto [sid, p1] = ids.sort(1);
  auto v1 = vals.gather(1, p1);
  auto [sv, p2] = v1.sort(/*stable=*/true, 1, /*descending=*/true);
  return {sv, sid.gather(1, p2)};
}

// The k most likely tokens of each row of log-probs (R, V), ordered by log-prob descending and id
// ascending among ties, so a row's alternatives do not depend on the other rows' k. Tokens tied
// across the k-th place: the lowest ids (rows with such a tie are counted exactly).
std::pair<torch::Tensor, torch::Tensor> top_alternatives(const torch::Tensor& lp, int64_t k) {
  const int64_t V = lp.size(1);
  auto [tv, ti] = lp.topk(std::min(V, k + 1), 1);
  if (tv.size(1) > k) {
    auto tie = (tv.select(1, k - 1) == tv.select(1, k)).nonzero().squeeze(1);
    tv = tv.slice(1, 0, k).contiguous(), ti = ti.slice(1, 0, k).contiguous();
    if (tie.numel() > 0) {
      auto rows = lp.index_select(0, tie);
      auto v = tv.index_select(0, tie).select(1, k - 1).unsqueeze(1);
      auto eq = rows == v;
      auto need = (k - (rows > v).sum(1, /*keepdim=*/true));
      auto keep = (rows > v) | (eq & (eq.cumsum(1) <= need));
      auto ids = keep.nonzero().select(1, 1).view({tie.size(0), k});  // ascending ids per row
      ti.index_copy_(0, tie, ids);
      tv.index_copy_(0, tie, rows.gather(1, ids));
    }
  }
  return canonical(tv, ti);
}

// q (B, V) contiguous at rows `rows` (R) and columns ids (R, K), without copying whole rows.
torch::Tensor gather_rows(const torch::Tensor& q, const torch::Tensor& rows, const torch::Tensor& ids) {
  return torch::take(q, rows.unsqueeze(1) * q.size(1) + ids);
}

struct RowParams {  // per-row filter parameters of one group, on the device
  torch::Tensor kth;       // (R) keep logits >= kth (top-k; lowest-1 = off)
  torch::Tensor has_topk;  // (R) bool
  torch::Tensor top_p;     // (R) 2 = off
  torch::Tensor min_p;     // (R) 0 = off
  torch::Tensor u;         // (R) the row's uniform
  bool any_top_p = false, any_min_p = false;
};

// Top-k, top-p, min-p and the draw over candidates in canonical order (every token the filters
// keep is among them). qc: the candidates' probabilities under the full row's softmax q:
// restricting and renormalising them is the softmax of the restricted logits. Returns the ids (R)
// and the kept mass (R): the sum of the kept q.
std::pair<torch::Tensor, torch::Tensor> finish_candidates(const torch::Tensor& vals, const torch::Tensor& ids,
                                                          const torch::Tensor& qc, const RowParams& rp) {
  auto w = torch::where(vals >= rp.kth.unsqueeze(1), qc, torch::zeros({}, qc.options()));
  if (rp.any_top_p) {
    // Drop tokens whose strictly more likely (kept) mass reaches top_p of the kept mass: the
    // kept mass is 1 without top-k, else the top-k survivors' sum.
    auto c = w.cumsum(1);
    auto mass = torch::where(rp.has_topk, c.select(1, c.size(1) - 1), torch::ones_like(rp.top_p));
    auto drop = (c - w) >= (rp.top_p * mass).unsqueeze(1);
    drop.select(1, 0).fill_(false);  // the most likely token always stays
    w = w.masked_fill(drop, 0);
  }
  if (rp.any_min_p) w = w.masked_fill(qc < (rp.min_p * qc.select(1, 0)).unsqueeze(1), 0);
  torch::Tensor kept;
  auto at = inverse_cdf(w, rp.u, &kept);
  return {ids.gather(1, at.unsqueeze(1)).squeeze(1), kept};
}

}  // namespace

std::vector<SampledRow> sample_batch(const torch::Tensor& logits, const std::vector<SampleRow>& rows) {
  if (logits.dim() != 2 || logits.size(0) != int64_t(rows.size()))
    throw std::invalid_argument("sample_batch: logits must be (B, V) with B = " + std::to_string(rows.size()) +
                                " rows; got " + c10::str(logits.sizes()));
  const int64_t B = logits.size(0), V = logits.size(1);
  std::vector<SampledRow> out(static_cast<size_t>(B));
  if (B == 0) return out;
  if (V == 0) throw std::invalid_argument("sample_batch: the vocabulary is empty");
  for (size_t b = 0; b < rows.size(); ++b)
    if (!rows[b].params) throw std::invalid_argument("sample_batch: row " + std::to_string(b) + " has no sampling parameters");
  const auto dev = logits.device();
  const torch::Tensor raw = logits.to(torch::kFloat32).contiguous();

  // 1. Banned ids, logit_bias, repetition and frequency/presence penalties: flat (b * V + id)
  //    entries built on the host, applied with one indexed op each.
  std::vector<int64_t> ban_at, bias_at, rep_at, pen_at;
  std::vector<float> bias_val, rep_val, pen_sub;
  std::vector<int64_t> seen;   // id -> last row that listed it (repetition penalty)
  std::vector<int32_t> count;  // id -> occurrences in this row's output
  std::vector<int32_t> distinct;
  for (int64_t b = 0; b < B; ++b) {
    const SampleRow& r = rows[size_t(b)];
    const SamplingParams& p = *r.params;
    const int64_t base = b * V;
    for (int32_t id : r.banned)
      if (id >= 0 && id < V) ban_at.push_back(base + id);
    for (const auto& [id, bias] : p.logit_bias)
      if (id >= 0 && id < V) bias_at.push_back(base + id), bias_val.push_back(bias);
    if (!r.context) continue;
    const auto& ctx = *r.context;
    if (p.repetition_penalty != 1.0 && !ctx.empty()) {
      seen.resize(size_t(V), -1);
      for (int32_t t : ctx)
        if (t >= 0 && t < V && seen[size_t(t)] != b) {
          seen[size_t(t)] = b;
          rep_at.push_back(base + t), rep_val.push_back(float(p.repetition_penalty));
        }
    }
    if ((p.presence_penalty != 0 || p.frequency_penalty != 0) && ctx.size() > r.prompt_len) {
      count.resize(size_t(V), 0);
      distinct.clear();
      for (size_t i = r.prompt_len; i < ctx.size(); ++i)
        if (int32_t t = ctx[i]; t >= 0 && t < V && count[size_t(t)]++ == 0) distinct.push_back(t);
      for (int32_t t : distinct) {
        float c = float(count[size_t(t)]);
        count[size_t(t)] = 0;
        float scaled = c * float(p.frequency_penalty);
        pen_at.push_back(base + t), pen_sub.push_back(scaled + float(p.presence_penalty));
      }
    }
  }
  const bool mutate = !ban_at.empty() || !bias_at.empty() || !rep_at.empty() || !pen_at.empty();
  torch::Tensor l = mutate ? raw.clone() : raw;
  if (mutate) {
    auto flat = l.view({-1});
    if (!bias_at.empty()) flat.index_put_({to_device(bias_at, dev)}, to_device(bias_val, dev), /*accumulate=*/true);
    if (!ban_at.empty()) flat.index_fill_(0, to_device(ban_at, dev), -std::numeric_limits<float>::infinity());
    if (!rep_at.empty()) {  // transformers: positive logits divided by the penalty, negative multiplied
      auto at = to_device(rep_at, dev);
      auto pen = to_device(rep_val, dev);
      auto v = flat.index_select(0, at);
      flat.index_copy_(0, at, torch::where(v > 0, v / pen, v * pen));
    }
    if (!pen_at.empty()) {
      auto at = to_device(pen_at, dev);
      flat.index_copy_(0, at, flat.index_select(0, at) - to_device(pen_sub, dev));
    }
  }

  // 2. Temperature (greedy rows: 1), then hold overflowed logits at the float range's ends.
  std::vector<float> temp(static_cast<size_t>(B));
  bool any_temp = false;
  for (int64_t b = 0; b < B; ++b) {
    const SamplingParams& p = *rows[size_t(b)].params;
    temp[size_t(b)] = p.greedy() ? 1.0f : float(p.temperature);
    any_temp |= temp[size_t(b)] != 1.0f;
  }
  if (any_temp) l = mutate ? l.div_(to_device(temp, dev).unsqueeze(1)) : l.div(to_device(temp, dev).unsqueeze(1));
  l = (mutate || any_temp) ? l.clamp_(kLowest, kMax) : l.clamp(kLowest, kMax);
  // The scaled distribution: the reported log-prob and the weights every filter works on.
  const torch::Tensor q = torch::softmax(l, 1);

  // 3. Groups, and one uniform per sampling row from its own generator.
  std::vector<int64_t> greedy, topk_rows, topp_rows, full_rows;
  std::vector<float> u(static_cast<size_t>(B), 0.0f);
  for (int64_t b = 0; b < B; ++b) {
    const SampleRow& r = rows[size_t(b)];
    const SamplingParams& p = *r.params;
    if (p.greedy()) {
      greedy.push_back(b);
      continue;
    }
    if (p.top_k > 0 && p.top_k < V) topk_rows.push_back(b);
    else if (p.top_p < 1.0) topp_rows.push_back(b);
    else full_rows.push_back(b);
    at::Generator g = r.generator ? *r.generator : at::detail::getDefaultCPUGenerator();
    uint64_t bits;
    {
      std::lock_guard<std::mutex> lock(g.mutex());
      bits = at::check_generator<at::CPUGeneratorImpl>(g)->random64();
    }
    u[size_t(b)] = float(bits >> 40) * 0x1p-24f;  // 24 bits: exact in float, below 1
  }
  auto params = [&](const std::vector<int64_t>& group) {
    RowParams rp;
    std::vector<int64_t> k;
    std::vector<float> top_p, min_p;
    std::vector<uint8_t> has;
    for (int64_t b : group) {
      const SamplingParams& p = *rows[size_t(b)].params;
      bool tk = p.top_k > 0 && p.top_k < V;
      k.push_back(tk ? p.top_k : 1), has.push_back(tk);
      top_p.push_back(p.top_p < 1.0 ? float(p.top_p) : 2.0f), min_p.push_back(float(p.min_p));
      rp.any_top_p |= p.top_p < 1.0, rp.any_min_p |= p.min_p > 0;
    }
    rp.has_topk = torch::tensor(std::vector<int64_t>(has.begin(), has.end()), torch::kInt64).to(torch::kBool).to(dev);
    rp.top_p = to_device(top_p, dev), rp.min_p = to_device(min_p, dev), rp.u = to_device(pick(u, group), dev);
    rp.kth = to_device(k, dev);  // the rank for now; top-k groups turn it into the k-th logit
    return rp;
  };

  torch::Tensor tok = torch::zeros({B}, torch::TensorOptions().dtype(torch::kInt64).device(dev));
  torch::Tensor kept = torch::ones({B}, q.options());  // the mass the row's filters keep (greedy rows: 1)
  auto finish = [&](const torch::Tensor& rows_at, std::pair<torch::Tensor, torch::Tensor> r) {
    tok.index_copy_(0, rows_at, r.first);
    kept.index_copy_(0, rows_at, r.second.to(kept.dtype()));
  };
  if (!greedy.empty()) {  // argmax after penalties and bias (first id among equal maxima)
    auto idx = to_device(greedy, dev);
    tok.index_copy_(0, idx, take(l, greedy, idx).argmax(1));
  }
  if (!topk_rows.empty()) {
    // topk(K + 1) for the largest k: every logit >= a row's k-th is among the first K unless it
    // ties with the (K+1)-th; then count the ties and widen.
    auto idx = to_device(topk_rows, dev);
    auto lr = take(l, topk_rows, idx);
    RowParams rp = params(topk_rows);
    int64_t K = 0;
    for (int64_t b : topk_rows) K = std::max(K, rows[size_t(b)].params->top_k);
    int64_t K1 = std::min(V, K + 1);
    auto [vals, ids] = lr.topk(K1, 1);
    auto kth = vals.gather(1, (rp.kth - 1).unsqueeze(1)).squeeze(1);
    if (K1 < V) {
      auto spill = vals.select(1, K1 - 1) >= kth;
      if (spill.any().item<bool>()) {
        int64_t n = (lr >= kth.unsqueeze(1)).sum(1).max().item<int64_t>();
        std::tie(vals, ids) = lr.topk(std::min(V, n + 1), 1);
      }
    }
    rp.kth = kth;
    auto [cv, ci] = canonical(vals, ids);
    finish(idx, finish_candidates(cv, ci, gather_rows(q, idx, ci), rp));
  }
  if (!topp_rows.empty()) {
    // top_p without top_k: the K most likely tokens (K = 64, then 1,024, then 16,384). If the candidates
    // strictly above the last one's logit already hold top_p (plus a rounding margin), every token
    // outside them is dropped by top-p exactly, so the row finishes on them; rows that need more
    // sort the full vocabulary.
    auto idx = to_device(topp_rows, dev);
    RowParams all = params(topp_rows);
    all.kth = torch::full({int64_t(topp_rows.size())}, -std::numeric_limits<float>::infinity(), q.options());
    std::vector<int64_t> pending(topp_rows.size());  // positions within topp_rows
    std::iota(pending.begin(), pending.end(), 0);
    for (int64_t K : {kTopPFirst, kTopPCandidates, 16 * kTopPCandidates, V}) {
      K = std::min(K, V);
      auto at = to_device(pending, dev);
      auto sel = [&](const torch::Tensor& t) { return int64_t(pending.size()) == t.size(0) ? t : t.index_select(0, at); };
      auto lr = sel(take(l, topp_rows, idx));
      RowParams rp = all;
      rp.kth = sel(all.kth), rp.has_topk = sel(all.has_topk), rp.top_p = sel(all.top_p), rp.min_p = sel(all.min_p);
      rp.u = sel(all.u);
      auto rows_at = idx.index_select(0, at);
      if (K == V) {  // stable: ties stay in id order, the candidates' canonical order
        auto [sv, si] = lr.sort(/*stable=*/true, 1, /*descending=*/true);
        finish(rows_at, finish_candidates(sv, si, gather_rows(q, rows_at, si), rp));
        break;
      }
      auto [vals, ids] = lr.topk(K, 1);
      auto [cv, ci] = canonical(vals, ids);
      auto qc = gather_rows(q, rows_at, ci);
      auto last = cv.select(1, K - 1).unsqueeze(1);
      auto above = torch::where(cv > last, qc, torch::zeros({}, q.options())).cumsum(1).select(1, K - 1);
      auto enough = (above >= rp.top_p + float(kTopPMargin)).to(torch::kCPU);
      const bool* e = enough.data_ptr<bool>();
      std::vector<int64_t> fast, still;  // positions within pending that finish here; pending rows left
      for (size_t i = 0; i < pending.size(); ++i)
        e[i] ? fast.push_back(int64_t(i)) : still.push_back(pending[i]);
      if (!fast.empty()) {
        auto f = to_device(fast, dev);
        auto pick_f = [&](const torch::Tensor& t) { return int64_t(fast.size()) == t.size(0) ? t : t.index_select(0, f); };
        RowParams rf = rp;
        rf.kth = pick_f(rp.kth), rf.has_topk = pick_f(rp.has_topk), rf.top_p = pick_f(rp.top_p), rf.min_p = pick_f(rp.min_p);
        rf.u = pick_f(rp.u);
        finish(pick_f(rows_at), finish_candidates(pick_f(cv), pick_f(ci), pick_f(qc), rf));
      }
      if (still.empty()) break;
      pending = std::move(still);
    }
  }
  if (!full_rows.empty()) {  // temperature and min-p only: inverse CDF over the row in vocabulary order
    auto idx = to_device(full_rows, dev);
    auto w = take(q, full_rows, idx);
    RowParams rp = params(full_rows);
    if (rp.any_min_p) w = w.masked_fill(w < (rp.min_p * w.amax(1)).unsqueeze(1), 0);
    torch::Tensor kept_mass;
    auto drawn = inverse_cdf(w, rp.u, &kept_mass);
    finish(idx, {drawn, kept_mass});
  }

  // 4. Raw log-probs of the rows that asked, then everything the host needs in one transfer.
  std::vector<int64_t> raw_rows, top_rows;
  int64_t top_k = 0;
  for (int64_t b = 0; b < B; ++b) {
    const SampleRow& r = rows[size_t(b)];
    if (r.raw_logprobs || r.top_logprobs > 0) raw_rows.push_back(b);
    if (r.top_logprobs > 0) top_k = std::max<int64_t>(top_k, r.top_logprobs);
  }
  top_k = std::min(top_k, V);
  // The model's own row maximum: +inf (overflow) or NaN fails the row; -inf entries are tokens the
  // model rules out, as in transformers.
  std::vector<torch::Tensor> parts = {tok.to(torch::kFloat64), q.gather(1, tok.unsqueeze(1)).squeeze(1).to(torch::kFloat64),
                                      raw.amax(1).to(torch::kFloat64), kept.to(torch::kFloat64)};
  if (!raw_rows.empty()) {
    auto idx = to_device(raw_rows, dev);
    auto lp = torch::log_softmax(take(raw, raw_rows, idx), 1);
    parts.push_back(lp.gather(1, tok.index_select(0, idx).unsqueeze(1)).squeeze(1).to(torch::kFloat64));
    if (top_k > 0) {
      auto [tv, ti] = top_alternatives(lp, top_k);
      parts.push_back(tv.flatten().to(torch::kFloat64));
      parts.push_back(ti.flatten().to(torch::kFloat64));
    }
  }
  const torch::Tensor host = torch::cat(parts).to(torch::kCPU);
  const double* h = host.data_ptr<double>();
  const int64_t R = int64_t(raw_rows.size());
  // host: token (B), its probability (B), the raw row maximum (B), the kept mass (B), then R raw
  // log-probs, R x top_k alternatives' log-probs and R x top_k ids.
  const double *tok_h = h, *prob_h = h + B, *max_h = h + 2 * B, *kept_h = h + 3 * B, *raw_h = h + 4 * B;
  for (int64_t b = 0; b < B; ++b) {
    SampledRow& o = out[size_t(b)];
    double prob = prob_h[b];
    if (!(max_h[b] < std::numeric_limits<double>::infinity()) || !(prob > 0)) {
      o.error = "the model's logits for this sequence are not finite (NaN or +inf); nothing to sample from";
      continue;
    }
    o.token = int32_t(tok_h[b]);
    o.logprob = float(std::log(prob));
    // greedy rows drew from a point mass; the others from q restricted to the kept tokens
    o.sampling_logprob = rows[size_t(b)].params->greedy() ? 0.0f : float(std::log(prob) - std::log(kept_h[b]));
  }
  for (int64_t i = 0; i < R; ++i) {
    SampledRow& o = out[size_t(raw_rows[size_t(i)])];
    if (!o.error.empty()) continue;
    o.raw_logprob = float(raw_h[i]);
    int n = std::min<int>(rows[size_t(raw_rows[size_t(i)])].top_logprobs, int(top_k));
    const double* tv = raw_h + R + i * top_k;
    const double* ti = raw_h + R + R * top_k + i * top_k;
    for (int j = 0; j < n; ++j) o.top.emplace_back(int32_t(ti[j]), float(tv[j]));
  }
  return out;
}

Sampled sample_token(torch::Tensor logits, const SamplingParams& p, torch::Generator& gen,
                     const std::vector<int32_t>& context, size_t prompt_len) {
  SampleRow row;
  row.params = &p;
  row.context = &context;
  row.prompt_len = prompt_len;
  row.generator = &gen;
  SampledRow s = sample_batch(logits.reshape({1, -1}), {row}).front();
  if (!s.error.empty()) throw std::runtime_error(s.error);
  return {s.token, s.logprob};
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
