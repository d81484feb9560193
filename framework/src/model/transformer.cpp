// See transformer.h. Numerics follow transformers' modeling_qwen2/llama/qwen3 so fp32 logits match
// to ~1e-5: RMSNorm in fp32 then cast, RoPE cos/sin in fp32 then cast, SDPA with scale 1/sqrt(D).
#include "model/transformer.h"

#include <cmath>

#include <ATen/autocast_mode.h>

#include "cpu/fused_ops.h"
#include "fused_lm_head.h"
#include "skinny_linear.h"

namespace warmup {

// ---- RMSNorm -----------------------------------------------------------------------------

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  if (x.is_cpu()) return kernels::rms_norm(x, weight, eps);  // one pass (kernels/cpu/fused_ops.h)
  auto dtype = x.scalar_type();
  torch::Tensor h = x.to(torch::kFloat32);
  h = h * torch::rsqrt(h.pow(2).mean(-1, true) + eps);
  return weight * h.to(dtype);
}

// ---- RoPE --------------------------------------------------------------------------------

RotaryEmbedding::RotaryEmbedding(const ModelConfig& c) {
  int64_t d = c.head_dim;
  auto idx = torch::arange(0, d, 2, torch::kInt64).to(torch::kFloat32);
  inv_freq = 1.0 / torch::pow(c.rope_theta, idx / double(d));
  const RopeScaling& rs = c.rope_scaling;
  if (rs.type == "linear") {
    inv_freq = inv_freq / rs.factor;
  } else if (rs.type == "llama3") {
    double old_ctx = double(rs.original_max_position_embeddings);
    double low_wl = old_ctx / rs.low_freq_factor, high_wl = old_ctx / rs.high_freq_factor;
    auto wavelen = 2 * M_PI / inv_freq;
    auto scaled = torch::where(wavelen > low_wl, inv_freq / rs.factor, inv_freq);
    auto smooth = (old_ctx / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
    auto smoothed = (1 - smooth) * scaled / rs.factor + smooth * scaled;
    auto medium = (wavelen >= high_wl).logical_and(wavelen <= low_wl);
    inv_freq = torch::where(medium, smoothed, scaled);
  }
}

std::pair<torch::Tensor, torch::Tensor> RotaryEmbedding::operator()(const torch::Tensor& positions) const {
  auto freqs = positions.to(torch::kFloat32).unsqueeze(-1) * inv_freq.to(positions.device());  // (B, T, D/2)
  auto emb = torch::cat({freqs, freqs}, -1);                                                      // (B, T, D)
  return {emb.cos(), emb.sin()};
}

namespace {

torch::Tensor rotate_half(const torch::Tensor& x) {
  auto halves = x.chunk(2, -1);
  return torch::cat({-halves[1], halves[0]}, -1);
}

// x (B, T, H, D) rotated by cos/sin (B, T, D): fused on CPU, else transformers' composite form.
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  if (x.is_cpu()) return kernels::rope(x, cos, sin);
  auto c = cos.unsqueeze(2).to(x.scalar_type()), s = sin.unsqueeze(2).to(x.scalar_type());  // (B, T, 1, D)
  return x * c + rotate_half(x) * s;
}

// A projection in a paged (engine) forward: x (1, N, in). Decode-sized batches of fp32 weights
// take the skinny kernel (kernels/skinny_linear.h: no packing of W per call), else torch's linear.
torch::Tensor paged_linear(torch::nn::Linear& l, const torch::Tensor& x) {
  const torch::Tensor& w = l->weight;
  auto x2 = x.view({x.size(1), x.size(2)});
  if (w.scalar_type() != torch::kFloat32 || !skinny_linear_applies(x2, w)) return l(x);
  auto y = skinny_linear(x2, w);
  if (l->bias.defined()) y.add_(l->bias);
  return y.unsqueeze(0);
}

}  // namespace

// ---- attention, MLP, layer -----------------------------------------------------------------

