// Model internals that need no Python oracle: the fused CPU kernels (RMSNorm, RoPE), the chunked
// log-prob autograd function and activation checkpointing give the same values and gradients as
// the composite (transformers) forms; padded and packed rows give
// each sequence's own logits; safetensors round trips.
#include "torch_doctest.h"

#include <fstream>
#include <iterator>

#include "config/toml_tree.h"
#include "cpu/fused_ops.h"
#include "engine/engine.h"
#include "helpers.h"
#include "model/checkpoint.h"
#include "model/safetensors.h"
#include "text/tokenizer.h"
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
      // atol 1e-5 as for the values: the tied embedding's gradient sums the LM head's and the
      // lookup's contributions, whose float32 summation order differs between CPU kernels (AVX2
      // vs AVX-512 builds of the same ops disagree in the 6th decimal there).
      INFO(name << " max |diff| " << (g_got[name] - g).abs().max().item<double>());
      CHECK(torch::allclose(g_got[name], g, 1e-5, 1e-5));
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

// ---- hostile model files: every size is checked before it sizes an allocation ------------------
// Each refusal is a DataError (exit 2 from the CLI) that names the file and the field or tensor and
// gives the bound. tests/integration/test_model.py checks the safetensors cases against the
// reference implementation (the safetensors Python package) and the exit code of the binary.

namespace {

namespace fs = std::filesystem;

// A safetensors file from a raw header (no padding) and `data_bytes` zero bytes of data.
fs::path raw_safetensors(const fs::path& file, const std::string& header, size_t data_bytes,
                         uint64_t header_len = UINT64_MAX) {
  uint64_t n = header_len == UINT64_MAX ? header.size() : header_len;
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char((n >> (8 * i)) & 0xFF);
  bytes += header;
  bytes.append(data_bytes, '\0');
  std::ofstream(file, std::ios::binary) << bytes;
  return file;
}

// The DataError message of `f()`, or "ok".
template <typename F>
std::string refusal(F&& f) {
  try {
    f();
    return "ok";
  } catch (const DataError& e) {
    return e.what();
  }
}

nlohmann::json tiny_json() {
  return {{"architectures", {"Qwen2ForCausalLM"}}, {"vocab_size", 97}, {"hidden_size", 32}, {"intermediate_size", 48},
          {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 2}};
}

}  // namespace

