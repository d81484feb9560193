// Engine against the model itself: cached decoding equals full recomputation at every step (also
// across preemption), greedy is deterministic, seeds reproduce; sampling filters against their
// analytic distributions with a chi-square test.
#include "torch_doctest.h"

#include <ATen/CPUGeneratorImpl.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <numeric>

#include "engine/engine.h"
#include "model/checkpoint.h"

using namespace warmup;

namespace {

ModelConfig tiny_config() {
  nlohmann::json j = {{"architectures", {"Qwen2ForCausalLM"}}, {"vocab_size", 300}, {"hidden_size", 32},
                      {"intermediate_size", 64}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
                      {"num_key_value_heads", 2}, {"tie_word_embeddings", true}};
  return ModelConfig::from_json(j, "test");
}

std::shared_ptr<const Tokenizer> byte_tokenizer() {
  static auto tok = [] {
    auto dir = std::filesystem::temp_directory_path() / ("warmup-engine-tok-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "tokenizer.json") << Tokenizer::byte_level_json({"<|endoftext|>"});
    return std::make_shared<const Tokenizer>(Tokenizer::load(dir));
  }();
  return tok;
}

std::vector<GenerationRequest> requests(const SamplingParams& p) {
  std::vector<GenerationRequest> r;
  std::vector<std::vector<int32_t>> prompts = {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19},
                                               {42}, {7, 7, 7, 250, 251}};
  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerationRequest g;
    g.id = std::to_string(i);
    g.prompt_ids = prompts[i];
    g.params = p;
    g.params.seed = 100 + i;
    r.push_back(g);
  }
  return r;
}

// Max |cached - recomputed| over every generated step of every sample.
double max_cache_error(CausalLM& model, const std::vector<GenerationRequest>& reqs,
                       const std::vector<GenerationResult>& res) {
  torch::NoGradGuard ng;
  double worst = 0;
  for (size_t i = 0; i < res.size(); ++i) {
    for (const auto& s : res[i].samples) {
      std::vector<int64_t> seq(reqs[i].prompt_ids.begin(), reqs[i].prompt_ids.end());
      seq.insert(seq.end(), s.token_ids.begin(), s.token_ids.end());
      auto full = model->forward(torch::tensor(seq).unsqueeze(0))[0].to(torch::kFloat32);  // (T, V)
      for (size_t k = 0; k < s.step_logits.size(); ++k) {
        int64_t pos = int64_t(reqs[i].prompt_ids.size() + k) - 1;
        worst = std::max(worst, (full[pos] - s.step_logits[k]).abs().max().item<double>());
      }
    }
  }
  return worst;
}

}  // namespace

TEST_CASE("cached decoding equals full recomputation at every step, with and without preemption") {
  for (double kv_mb : {64.0, 0.012}) {  // 0.012 MiB = 12 blocks of 4 tokens: forces preemption
    CausalLM model = init_model(tiny_config(), 11);
    EngineOptions eo;
    eo.keep_logits = true;
    eo.block_size = 4;
    eo.kv_cache_mb = kv_mb;
    eo.max_batch = 8;
    Engine engine(model, byte_tokenizer(), {}, eo);
    SamplingParams p;
    p.n = 3, p.temperature = 1.0, p.max_new_tokens = 20, p.ignore_eos = true;
    auto reqs = requests(p);
    auto res = engine.generate(reqs);
    INFO("kv_cache_mb " << kv_mb << " preemptions " << engine.stats().preemptions);
    for (const auto& r : res) {
      REQUIRE(r.error.empty());
      REQUIRE(r.samples.size() == 3);
      for (const auto& s : r.samples) CHECK(s.token_ids.size() == 20);
    }
    CHECK(max_cache_error(model, reqs, res) <= 1e-4);
    if (kv_mb < 1) CHECK(engine.stats().preemptions > 0);
  }
}

TEST_CASE("greedy is deterministic; seeds reproduce; different seeds differ") {
  CausalLM model = init_model(tiny_config(), 12);
  Engine engine(model, byte_tokenizer(), {}, EngineOptions{});
  SamplingParams greedy;
  greedy.temperature = 0, greedy.max_new_tokens = 15, greedy.n = 2;
  auto a = engine.generate(requests(greedy)), b = engine.generate(requests(greedy));
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].samples[0].token_ids == b[i].samples[0].token_ids);
    CHECK(a[i].samples[0].token_ids == a[i].samples[1].token_ids);
  }
  SamplingParams s;
  s.temperature = 1.0, s.max_new_tokens = 15, s.n = 2;
  auto c = engine.generate(requests(s)), d = engine.generate(requests(s));
  for (size_t i = 0; i < c.size(); ++i) {
    CHECK(c[i].samples[0].token_ids == d[i].samples[0].token_ids);
    CHECK(c[i].samples[1].token_ids == d[i].samples[1].token_ids);
    CHECK(c[i].samples[0].token_ids != c[i].samples[1].token_ids);
  }
}