AttentionImpl::AttentionImpl(const ModelConfig& c)
    : heads(c.num_attention_heads), kv_heads(c.num_key_value_heads), head_dim(c.head_dim) {
  using torch::nn::LinearOptions;
  bool qkv_bias = c.attention_bias;
  bool o_bias = c.arch == Arch::kQwen2 ? false : c.attention_bias;
  q_proj = register_module("q_proj", torch::nn::Linear(LinearOptions(c.hidden_size, heads * head_dim).bias(qkv_bias)));
  k_proj = register_module("k_proj", torch::nn::Linear(LinearOptions(c.hidden_size, kv_heads * head_dim).bias(qkv_bias)));
  v_proj = register_module("v_proj", torch::nn::Linear(LinearOptions(c.hidden_size, kv_heads * head_dim).bias(qkv_bias)));
  o_proj = register_module("o_proj", torch::nn::Linear(LinearOptions(heads * head_dim, c.hidden_size).bias(o_bias)));
  if (c.qk_norm) {
    q_norm = register_module("q_norm", RMSNorm(head_dim, c.rms_norm_eps));
    k_norm = register_module("k_norm", RMSNorm(head_dim, c.rms_norm_eps));
  }
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                     const torch::Tensor& mask) {
  int64_t B = x.size(0), T = x.size(1);
  const bool tr = is_training();
  auto q = lora[0](q_proj(x), x, tr).view({B, T, heads, head_dim});     // (B, T, Hq, D)
  auto k = lora[1](k_proj(x), x, tr).view({B, T, kv_heads, head_dim});  // (B, T, Hkv, D)
  auto v = lora[2](v_proj(x), x, tr).view({B, T, kv_heads, head_dim});
  if (q_norm) q = q_norm(q), k = k_norm(k);
  q = apply_rope(q, cos, sin), k = apply_rope(k, cos, sin);
  q = q.transpose(1, 2), k = k.transpose(1, 2), v = v.transpose(1, 2);  // (B, H, T, D)
  std::optional<torch::Tensor> m;
  if (mask.defined()) m = mask;
  auto out = at::scaled_dot_product_attention(q, k, v, m, 0.0, /*is_causal=*/!mask.defined(),
                                              1.0 / std::sqrt(double(head_dim)), /*enable_gqa=*/kv_heads != heads);
  out = out.transpose(1, 2).reshape({B, T, heads * head_dim});  // (B, T, Hq*D)
  return lora[3](o_proj(out), out, tr);
}

torch::Tensor AttentionImpl::forward_paged(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                           PagedKV& kv, int64_t layer) {
  int64_t N = x.size(1);
  auto q = lora[0](paged_linear(q_proj, x), x, false).view({1, N, heads, head_dim});
  auto k = lora[1](paged_linear(k_proj, x), x, false).view({1, N, kv_heads, head_dim});
  auto v = lora[2](paged_linear(v_proj, x), x, false).view({1, N, kv_heads, head_dim});
  if (q_norm) q = q_norm(q), k = k_norm(k);
  q = apply_rope(q, cos, sin), k = apply_rope(k, cos, sin);
  torch::Tensor& kc = (*kv.k_cache)[size_t(layer)];
  torch::Tensor& vc = (*kv.v_cache)[size_t(layer)];
  write_kv(kc, vc, k.view({N, kv_heads, head_dim}), v.view({N, kv_heads, head_dim}), kv.meta.slot_mapping);
  auto out = paged_attention(q.view({N, heads, head_dim}), kc, vc, kv.meta, 1.0 / std::sqrt(double(head_dim)));
  auto o = out.view({1, N, heads * head_dim});
  return lora[3](paged_linear(o_proj, o), o, false);
}

MLPImpl::MLPImpl(const ModelConfig& c) {
  using torch::nn::LinearOptions;
  gate_proj = register_module("gate_proj", torch::nn::Linear(LinearOptions(c.hidden_size, c.intermediate_size).bias(c.mlp_bias)));
  up_proj = register_module("up_proj", torch::nn::Linear(LinearOptions(c.hidden_size, c.intermediate_size).bias(c.mlp_bias)));
  down_proj = register_module("down_proj", torch::nn::Linear(LinearOptions(c.intermediate_size, c.hidden_size).bias(c.mlp_bias)));
}

torch::Tensor MLPImpl::forward(const torch::Tensor& x) {
  const bool tr = is_training();
  auto h = torch::silu(lora[0](gate_proj(x), x, tr)) * lora[1](up_proj(x), x, tr);
  return lora[2](down_proj(h), h, tr);
}

torch::Tensor MLPImpl::forward_paged(const torch::Tensor& x) {
  auto h = torch::silu(lora[0](paged_linear(gate_proj, x), x, false)) * lora[1](paged_linear(up_proj, x), x, false);
  return lora[2](paged_linear(down_proj, h), h, false);
}

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& c) {
  self_attn = register_module("self_attn", Attention(c));
  mlp = register_module("mlp", MLP(c));
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                        const torch::Tensor& mask) {
  auto h = x + self_attn(input_layernorm(x), cos, sin, mask);
  return h + mlp(post_attention_layernorm(h));
}