TEST_CASE("safetensors: shapes, offsets and header lengths are checked as the reference implementation does") {
  test::TempDir d;
  fs::path f = d.path / "t.safetensors";
  auto open = [&](const std::string& header, size_t data, uint64_t len = UINT64_MAX) {
    raw_safetensors(f, header, data, len);
    return refusal([&] { SafetensorsFile s(f); });
  };
  // Accepted: tensors tiling the data section in any header order, a zero-size tensor, metadata.
  CHECK(open(R"({"__metadata__":null})", 0) == "ok");
  CHECK(open(R"({"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},)"
             R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"z":{"dtype":"BF16","shape":[0,3],"data_offsets":[16,16]}})",
             16) == "ok");
  struct Case {
    const char* what;
    std::string header;
    size_t data;
    uint64_t len;
    std::string needle;
  };
  std::vector<Case> cases = {
      // 2^62 * 4 elements wrap a 64-bit product to 0 = the (empty) span: must not be accepted.
      {"shape [2^62, 4] F32", R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}})", 0,
       UINT64_MAX, "tensor 'w': shape [4611686018427387904,4] has more than 2^63 elements (overflow)"},
      {"shape [2^62] F32", R"({"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})", 0,
       UINT64_MAX, "tensor 'w': F32 shape [4611686018427387904] needs more than 2^64 bytes (overflow)"},
      {"element count past 2^64", R"({"w":{"dtype":"U8","shape":[4294967296,4294967296,2],"data_offsets":[0,0]}})", 0,
       UINT64_MAX, "tensor 'w': shape [4294967296,4294967296,2] has more than 2^63 elements (overflow)"},
      {"offsets past the end", R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8, UINT64_MAX,
       "tensor 'w': data ends at byte 16 but the file has 8 data bytes (truncated?)"},
      {"span not dtype*shape", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8, UINT64_MAX,
       "tensor 'w': data_offsets span 8 bytes but F32 shape [3] needs 12"},
      {"end before begin", R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8, UINT64_MAX,
       "data_offsets [8,0] end before they begin"},
      {"overlap", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       12, UINT64_MAX, "tensor 'b' overlaps the previous tensor at data byte 4"},
      {"gap", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
       12, UINT64_MAX, "tensor 'b' starts at data byte 8 but the previous tensor ends at 4 (a gap)"},
      {"trailing bytes", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 12, UINT64_MAX,
       "the tensors cover 4 data bytes but the file has 12 (trailing bytes)"},
      {"negative dimension", R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4, UINT64_MAX,
       "shape[0] must be a non-negative integer, got -1"},
      {"float dimension", R"({"w":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}})", 4, UINT64_MAX,
       "shape[0] must be a non-negative integer, got 1.0"},
      {"three offsets", R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", 4, UINT64_MAX,
       "data_offsets must be [begin, end], got [0,4,8]"},
      {"negative offset", R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[-4,0]}})", 4, UINT64_MAX,
       "data_offsets[0] must be a non-negative integer, got -4"},
      {"unknown dtype", R"({"w":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}})", 16, UINT64_MAX,
       "unsupported safetensors dtype 'F128'"},
      {"entry not an object", R"({"w":[1,2]})", 0, UINT64_MAX, "tensor 'w': entry must be an object, got array"},
      {"no shape", R"({"w":{"dtype":"F32","data_offsets":[0,0]}})", 0, UINT64_MAX, "tensor 'w': no \"shape\""},
      {"non-string metadata", R"({"__metadata__":{"format":1}})", 0, UINT64_MAX,
       "__metadata__ 'format' must be a string, got number"},
      {"header length past the limit", "{}", 0, uint64_t(1) << 62, "header length 4611686018427387904 exceeds the limit of 100000000 bytes"},
      {"header length past the file", "{}", 0, 1000, "header length 1000 exceeds the file (10 bytes)"},
      {"newline in a name", "{\"a\\nb\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, UINT64_MAX,
       "tensor 'a\\x0Ab': data_offsets span 8 bytes"},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    std::string msg = open(c.header, c.data, c.len);
    CHECK(msg.rfind(f.string() + ": ", 0) == 0);  // names the file first
    CHECK_MESSAGE(msg.find(c.needle) != std::string::npos, msg);
    CHECK(msg.find('\n') == std::string::npos);
  }
  // What we write passes our own checks.
  write_safetensors_file(f, {{"a", torch::ones({3, 5})}, {"e", torch::zeros({0, 2})}, {"b", torch::ones({7}, torch::kBFloat16)}});
  CHECK(refusal([&] { SafetensorsFile s(f); }) == "ok");
}

TEST_CASE("sharded checkpoints: weight_map entries must be shard file names in the directory") {
  test::TempDir d;
  save_safetensors(d.path, {{"a", torch::ones({8})}, {"b", torch::ones({8})}}, 40);
  fs::path index = d.path / "model.safetensors.index.json";
  nlohmann::json good = nlohmann::json::parse(std::ifstream(index));
  CHECK(refusal([&] { SafetensorsCheckpoint c(d.path); }) == "ok");
  std::vector<std::pair<nlohmann::json, std::string>> cases = {
      {5, "weight_map 'a' must be a shard file name (a string), got 5"},
      {nullptr, "weight_map 'a' must be a shard file name (a string), got null"},
      {{{"x", 1}}, "weight_map 'a' must be a shard file name (a string), got {\"x\":1}"},
      {"../outside.safetensors", "shard '../outside.safetensors' is not a file name in the checkpoint directory"},
      {"/etc/passwd", "shard '/etc/passwd' is not a file name in the checkpoint directory"},
      {"..", "shard '..' is not a file name"},
  };
  for (const auto& [value, needle] : cases) {
    nlohmann::json j = good;
    j["weight_map"]["a"] = value;
    std::ofstream(index) << j.dump();
    std::string msg = refusal([&] { SafetensorsCheckpoint c(d.path); });
    INFO(msg);
    CHECK(msg.rfind(index.string() + ": ", 0) == 0);
    CHECK(msg.find(needle) != std::string::npos);
  }
  std::ofstream(index) << R"({"weight_map": ["a", "b"]})";
  CHECK(refusal([&] { SafetensorsCheckpoint c(d.path); }).find("no weight_map object") != std::string::npos);
}