TEST_CASE("stop tokens, stop strings and length limits") {
  CausalLM model = init_model(tiny_config(), 13);
  EngineOptions eo;
  eo.max_model_len = 24;
  Engine engine(model, byte_tokenizer(), {}, eo);
  SamplingParams g;
  g.temperature = 0, g.max_new_tokens = 40;
  auto free_run = engine.generate(requests(g));
  // The first prompt has 19 tokens: max_model_len 24 leaves 5.
  CHECK(free_run[0].samples[0].token_ids.size() == 5);
  CHECK(free_run[0].samples[0].finish_reason == "length");
  // Stop at the 3rd generated token of prompt 1 via a stop id, and via its text as a stop string.
  const auto& ref = free_run[1].samples[0].token_ids;
  SamplingParams st = g;
  st.stop_token_ids = {ref[2]};
  auto r = engine.generate(requests(st));
  auto first = std::find(ref.begin(), ref.end(), ref[2]) - ref.begin();
  CHECK(r[1].samples[0].token_ids.size() == size_t(first + 1));
  CHECK(r[1].samples[0].finish_reason == "stop");
  auto lookup = engine.generate(requests(g));
  CHECK(lookup[1].samples[0].token_ids == ref);  // unchanged by the previous runs
  auto r0 = engine.generate(std::vector<GenerationRequest>{[&] {
    GenerationRequest q;
    q.prompt_ids = {1};
    q.params = g;
    q.params.max_new_tokens = 0;
    return q;
  }()});
  CHECK(r0[0].samples[0].token_ids.empty());
  auto bad = engine.generate(std::vector<GenerationRequest>{[&] {
    GenerationRequest q;
    q.prompt_ids = std::vector<int32_t>(30, 5);
    q.params = g;
    return q;
  }()});
  CHECK(bad[0].error.find("max_model_len is 24") != std::string::npos);
}

// ---- sampling filters vs analytic distributions ---------------------------------------------

namespace {

// Written independently of sampling.cpp, from the definitions.
std::vector<double> analytic(const std::vector<double>& logits, double temp, int64_t top_k, double top_p, double min_p) {
  size_t V = logits.size();
  std::vector<double> z(V);
  for (size_t i = 0; i < V; ++i) z[i] = logits[i] / temp;
  std::vector<size_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return z[a] > z[b]; });
  std::vector<bool> keep(V, true);
  if (top_k > 0)
    for (size_t r = size_t(top_k); r < V; ++r) keep[order[r]] = false;
  auto probs = [&] {
    double m = -1e300, s = 0;
    for (size_t i = 0; i < V; ++i) if (keep[i]) m = std::max(m, z[i]);
    std::vector<double> p(V, 0);
    for (size_t i = 0; i < V; ++i) if (keep[i]) s += p[i] = std::exp(z[i] - m);
    for (auto& x : p) x /= s;
    return p;
  };
  if (top_p < 1) {
    auto p = probs();
    double before = 0;
    for (size_t r = 0; r < V; ++r) {
      size_t i = order[r];
      if (!keep[i]) continue;
      if (r > 0 && before >= top_p) keep[i] = false;
      before += p[i];
    }
  }
  if (min_p > 0) {
    auto p = probs();
    double mx = *std::max_element(p.begin(), p.end());
    for (size_t i = 0; i < V; ++i) if (p[i] < min_p * mx) keep[i] = false;
  }
  return probs();
}

}  // namespace

TEST_CASE("sampling filters match their analytic distributions (chi-square, fixed seed)") {
  std::vector<double> logits = {2.0, 1.5, 1.2, 1.0, 0.7, 0.5, 0.3, 0.0, -0.2, -0.5, -1.0, -1.5, -2.0, -3.0, 0.9, 1.1};
  auto t = torch::tensor(logits, torch::kFloat32);
  struct Case { double temp; int64_t k; double p; double minp; };
  for (Case c : {Case{1.0, 0, 1.0, 0}, Case{0.7, 0, 1.0, 0}, Case{1.3, 5, 1.0, 0}, Case{1.0, 0, 0.8, 0},
                 Case{0.8, 6, 0.9, 0}, Case{1.0, 0, 1.0, 0.3}, Case{0.9, 10, 0.95, 0.05}}) {
    SamplingParams p;
    p.temperature = c.temp, p.top_k = c.k, p.top_p = c.p, p.min_p = c.minp;
    auto expect = analytic(logits, c.temp, c.k, c.p, c.minp);
    auto dist = sampling_distribution(t, p, {});
    for (size_t i = 0; i < logits.size(); ++i) CHECK(dist[int64_t(i)].item<double>() == doctest::Approx(expect[i]).epsilon(1e-5));
    torch::Generator gen = at::make_generator<at::CPUGeneratorImpl>(2026);
    const int draws = 20000;
    std::vector<int> counts(logits.size(), 0);
    for (int d = 0; d < draws; ++d) counts[size_t(sample_token(t, p, gen, {}).token)]++;
    double chi2 = 0;
    int df = -1;
    for (size_t i = 0; i < logits.size(); ++i) {
      if (expect[i] == 0) {
        CHECK(counts[i] == 0);  // filtered tokens are never drawn
        continue;
      }
      double e = expect[i] * draws;
      chi2 += (counts[i] - e) * (counts[i] - e) / e;
      ++df;
    }
    // 99.9th percentile of chi-square with df <= 15 is below 37.7.
    INFO("temp " << c.temp << " k " << c.k << " p " << c.p << " min_p " << c.minp << " chi2 " << chi2 << " df " << df);
    CHECK(chi2 < 37.7);
  }
}

TEST_CASE("repetition penalty follows transformers' rule") {
  auto t = torch::tensor(std::vector<float>{2.0f, -1.0f, 0.5f, 0.0f});
  SamplingParams p;
  p.repetition_penalty = 2.0;
  auto d = sampling_distribution(t, p, {0, 1});
  auto e = torch::softmax(torch::tensor(std::vector<float>{1.0f, -2.0f, 0.5f, 0.0f}), 0);
  CHECK(torch::allclose(d, e, 1e-6, 1e-6));
}