torch::Tensor DecoderLayerImpl::forward_paged(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                              PagedKV& kv, int64_t layer) {
  auto h = x + self_attn->forward_paged(input_layernorm(x), cos, sin, kv, layer);
  return h + mlp->forward_paged(post_attention_layernorm(h));
}

DecoderImpl::DecoderImpl(const ModelConfig& c) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(DecoderLayer(c));
  norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

// ---- activation checkpointing ----------------------------------------

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Custom autograd functions cannot take undefined tensors: "no mask" travels as an empty tensor.
torch::Tensor real_mask(const torch::Tensor& m) { return m.numel() == 0 ? torch::Tensor() : m; }

// Runs one decoder layer without keeping its activations; backward reruns it with grad enabled.
struct CheckpointedLayer : torch::autograd::Function<CheckpointedLayer> {
  // The generator's state before the forward: the recompute draws the same dropout masks
  // (lora_dropout), as torch.utils.checkpoint's preserve_rng_state.
  static at::Generator generator(const torch::Tensor& x) { return at::globalContext().defaultGenerator(x.device()); }
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x, torch::Tensor cos, torch::Tensor sin,
                               torch::Tensor mask, DecoderLayerImpl* layer) {
    ctx->save_for_backward({x, cos, sin, mask});
    ctx->saved_data["layer"] = reinterpret_cast<int64_t>(layer);
    {
      at::Generator g = generator(x);
      std::lock_guard<std::mutex> lock(g.mutex());
      ctx->saved_data["rng"] = g.get_state();
    }
    torch::NoGradGuard no_grad;
    return layer->forward(x, cos, sin, real_mask(mask));
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    auto saved = ctx->get_saved_variables();
    auto* layer = reinterpret_cast<DecoderLayerImpl*>(ctx->saved_data["layer"].toInt());
    torch::Tensor x = saved[0].detach().requires_grad_(true);
    torch::Tensor out;
    {
      at::Generator g = generator(x);
      torch::Tensor now;
      {
        std::lock_guard<std::mutex> lock(g.mutex());
        now = g.get_state();
        g.set_state(ctx->saved_data["rng"].toTensor());
      }
      torch::AutoGradMode enable(true);
      out = layer->forward(x, saved[1], saved[2], real_mask(saved[3]));
      std::lock_guard<std::mutex> lock(g.mutex());
      g.set_state(now);
    }
    torch::autograd::backward({out}, {grad[0]});  // accumulates parameter grads
    return {x.grad(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

// ---- the model ---------------------------------------------------------------------------

CausalLMImpl::CausalLMImpl(const ModelConfig& c) : config(c), rotary(c) {
  model = register_module("model", Decoder(c));
  if (!c.tie_word_embeddings)
    lm_head = register_module("lm_head", torch::nn::Linear(torch::nn::LinearOptions(c.hidden_size, c.vocab_size).bias(false)));
}

std::vector<std::pair<std::string, std::vector<int64_t>>> parameter_shapes(const ModelConfig& c) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  int64_t h = c.hidden_size, q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  bool qkv_bias = c.attention_bias, o_bias = c.arch == Arch::kQwen2 ? false : c.attention_bias;
  auto linear = [&](const std::string& name, int64_t in, int64_t outf, bool bias) {
    out.push_back({name + ".weight", {outf, in}});
    if (bias) out.push_back({name + ".bias", {outf}});
  };
  out.push_back({"model.embed_tokens.weight", {c.vocab_size, h}});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    std::string l = "model.layers." + std::to_string(i) + ".";
    linear(l + "self_attn.q_proj", h, q, qkv_bias);
    linear(l + "self_attn.k_proj", h, kv, qkv_bias);
    linear(l + "self_attn.v_proj", h, kv, qkv_bias);
    linear(l + "self_attn.o_proj", q, h, o_bias);
    if (c.qk_norm) {
      out.push_back({l + "self_attn.q_norm.weight", {c.head_dim}});
      out.push_back({l + "self_attn.k_norm.weight", {c.head_dim}});
    }
    linear(l + "mlp.gate_proj", h, c.intermediate_size, c.mlp_bias);
    linear(l + "mlp.up_proj", h, c.intermediate_size, c.mlp_bias);
    linear(l + "mlp.down_proj", c.intermediate_size, h, c.mlp_bias);
    out.push_back({l + "input_layernorm.weight", {h}});
    out.push_back({l + "post_attention_layernorm.weight", {h}});
  }
  out.push_back({"model.norm.weight", {h}});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {c.vocab_size, h}});
  return out;
}