TEST_CASE("config.json: absurd and inconsistent sizes are refused with the bound") {
  CHECK_NOTHROW(ModelConfig::from_json(tiny_json(), "config.json"));
  std::vector<std::tuple<std::string, nlohmann::json, std::string>> cases = {
      {"num_hidden_layers", 1000000000, "\"num_hidden_layers\" is 1000000000, must be an integer in 1..1024"},
      {"vocab_size", 1000000000000LL, "\"vocab_size\" is 1000000000000, must be an integer in 1..16777216"},
      {"vocab_size", 97.5, "\"vocab_size\" is 97.5, must be an integer"},
      {"vocab_size", true, "\"vocab_size\" is true, must be an integer"},
      {"hidden_size", -32, "\"hidden_size\" is -32, must be an integer in 1..65536"},
      {"hidden_size", 30, "hidden_size 30 is not divisible by num_attention_heads 4 (and no head_dim is given)"},
      {"intermediate_size", 0, "\"intermediate_size\" is 0, must be an integer in 1..1048576"},
      {"num_attention_heads", 18446744073709551615ULL, "\"num_attention_heads\" is 18446744073709551615, must be an integer in 1..1024"},
      {"num_key_value_heads", 3, "num_attention_heads 4 must be a multiple of num_key_value_heads 3"},
      {"num_key_value_heads", 8, "\"num_key_value_heads\" is 8, must be an integer in 1..4"},
      {"num_key_value_heads", 0, "\"num_key_value_heads\" is 0, must be an integer in 1..4"},
      {"head_dim", -8, "\"head_dim\" is -8, must be an integer in 2..1024"},
      {"head_dim", 1 << 20, "\"head_dim\" is 1048576, must be an integer in 2..1024"},
      {"head_dim", 6 + 1, "head_dim 7 must be even for RoPE"},
      {"max_position_embeddings", -1, "\"max_position_embeddings\" is -1, must be an integer in 1..16777216"},
      {"rope_theta", 0, "\"rope_theta\" is 0, must be a number > 0"},
      {"rope_theta", "fast", "\"rope_theta\" is \"fast\", must be a number > 0"},
      {"rms_norm_eps", -1e-6, "\"rms_norm_eps\" is -1e-06, must be a number > 0 and <= 1"},
      {"initializer_range", 1e9, "\"initializer_range\" is 1000000000.0, must be a number >= 0 and <= 1"},
      {"tie_word_embeddings", "yes", "\"tie_word_embeddings\" is \"yes\", must be true or false"},
      {"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 4.0}, {"high_freq_factor", 4.0}},
       "rope_scaling high_freq_factor must be greater than low_freq_factor"},
      {"rope_scaling", {{"rope_type", "linear"}, {"factor", -2.0}}, "\"factor\" is -2.0, must be a number > 0"},
      {"rope_scaling", {{"rope_type", "llama3"}, {"original_max_position_embeddings", 1LL << 40}},
       "\"original_max_position_embeddings\" is 1099511627776, must be an integer in 1..16777216"},
      {"rope_scaling", "linear", "\"rope_scaling\" is \"linear\", must be an object or null"},
      {"eos_token_id", 97, "\"eos_token_id\" 97 is not a token id: ids are integers in 0..96 (vocab_size 97)"},
      {"eos_token_id", -1, "\"eos_token_id\" -1 is not a token id"},
      {"bos_token_id", {1, 1LL << 40}, "\"bos_token_id\" [1,1099511627776] is not a token id"},
      {"architectures", {7}, "no \"architectures\" list of names"},
  };
  for (const auto& [key, value, needle] : cases) {
    nlohmann::json j = tiny_json();
    j[key] = value;
    std::string msg = refusal([&] { ModelConfig::from_json(j, "/m/config.json"); });
    INFO(key << " = " << value.dump());
    CHECK_MESSAGE(msg.find("/m/config.json: " + needle) == 0, msg);
  }
  // Consistent values that differ from the defaults are accepted: Qwen3's head_dim * heads != hidden.
  nlohmann::json q3 = tiny_json();
  q3["architectures"] = {"Qwen3ForCausalLM"}, q3["head_dim"] = 16, q3["eos_token_id"] = {96, 3}, q3["pad_token_id"] = nullptr;
  ModelConfig c = ModelConfig::from_json(q3, "config.json");
  CHECK(c.head_dim == 16);
  CHECK(c.eos_token_id == 96);
  CHECK_FALSE(c.pad_token_id.has_value());
  // From a file: the message names it.
  test::TempDir d;
  nlohmann::json big = tiny_json();
  big["num_hidden_layers"] = 1000000000;
  fs::path file = d.write("config.json", big.dump());
  CHECK(refusal([&] { ModelConfig::load(d.path); }).rfind(file.string() + ": \"num_hidden_layers\"", 0) == 0);
}

