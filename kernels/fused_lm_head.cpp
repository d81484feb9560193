// See fused_lm_head.h.
#include "fused_lm_head.h"

#include <ATen/autocast_mode.h>

#include <algorithm>

namespace warmup::kernels {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// acc += a @ b, kept in fp32. Plain fp32 (no autocast): straight into acc by addmm (no product
// temporary, no zero fill); otherwise the product in the compute dtype, then added in fp32.
void add_mm_fp32(torch::Tensor& acc, const torch::Tensor& a, const torch::Tensor& b) {
  bool direct = a.scalar_type() == torch::kFloat32 && b.scalar_type() == torch::kFloat32 &&
                !at::autocast::is_autocast_enabled(a.device().type());
  if (direct) {
    if (!acc.defined()) acc = torch::mm(a, b);
    else acc.addmm_(a, b);
    return;
  }
  auto p = torch::mm(a, b).to(torch::kFloat32);
  if (!acc.defined()) acc = p;
  else acc.add_(p);
}

// log_softmax(h @ W^T)[target] per row, chunked; the (rows, V) logits are never all alive.
struct ChunkedLogProb : torch::autograd::Function<ChunkedLogProb> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor h, torch::Tensor w, torch::Tensor targets,
                               int64_t chunk) {
    int64_t n = h.size(0);
    auto out = torch::empty({n}, h.options().dtype(torch::kFloat32));
    for (int64_t s = 0; s < n; s += chunk) {
      int64_t e = std::min(n, s + chunk);
      auto logits = torch::matmul(h.slice(0, s, e), w.t()).to(torch::kFloat32);  // (rows, V)
      auto t = targets.slice(0, s, e).unsqueeze(1);
      out.slice(0, s, e).copy_(logits.gather(1, t).squeeze(1) - logits.logsumexp(1));
    }
    ctx->save_for_backward({h, w, targets});
    ctx->saved_data["chunk"] = chunk;
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    auto saved = ctx->get_saved_variables();
    auto h = saved[0], w = saved[1], targets = saved[2];
    int64_t chunk = ctx->saved_data["chunk"].toInt(), n = h.size(0);
    auto g = grad[0].to(torch::kFloat32);
    auto gh = torch::empty_like(h);
    torch::Tensor gw;  // fp32, from the first chunk on
    for (int64_t s = 0; s < n; s += chunk) {
      int64_t e = std::min(n, s + chunk);
      auto hc = h.slice(0, s, e);
      auto logits = torch::matmul(hc, w.t()).to(torch::kFloat32);
      auto gc = g.slice(0, s, e).unsqueeze(1);                 // (rows, 1)
      auto dlogits = -logits.softmax(1) * gc;                  // d(logit_t - lse) = onehot - p
      dlogits.scatter_add_(1, targets.slice(0, s, e).unsqueeze(1), gc);
      auto dl = dlogits.to(h.scalar_type());
      gh.slice(0, s, e).copy_(torch::matmul(dl, w));
      add_mm_fp32(gw, dl.t(), hc);
    }
    if (!gw.defined()) gw = torch::zeros(w.sizes(), w.options().dtype(torch::kFloat32));
    return {gh, gw.to(w.scalar_type()), torch::Tensor(), torch::Tensor()};
  }
};

// sum_r weights[r] * log_softmax(h @ W^T)[r, target_r], with the gradient computed during the
// forward pass (the weights are known), so the (rows, V) logits are computed once and never kept:
// the same matmul count as materialising the logits, without their memory.
struct FusedWeightedLogProb : torch::autograd::Function<FusedWeightedLogProb> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor h, torch::Tensor w, torch::Tensor targets,
                               torch::Tensor weights, int64_t chunk, torch::Tensor logprobs_out,
                               torch::Tensor entropy_out) {
    int64_t n = h.size(0);
    bool need_grad = h.requires_grad() || w.requires_grad();
    torch::Tensor gh, gw;
    if (need_grad) gh = torch::empty_like(h);  // gw: fp32, from the first chunk on
    auto total = torch::zeros({}, h.options().dtype(torch::kFloat32));
    torch::NoGradGuard no_grad;
    for (int64_t s = 0; s < n; s += chunk) {
      int64_t e = std::min(n, s + chunk);
      auto hc = h.slice(0, s, e);
      auto t = targets.slice(0, s, e).unsqueeze(1);
      auto wc = weights.slice(0, s, e).to(torch::kFloat32).unsqueeze(1);  // (rows, 1)
      auto logits = torch::matmul(hc, w.t()).to(torch::kFloat32);         // (rows, V)
      auto logp = torch::log_softmax(logits, 1);                           // one fused pass per row
      auto lp = logp.gather(1, t);                                         // (rows, 1)
      total += (lp * wc).sum();
      if (logprobs_out.numel() > 0) logprobs_out.slice(0, s, e).copy_(lp.squeeze(1));
      torch::Tensor p;  // softmax, computed once for the entropy and the gradient
      if (entropy_out.numel() > 0) {  // H = -sum(p * log p)
        p = logp.exp();
        entropy_out.slice(0, s, e).copy_(-(p * logp).sum(1));
      }
      if (need_grad) {
        auto dl = (p.defined() ? p : logp.exp_()).mul_(-wc);  // -w * softmax, in place
        dl.scatter_add_(1, t, wc);
        // Under autocast, once into the compute dtype (each matmul would cast it again otherwise).
        auto dtype = at::autocast::is_autocast_enabled(h.device().type())
                         ? at::autocast::get_autocast_dtype(h.device().type()) : h.scalar_type();
        auto dlc = dl.to(dtype);
        gh.slice(0, s, e).copy_(torch::matmul(dlc, w));
        add_mm_fp32(gw, dlc.t(), hc);
      }
    }
    if (need_grad && !gw.defined()) gw = torch::zeros(w.sizes(), w.options().dtype(torch::kFloat32));
    ctx->save_for_backward({gh, need_grad ? gw.to(w.scalar_type()) : torch::Tensor()});
    return total;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    auto saved = ctx->get_saved_variables();
    auto g = grad[0];
    return {saved[0].defined() ? saved[0] * g.to(saved[0].scalar_type()) : torch::Tensor(),
            saved[1].defined() ? saved[1] * g.to(saved[1].scalar_type()) : torch::Tensor(),
            torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor chunked_logprob(const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& targets,
                              int64_t chunk) {
  return ChunkedLogProb::apply(h, w, targets, chunk);
}

torch::Tensor fused_weighted_logprob(const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& targets,
                                     const torch::Tensor& weights, int64_t chunk, const torch::Tensor& logprobs_out,
                                     const torch::Tensor& entropy_out) {
  return FusedWeightedLogProb::apply(h, w, targets, weights, chunk, logprobs_out, entropy_out);
}

}  // namespace warmup::kernels