torch::Tensor causal_padding_mask(const torch::Tensor& attention_mask, torch::ScalarType dtype) {
  int64_t T = attention_mask.size(1);
  auto causal = torch::ones({T, T}, attention_mask.options().dtype(torch::kBool)).tril();  // (T, T)
  auto keys = attention_mask.to(torch::kBool).unsqueeze(1).unsqueeze(2);                  // (B, 1, 1, T)
  auto allowed = causal.unsqueeze(0).unsqueeze(0).logical_and(keys);                      // (B, 1, T, T)
  auto opts = torch::TensorOptions().dtype(dtype).device(attention_mask.device());
  return torch::zeros(allowed.sizes(), opts)
      .masked_fill(allowed.logical_not(), std::numeric_limits<float>::lowest() / 2);
}

torch::Tensor packed_causal_mask(const torch::Tensor& documents, torch::ScalarType dtype) {
  int64_t T = documents.size(1);
  auto doc = documents.to(torch::kInt64);
  auto causal = torch::ones({T, T}, doc.options().dtype(torch::kBool)).tril();  // (T, T)
  auto same = doc.unsqueeze(2).eq(doc.unsqueeze(1)).logical_and(doc.gt(0).unsqueeze(1));  // (B, T, T)
  auto allowed = causal.unsqueeze(0).logical_and(same).unsqueeze(1);                    // (B, 1, T, T)
  auto opts = torch::TensorOptions().dtype(dtype).device(documents.device());
  return torch::zeros(allowed.sizes(), opts)
      .masked_fill(allowed.logical_not(), std::numeric_limits<float>::lowest() / 2);
}

torch::Tensor packed_positions(const torch::Tensor& documents) {
  auto doc = documents.to(torch::kInt64);
  int64_t B = doc.size(0), T = doc.size(1);
  auto idx = torch::arange(T, doc.options()).unsqueeze(0).expand({B, T});
  auto prev = torch::cat({torch::full({B, 1}, -1, doc.options()), doc.slice(1, 0, T - 1)}, 1);
  auto start = torch::where(doc.ne(prev), idx, torch::zeros_like(idx)).cummax(1);  // first index of each run
  return idx - std::get<0>(start);
}

torch::Tensor CausalLMImpl::hidden_states(const torch::Tensor& ids, const torch::Tensor& attention_mask,
                                          const torch::Tensor& position_ids) {
  int64_t B = ids.size(0), T = ids.size(1);
  // attention_mask: 1 on real tokens, 0 on padding; or packed sequences, one id (1, 2, ...) per
  // sequence in a row, attending only within itself with positions restarting at 0.
  bool packed = false, right_padded = true;
  if (attention_mask.defined() && T > 1) {
    auto am = attention_mask.to(torch::kInt64);
    auto flags = torch::stack({am.max().gt(1), am.slice(1, 1, T).le(am.slice(1, 0, T - 1)).all()}).cpu();
    packed = flags[0].item<bool>();
    right_padded = flags[1].item<bool>();
  }
  torch::Tensor pos = position_ids;
  if (!pos.defined()) {
    if (packed) pos = packed_positions(attention_mask);
    else if (attention_mask.defined()) pos = (attention_mask.to(torch::kInt64).cumsum(1) - 1).clamp_min(0);
    else pos = torch::arange(T, ids.options().dtype(torch::kInt64)).unsqueeze(0).expand({B, T});
  }
  auto [cos, sin] = rotary(pos);  // (B, T, D)
  auto x = model->embed_tokens(ids);  // (B, T, H)
  // Right padding only (each row: its tokens, then pads): under causal attention no real token
  // sees a pad, so the fast causal kernel runs without a mask (the pads' outputs are undefined).
  torch::Tensor mask;
  if (packed) mask = packed_causal_mask(attention_mask, x.scalar_type());
  else if (!right_padded) mask = causal_padding_mask(attention_mask, x.scalar_type());
  // Frozen embeddings (LoRA): the checkpointed layers' input must require grad, or they get no
  // backward at all (transformers' enable_input_require_grads).
  if (activation_checkpointing && is_training() && torch::GradMode::is_enabled() && !x.requires_grad())
    x = x.detach().requires_grad_(true);
  for (const auto& m : *model->layers) {
    auto* layer = m->as<DecoderLayerImpl>();
    if (activation_checkpointing && is_training() && torch::GradMode::is_enabled())
      x = CheckpointedLayer::apply(x, cos, sin, mask.defined() ? mask : torch::empty({0}, x.options()), layer);
    else
      x = layer->forward(x, cos, sin, mask);
  }
  return model->norm(x);
}