TEST_CASE("parameter_shapes lists exactly the parameters the model builds") {
  for (const char* arch : {"Qwen2ForCausalLM", "LlamaForCausalLM", "Qwen3ForCausalLM"}) {
    for (bool tie : {true, false}) {
      nlohmann::json j = tiny_json();
      j["architectures"] = {arch}, j["tie_word_embeddings"] = tie, j["attention_bias"] = true, j["mlp_bias"] = true;
      ModelConfig c = ModelConfig::from_json(j, "config.json");
      CausalLM m(c);
      std::map<std::string, std::vector<int64_t>> built, listed;
      for (const auto& item : m->named_parameters()) built[item.key()] = item.value().sizes().vec();
      for (const auto& [name, shape] : parameter_shapes(c)) listed[name] = shape;
      INFO(arch << " tie=" << tie);
      CHECK(built == listed);
    }
  }
}

TEST_CASE("load_model checks the checkpoint against the config before building the model") {
  test::TempDir d;
  CausalLM m = init_model(tiny("Qwen2ForCausalLM", true), 1);
  save_model(m, d.path);
  CHECK(refusal([&] { load_model(d.path); }) == "ok");
  nlohmann::json cfg = nlohmann::json::parse(std::ifstream(d.path / "config.json"));
  // Within the per-field bounds but ~2 TB of float32: refused from the checkpoint's shapes in
  // moments, where building the model first would exhaust the memory.
  nlohmann::json big = cfg;
  big["hidden_size"] = 65536, big["intermediate_size"] = 1 << 20, big["num_hidden_layers"] = 1024, big["head_dim"] = 8;
  std::ofstream(d.path / "config.json") << big.dump();
  std::string msg = refusal([&] { load_model(d.path); });
  CHECK_MESSAGE(msg.find("tensor 'model.embed_tokens.weight' has shape [97, 32] but the config needs [97, 65536]") !=
                    std::string::npos, msg);
  nlohmann::json deeper = cfg;
  deeper["num_hidden_layers"] = 3;
  std::ofstream(d.path / "config.json") << deeper.dump();
  msg = refusal([&] { load_model(d.path); });
  CHECK_MESSAGE(msg.find("checkpoint has no tensor 'model.layers.2.self_attn.q_proj.weight' required by "
                         "Qwen2ForCausalLM with the sizes of " + (d.path / "config.json").string()) != std::string::npos, msg);
  // Without a checkpoint (model init), the machine's memory is the bound.
  nlohmann::json huge = tiny_json();
  huge["vocab_size"] = 1 << 24, huge["hidden_size"] = 65536, huge["num_hidden_layers"] = 1024, huge["intermediate_size"] = 1 << 20;
  huge["head_dim"] = 64;
  ModelConfig hc = ModelConfig::from_json(huge, "/m/huge.json");
  CHECK_THROWS_WITH_AS(init_model(hc, 1), doctest::Contains("/m/huge.json: a model of"), ConfigError);
  CHECK_THROWS_WITH_AS(init_model(hc, 1), doctest::Contains("more than this machine's"), ConfigError);
}

