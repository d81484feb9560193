// Reads GRPO loss/advantage cases as JSON (stdin or argv[1]), runs grpo_loss.h on each and prints
// the results as JSON on stdout: loss, d loss / d logps, clip fractions, KL, entropy, advantages.
// tests/integration/test_grpo.py compares them with TRL's GRPOTrainer on the same inputs.
#include <cmath>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "grpo_batch.h"
#include "grpo_loss.h"

using nlohmann::json;

torch::Tensor tensor(const json& j) {
  if (j.is_null()) return {};
  std::vector<double> flat;
  int64_t rows = int64_t(j.size()), cols = j[0].is_array() ? int64_t(j[0].size()) : -1;
  for (const auto& r : j) {
    if (cols < 0) flat.push_back(r.get<double>());
    else for (const auto& v : r) flat.push_back(v.get<double>());
  }
  auto t = torch::tensor(flat, torch::kFloat64);
  return cols < 0 ? t : t.view({rows, cols});
}

json list(const torch::Tensor& t) {
  auto c = t.to(torch::kFloat64).contiguous();
  if (c.dim() == 1) return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
  json out = json::array();
  for (int64_t i = 0; i < c.size(0); ++i) out.push_back(list(c[i]));
  return out;
}

int main(int argc, char** argv) {
  json cases;
  if (argc > 1) std::ifstream(argv[1]) >> cases;
  else std::cin >> cases;
  json out = json::array();
  for (const auto& c : cases) {
    json r;
    if (c.contains("overlong")) {  // {lengths, max_len, buffer, factor} -> penalties
      const json& o = c["overlong"];
      json pen = json::array();
      for (const auto& l : o["lengths"])
        pen.push_back(grpo::overlong_penalty(l.get<int64_t>(), o["max_len"].get<int64_t>(), o["buffer"].get<int64_t>(),
                                             o["factor"].get<double>()));
      out.push_back({{"penalties", pen}});
      continue;
    }
    if (c.contains("batch")) {  // {rolls: [{prompt_ids, ids, sampling}], size, packed} -> per micro-batch
      const json& bj = c["batch"];  // targets, mask and sampling in the loss's (B, T) layout
      std::vector<grpo::Rollout> rolls;
      for (const auto& rj : bj["rolls"]) {
        grpo::Rollout ro;
        ro.prompt_ids = rj["prompt_ids"].get<std::vector<int32_t>>();
        ro.completion.ids = rj["ids"].get<std::vector<int32_t>>();
        ro.completion.finish_reason = "stop";
        ro.sampling_logps = rj["sampling"].get<std::vector<float>>();
        rolls.push_back(std::move(ro));
      }
      auto mbs = bj["packed"].get<bool>() ? grpo::packed_micro_batches(rolls, bj["size"].get<int64_t>(), false)
                                          : grpo::micro_batches(rolls, bj["size"].get<int64_t>(), false);
      json batches = json::array();
      for (const auto& mb : mbs) {
        json sp = list(mb.sampling);
        for (auto& row : sp)
          for (auto& v : row)
            if (std::isnan(v.get<double>())) v = nullptr;
        batches.push_back({{"targets", list(grpo::unpack(mb, mb.targets))}, {"mask", list(mb.mask)}, {"sampling", sp}});
      }
      out.push_back({{"batches", batches}});
      continue;
    }
    if (c.contains("rewards")) {
      torch::Tensor zero;
      torch::Tensor valid;  // optional: false for completions the rewards could not judge
      if (c.contains("valid")) valid = tensor(c["valid"]).to(torch::kBool);
      auto adv = grpo::advantages(tensor(c["rewards"]), c["G"].get<int64_t>(), c["scale"].get<std::string>(), &zero, valid);
      r["advantages"] = list(adv);
      r["zero_std"] = list(zero.to(torch::kFloat64));
      out.push_back(r);
      continue;
    }
    grpo::LossOptions o;
    o.loss_type = c["loss_type"];
    o.epsilon_low = c["epsilon_low"];
    o.epsilon_high = c["epsilon_high"];
    o.beta = c["beta"];
    o.max_completion_length = c["max_completion_length"];
    o.accumulation_steps = c["accumulation_steps"];
    o.num_items_in_batch = c["num_items_in_batch"];
    auto logps = tensor(c["logps"]).requires_grad_(true);
    grpo::LossStats st;
    // Importance sampling against the sampler: {mode, clip_min, clip_max, sampling} (NaN sampling
    // log-probs as null), the ratio from the case's old log-probs.
    torch::Tensor is_ratio;
    grpo::ImportanceStats is_st;
    if (c.contains("is")) {
      const json& is = c["is"];
      grpo::ImportanceSampling io;
      io.mode = is["mode"];
      io.clip_min = is["clip_min"].is_null() ? 0.0 : is["clip_min"].get<double>();
      io.clip_max = is["clip_max"].is_null() ? INFINITY : is["clip_max"].get<double>();
      json samp = is["sampling"];
      for (auto& row : samp)
        for (auto& v : row)
          if (v.is_null()) v = NAN;
      is_ratio = grpo::importance_sampling_ratio(tensor(c["old"]), tensor(samp), tensor(c["mask"]), io, &is_st);
      r["is_ratio"] = list(is_ratio);
      r["is_min"] = is_st.ratio_min, r["is_mean"] = is_st.ratio_sum / std::max(1.0, is_st.ratio_count);
      r["is_max"] = is_st.ratio_max;
      r["logp_diff_mean"] = is_st.diff_sum / std::max(1.0, is_st.diff_count), r["logp_diff_max"] = is_st.diff_max;
      r["is_frac_capped"] = is_st.capped / std::max(1.0, is_st.ratio_count);
      r["is_kl"] = is_st.kl_sum / std::max(1.0, is_st.diff_count);
    }
    auto loss = grpo::loss(logps, tensor(c["old"]), tensor(c["ref"]), tensor(c["advantages"]), tensor(c["mask"]),
                           tensor(c["entropy"]), o, &st, is_ratio);
    loss.backward();
    double tok = std::max(1.0, st.tokens);
    r["loss"] = loss.item<double>();
    r["grad"] = list(logps.grad());
    r["clip_low"] = st.low_clipped / tok;
    r["clip_high"] = st.high_clipped / tok;
    r["clip_region"] = st.region_clipped / tok;
    r["kl"] = st.kl / tok;
    r["entropy"] = st.entropy / tok;
    out.push_back(r);
  }
  std::cout << out.dump() << "\n";
  return 0;
}