torch::Tensor CausalLMImpl::output_weight() {
  return lm_head ? lm_head->weight : model->embed_tokens->weight;
}

torch::Tensor CausalLMImpl::forward_paged(const torch::Tensor& ids, const torch::Tensor& positions, PagedKV& kv,
                                          const torch::Tensor& logits_rows) {
  auto [cos, sin] = rotary(positions.unsqueeze(0));  // (1, N, D)
  auto x = model->embed_tokens(ids.unsqueeze(0));     // (1, N, H)
  int64_t i = 0;
  for (const auto& m : *model->layers) x = m->as<DecoderLayerImpl>()->forward_paged(x, cos, sin, kv, i++);
  auto rows = model->norm(x[0].index_select(0, logits_rows));  // (R, H)
  auto w = output_weight();
  // The head's W is large (V rows): packing it per call costs more than the product up to ~128
  // rows (kernels/README.md), so the skinny kernel takes more rows here than in the layers.
  if (w.scalar_type() == torch::kFloat32 && skinny_linear_applies(rows, w, kSkinnyLinearHeadMaxRows))
    return skinny_linear(rows, w);
  return torch::matmul(rows, w.t()).to(torch::kFloat32);
}

torch::Tensor CausalLMImpl::forward(const torch::Tensor& ids, const torch::Tensor& attention_mask,
                                    const torch::Tensor& position_ids) {
  return torch::matmul(hidden_states(ids, attention_mask, position_ids), output_weight().t());
}

torch::Tensor CausalLMImpl::weighted_logprob_sum(const torch::Tensor& input_ids, const torch::Tensor& targets,
                                                const torch::Tensor& weights, const torch::Tensor& attention_mask,
                                                const torch::Tensor& position_ids, int64_t chunk,
                                                torch::Tensor* logprobs, double temperature, torch::Tensor* entropy) {
  auto h = hidden_states(input_ids, attention_mask, position_ids);  // (B, T, H)
  if (temperature != 1.0) h = h / temperature;  // logits / T, since the head is linear
  int64_t B = h.size(0), T = h.size(1);
  // Custom functions take no undefined tensors: "no per-token output" is an empty tensor.
  torch::Tensor out = torch::empty({logprobs ? B * T : 0}, h.options().dtype(torch::kFloat32));
  torch::Tensor ent = torch::empty({entropy ? B * T : 0}, h.options().dtype(torch::kFloat32));
  auto hf = h.reshape({B * T, h.size(2)});
  auto tf = targets.reshape({B * T}).to(torch::kInt64);
  auto wf = weights.reshape({B * T}).to(h.device());
  if (!logprobs && !entropy) {
    // Only rows with a non-zero weight add to the sum or its gradient: the head (a vocabulary-wide
    // GEMM, forward and backward) runs on those alone, so prompt and pad tokens cost nothing there.
    auto rows = wf.nonzero().squeeze(1);
    if (rows.size(0) < B * T)
      hf = hf.index_select(0, rows), tf = tf.index_select(0, rows), wf = wf.index_select(0, rows);
  }
  auto total = kernels::fused_weighted_logprob(hf, output_weight(), tf, wf, chunk, out, ent);
  if (logprobs) *logprobs = out.view({B, T});
  if (entropy) *entropy = ent.view({B, T});
  return total;
}

torch::Tensor CausalLMImpl::token_logprobs(const torch::Tensor& ids, const torch::Tensor& targets,
                                           const torch::Tensor& attention_mask, const torch::Tensor& position_ids,
                                           int64_t chunk, double temperature) {
  auto h = hidden_states(ids, attention_mask, position_ids);  // (B, T, H)
  if (temperature != 1.0) h = h / temperature;
  int64_t B = h.size(0), T = h.size(1);
  auto flat = kernels::chunked_logprob(h.reshape({B * T, h.size(2)}), output_weight(),
                                    targets.reshape({B * T}).to(torch::kInt64), chunk);
  return flat.view({B, T});
}

}  // namespace warmup
