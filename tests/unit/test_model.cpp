// Model internals that need no Python oracle: the fused CPU kernels (RMSNorm, RoPE), the chunked
// log-prob autograd function and activation checkpointing give the same values and gradients as
// the composite (transformers) forms; padded and packed rows give
// each sequence's own logits; safetensors round trips.
#include "torch_doctest.h"

#include <fstream>
#include <iterator>

#include "config/toml_tree.h"
#include "cpu/fused_ops.h"
#include "helpers.h"
#include "model/checkpoint.h"
#include "model/safetensors.h"
#include "util/errors.h"
#include "warmup/precision.h"

using namespace warmup;

namespace {

ModelConfig tiny(const std::string& arch, bool tie) {
  nlohmann::json j = {{"architectures", {arch}}, {"vocab_size", 97}, {"hidden_size", 32}, {"intermediate_size", 48},
                      {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
                      {"tie_word_embeddings", tie}};
  return ModelConfig::from_json(j, "test");
}

std::map<std::string, torch::Tensor> grads_of(CausalLM& m) {
  std::map<std::string, torch::Tensor> g;
  for (auto& item : m->named_parameters()) g[item.key()] = item.value().grad().clone();
  return g;
}

}  // namespace

TEST_CASE("fused CPU RMSNorm and RoPE: values and gradients equal transformers' composite forms") {
  torch::manual_seed(11);
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    INFO(std::string(c10::toString(dtype)));
    double tol = dtype == torch::kFloat32 ? 1e-5 : 2e-2;
    // RMSNorm over (B, T, H), an fp32 weight (the autocast case for bf16 input): output fp32.
    auto x0 = torch::randn({3, 5, 40}).to(dtype), w0 = 1 + 0.1 * torch::randn({40}), g = torch::randn({3, 5, 40});
    auto x1 = x0.clone().requires_grad_(true), w1 = w0.clone().requires_grad_(true);
    auto x2 = x0.clone().requires_grad_(true), w2 = w0.clone().requires_grad_(true);
    auto h = x1.to(torch::kFloat32);
    auto ref = w1 * (h * torch::rsqrt(h.pow(2).mean(-1, true) + 1e-6)).to(dtype);
    auto got = kernels::rms_norm(x2, w2, 1e-6);
    CHECK((got.scalar_type() == ref.scalar_type()));
    CHECK(torch::allclose(got.to(torch::kFloat32), ref.to(torch::kFloat32), tol, tol));
    (ref * g).sum().backward();
    (got * g).sum().backward();
    CHECK(torch::allclose(x2.grad().to(torch::kFloat32), x1.grad().to(torch::kFloat32), tol, tol));
    CHECK(torch::allclose(w2.grad(), w1.grad(), tol * 10, tol));  // a sum over 15 rows

    // RoPE on (B, T, Hd, D) with the model's cos/sin (positions not in order: left padding).
    ModelConfig c = tiny("Qwen2ForCausalLM", true);
    RotaryEmbedding rot(c);
    auto pos = torch::tensor({0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, torch::kInt64).view({2, 7});
    auto [cos, sin] = rot(pos);
    int64_t D = c.head_dim;
    auto q0 = torch::randn({2, 7, 3, D}).to(dtype), gq = torch::randn({2, 7, 3, D}).to(dtype);
    auto q1 = q0.clone().requires_grad_(true), q2 = q0.clone().requires_grad_(true);
    auto cc = cos.unsqueeze(2).to(dtype), ss = sin.unsqueeze(2).to(dtype);
    auto halves = q1.chunk(2, -1);
    auto rref = q1 * cc + torch::cat({-halves[1], halves[0]}, -1) * ss;
    auto rgot = kernels::rope(q2, cos, sin);
    CHECK((rgot.scalar_type() == dtype));
    CHECK(torch::allclose(rgot.to(torch::kFloat32), rref.to(torch::kFloat32), tol, tol));
    (rref * gq).sum().backward();
    (rgot * gq).sum().backward();
    CHECK(torch::allclose(q2.grad().to(torch::kFloat32), q1.grad().to(torch::kFloat32), tol, tol));
  }
}

TEST_CASE("chunked token log-probs: values and gradients equal log_softmax of full logits") {
  for (bool tie : {true, false}) {
    CausalLM m = init_model(tiny("Qwen2ForCausalLM", tie), 3);
    m->train();
    auto ids = torch::randint(0, 97, {3, 11}, torch::kInt64);
    auto mask = torch::ones({3, 11}, torch::kInt64);
    mask.index_put_({1, torch::indexing::Slice(0, 4)}, 0);  // left padding
    auto targets = torch::randint(0, 97, {3, 11}, torch::kInt64);
    auto weights = torch::rand({3, 11});

    auto ref = torch::log_softmax(m->forward(ids, mask), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1);
    (ref * weights).sum().backward();
    auto g_ref = grads_of(m);
    m->zero_grad();
    auto got = m->token_logprobs(ids, targets, mask, {}, /*chunk=*/4);
    (got * weights).sum().backward();
    auto g_got = grads_of(m);
    CHECK(torch::allclose(got, ref.detach(), 1e-5, 1e-5));
    for (const auto& [name, g] : g_ref) {
      INFO(name);
      CHECK(torch::allclose(g_got[name], g, 1e-5, 1e-6));
    }
  }
}

TEST_CASE("fused weighted log-prob sum: value, per-token values and gradients match the plain path") {
  CausalLM m = init_model(tiny("LlamaForCausalLM", false), 5);
  m->train();
  auto ids = torch::randint(0, 97, {2, 13}, torch::kInt64);
  auto targets = torch::roll(ids, -1, 1);
  auto weights = torch::randn({2, 13});
  weights.index_put_({0, torch::indexing::Slice(0, 3)}, 0.0);  // masked positions
  auto ref_lp = torch::log_softmax(m->forward(ids), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1);
  auto ref = (ref_lp * weights).sum();
  ref.backward();
  auto g_ref = grads_of(m);
  m->zero_grad();
  torch::Tensor lp;
  auto got = m->weighted_logprob_sum(ids, targets, weights, {}, {}, /*chunk=*/5, &lp);
  (got * 3.0).backward();  // upstream gradient is applied
  CHECK(torch::allclose(got, ref.detach(), 1e-5, 1e-5));
  CHECK(torch::allclose(lp, ref_lp.detach(), 1e-5, 1e-5));
  for (const auto& [name, g] : grads_of(m)) {
    INFO(name);
    CHECK(torch::allclose(g, 3.0 * g_ref[name], 1e-4, 1e-6));
  }
  // Without per-token outputs the head runs on the weighted rows only: same value and gradients.
  m->zero_grad();
  auto sel = m->weighted_logprob_sum(ids, targets, weights, {}, {}, /*chunk=*/5, nullptr);
  (sel * 3.0).backward();
  CHECK(torch::allclose(sel, ref.detach(), 1e-5, 1e-5));
  for (const auto& [name, g] : grads_of(m)) {
    INFO(name);
    CHECK(torch::allclose(g, 3.0 * g_ref[name], 1e-4, 1e-6));
  }
  m->zero_grad();  // all weights zero: nothing runs through the head, the sum and gradients are 0
  auto none = m->weighted_logprob_sum(ids, targets, torch::zeros({2, 13}), {}, {}, 5, nullptr);
  none.backward();
  CHECK(none.item<double>() == 0.0);
  for (const auto& [name, g] : grads_of(m)) CHECK(g.abs().max().item<double>() == 0.0);
}

TEST_CASE("right-padded rows (no mask needed) and packed rows equal each sequence run alone") {
  CausalLM m = init_model(tiny("Qwen2ForCausalLM", true), 6);
  m->eval();
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> seqs = {torch::randint(0, 97, {7}, torch::kInt64), torch::randint(0, 97, {4}, torch::kInt64),
                                     torch::randint(0, 97, {5}, torch::kInt64)};
  std::vector<torch::Tensor> alone;
  for (const auto& s : seqs) alone.push_back(m->forward(s.unsqueeze(0)).squeeze(0));
  using torch::indexing::Slice;
  // Right padding: one sequence per row, zeros after it.
  auto ids = torch::zeros({3, 7}, torch::kInt64), mask = torch::zeros({3, 7}, torch::kInt64);
  for (int64_t i = 0; i < 3; ++i) {
    int64_t L = seqs[size_t(i)].size(0);
    ids.index_put_({i, Slice(0, L)}, seqs[size_t(i)]);
    mask.index_put_({i, Slice(0, L)}, 1);
  }
  auto padded = m->forward(ids, mask);
  for (int64_t i = 0; i < 3; ++i) {
    int64_t L = seqs[size_t(i)].size(0);
    CHECK(torch::allclose(padded[i].slice(0, 0, L), alone[size_t(i)], 1e-5, 1e-5));
  }
  // Packed: sequences 1 and 2 back to back in one row (ids 1, 2), then two pads; row 2 is sequence 0.
  auto pids = torch::zeros({2, 11}, torch::kInt64), pmask = torch::zeros({2, 11}, torch::kInt64);
  pids.index_put_({0, Slice(0, 4)}, seqs[1]);
  pids.index_put_({0, Slice(4, 9)}, seqs[2]);
  pmask.index_put_({0, Slice(0, 4)}, 1);
  pmask.index_put_({0, Slice(4, 9)}, 2);
  pids.index_put_({1, Slice(0, 7)}, seqs[0]);
  pmask.index_put_({1, Slice(0, 7)}, 1);
  CHECK(torch::equal(packed_positions(pmask)[0].slice(0, 0, 9), torch::tensor({0, 1, 2, 3, 0, 1, 2, 3, 4}, torch::kInt64)));
  auto packed = m->forward(pids, pmask);
  CHECK(torch::allclose(packed[0].slice(0, 0, 4), alone[1], 1e-5, 1e-5));
  CHECK(torch::allclose(packed[0].slice(0, 4, 9), alone[2], 1e-5, 1e-5));
  CHECK(torch::allclose(packed[1].slice(0, 0, 7), alone[0], 1e-5, 1e-5));
  // Without the ids the second sequence would see the first: the mask matters.
  auto leaky = m->forward(pids, (pmask > 0).to(torch::kInt64));
  CHECK_FALSE(torch::allclose(leaky[0].slice(0, 4, 9), alone[2], 1e-3, 1e-3));
}

TEST_CASE("activation checkpointing keeps the gradients") {
  CausalLM m = init_model(tiny("Qwen3ForCausalLM", true), 4);
  m->train();
  auto ids = torch::randint(0, 97, {2, 9}, torch::kInt64);
  auto loss = [&] { return m->token_logprobs(ids, torch::roll(ids, -1, 1)).mean(); };
  loss().backward();
  auto plain = grads_of(m);
  m->zero_grad();
  m->activation_checkpointing = true;
  loss().backward();
  auto ckpt = grads_of(m);
  for (const auto& [name, g] : plain) {
    INFO(name);
    CHECK(torch::allclose(ckpt[name], g, 1e-6, 1e-7));
  }
}

TEST_CASE("safetensors round trip: dtypes, shards, index") {
  test::TempDir d;
  std::vector<std::pair<std::string, torch::Tensor>> ts = {
      {"a", torch::randn({3, 5})}, {"b", torch::randn({7}).to(torch::kBFloat16)},
      {"c", torch::randn({2, 2, 2}).to(torch::kFloat16)}, {"d", torch::arange(10, torch::kInt64)},
      {"e", torch::zeros({0, 4})}};
  auto files = save_safetensors(d.path / "one", ts, 1'000'000);
  CHECK(files.size() == 1);
  auto many = save_safetensors(d.path / "many", ts, 40);
  CHECK(many.size() > 2);
  CHECK(std::filesystem::exists(d.path / "many" / "model.safetensors.index.json"));
  for (const char* dir : {"one", "many"}) {
    SafetensorsCheckpoint ck(d.path / dir);
    for (const auto& [name, t] : ts) {
      std::string where = std::string(dir) + " " + name;
      INFO(where);
      auto back = ck.tensor(name);
      CHECK((back.scalar_type() == t.scalar_type()));
      CHECK(torch::equal(back, t));
    }
  }
  CHECK(parse_size("5GB") == 5'000'000'000ULL);
  CHECK(parse_size("60KB") == 60'000ULL);
  CHECK(parse_size("2GiB") == 2147483648ULL);
  CHECK_THROWS_AS(parse_size("lots"), std::exception);
}

TEST_CASE("zero-copy loading maps the file and writes stay private") {
  test::TempDir d;
  CausalLM m = init_model(tiny("LlamaForCausalLM", false), 1);
  save_model(m, d.path);
  auto before = SafetensorsCheckpoint(d.path).tensor("model.norm.weight").clone();
  CausalLM loaded = load_model(d.path);
  {
    torch::NoGradGuard ng;
    loaded->model->norm->weight.add_(1.0);  // copy-on-write: the file must not change
  }
  CHECK(torch::equal(SafetensorsCheckpoint(d.path).tensor("model.norm.weight"), before));
}

// `bf16 = true | false | "auto"`; "auto" is on for CUDA and follows the CPU's native bf16 flags
// (/proc/cpuinfo) on the CPU; anything else is an error at the key's place.
TEST_CASE("the bf16 option: a boolean or \"auto\"") {
  struct RecordingHost : Host {
    std::string resolved;
    void log(LogLevel, std::string_view, std::string_view) override {}
    void set_resolved_config(std::string_view, std::string_view toml) override { resolved = toml; }
  } host;
  auto mode = [&](const std::string& text) {
    toml::table t = toml::parse(text, std::string("exp.toml"));
    PluginInit init = make_plugin_init("algorithm", "sft", "stages.sft", t, "exp.toml:1:1", 5);
    init.host = &host;
    Options o(init);
    Bf16 m = bf16_option(o);
    o.finish();
    return m;
  };
  CHECK(mode("bf16 = true\n") == Bf16::on);
  CHECK(mode("bf16 = false\n") == Bf16::off);
  CHECK(mode("") == Bf16::off);  // the default
  CHECK(mode("bf16 = \"auto\"\n") == Bf16::automatic);
  CHECK(toml::parse(host.resolved)["bf16"].value<std::string>() == "auto");
  CHECK_THROWS_WITH_AS(mode("bf16 = \"yes\"\n"), doctest::Contains("bf16 must be true, false or \"auto\""), ConfigError);
  CHECK(bf16_enabled(Bf16::on, torch::kCPU));
  CHECK_FALSE(bf16_enabled(Bf16::off, torch::kCUDA));
  CHECK(bf16_enabled(Bf16::automatic, torch::kCUDA));
  std::ifstream in("/proc/cpuinfo");
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  bool native = all.find(" amx_bf16") != std::string::npos || all.find(" avx512_bf16") != std::string::npos;
  CHECK(bf16_enabled(Bf16::automatic, torch::kCPU) == native);
}