TEST_CASE("tokenizer.json: ids and merges of the wrong type or out of range are refused") {
  test::TempDir d;
  nlohmann::json good = nlohmann::json::parse(Tokenizer::byte_level_json({"<|endoftext|>"}));
  good["model"]["vocab"]["ĠĠ"] = 256;  // a merge to mutate; the added token after it, as HF numbers it
  good["added_tokens"][0]["id"] = 257;
  good["model"]["merges"] = nlohmann::json::array({nlohmann::json::array({"Ġ", "Ġ"})});
  fs::path file = d.path / "tokenizer.json";
  auto load = [&](const nlohmann::json& j) {
    std::ofstream(file) << j.dump();
    return refusal([&] { Tokenizer::load(d.path); });
  };
  CHECK(load(good) == "ok");
  using Mutate = std::function<void(nlohmann::json&)>;
  std::vector<std::tuple<std::string, Mutate, std::string>> cases = {
      {"id 2^40", [](nlohmann::json& j) { j["model"]["vocab"]["a"] = 1LL << 40; },
       "/model/vocab/a: id 1099511627776 is not a token id (an integer in 0..16777215)"},
      {"id -1", [](nlohmann::json& j) { j["model"]["vocab"]["a"] = -1; }, "/model/vocab/a: id -1 is not a token id"},
      {"id 2^31", [](nlohmann::json& j) { j["model"]["vocab"]["a"] = 1LL << 31; }, "/model/vocab/a: id 2147483648 is not"},
      {"id a string", [](nlohmann::json& j) { j["model"]["vocab"]["a"] = "65"; }, "/model/vocab/a: id \"65\" is not"},
      {"id a float", [](nlohmann::json& j) { j["model"]["vocab"]["a"] = 65.5; }, "/model/vocab/a: id 65.5 is not"},
      {"sparse ids", [](nlohmann::json& j) { j["model"]["vocab"]["a"] = (1 << 24) - 1; },
       "/model/vocab: the highest token id is 16777215 but there are only 258 tokens"},
      {"added id -1", [](nlohmann::json& j) { j["added_tokens"][0]["id"] = -1; }, "/added_tokens/0/id: id -1 is not"},
      {"added content a number", [](nlohmann::json& j) { j["added_tokens"][0]["content"] = 5; },
       "/added_tokens/0: must be an object with an integer \"id\" and a string \"content\""},
      {"added_tokens an object", [](nlohmann::json& j) { j["added_tokens"] = {{"a", 1}}; }, "/added_tokens: must be an array"},
      {"merge of numbers", [](nlohmann::json& j) { j["model"]["merges"] = {{1, 2}}; },
       "/model/merges/0: a merge is [\"a\", \"b\"] or \"a b\", got [1,2]"},
      {"merge of three", [](nlohmann::json& j) { j["model"]["merges"] = {{"Ġ", "Ġ", "Ġ"}}; }, "/model/merges/0: a merge is"},
      {"merges a string", [](nlohmann::json& j) { j["model"]["merges"] = "Ġ Ġ"; }, "/model/merges: must be an array, got string"},
      {"pretokenizers missing", [](nlohmann::json& j) { j["pre_tokenizer"].erase("pretokenizers"); },
       "/pre_tokenizer/pretokenizers: must be an array"},
      {"template item not an object",
       [](nlohmann::json& j) { j["post_processor"] = {{"type", "TemplateProcessing"}, {"single", {7}}}; },
       "/post_processor/single: an item must be an object, got 7"},
  };
  for (const auto& [what, mutate, needle] : cases) {
    nlohmann::json j = good;
    mutate(j);
    std::string msg = load(j);
    INFO(what << ": " << msg);
    CHECK(msg.rfind(file.string() + ": " + needle, 0) == 0);
  }
}

TEST_CASE("generation_config.json: eos_token_id must name tokens of the tokenizer") {
  test::TempDir d;
  std::ofstream(d.path / "tokenizer.json") << Tokenizer::byte_level_json({"<|endoftext|>", "<|im_end|>"});
  Tokenizer tok = Tokenizer::load(d.path);
  fs::path gen = d.path / "generation_config.json";
  std::ofstream(gen) << R"({"eos_token_id": [256, 257]})";
  CHECK(eos_ids_for(d.path, tok) == std::vector<int32_t>{256, 257});
  for (const char* bad : {R"({"eos_token_id": 1099511627776})", R"({"eos_token_id": [256, -1]})",
                          R"({"eos_token_id": "256"})", R"({"eos_token_id": 258})"}) {
    std::ofstream(gen) << bad;
    std::string msg = refusal([&] { eos_ids_for(d.path, tok); });
    INFO(bad);
    CHECK(msg.rfind(gen.string() + ": eos_token_id ", 0) == 0);
    CHECK(msg.find("is not a token id (integers in 0..257") != std::string::npos);
  }
}
