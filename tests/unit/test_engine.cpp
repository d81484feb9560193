// Engine against the model itself: cached decoding equals full recomputation at every step (also
// across preemption), greedy is deterministic, seeds reproduce; sampling filters against their
// analytic distributions with a chi-square test.
#include "torch_doctest.h"

#include <ATen/CPUGeneratorImpl.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <future>
#include <thread>
#include <numeric>

#include "engine/engine.h"
#include "model/checkpoint.h"
#include "model/lora.h"

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

// ---- scheduling: token budget, chunked and packed prefill, prefix cache, batch invariance -------

namespace {

// Prompts that share prefixes (a 37-token system part, some repeated whole) and vary in length.
std::vector<GenerationRequest> shared_prefix_requests(const SamplingParams& p, int count, uint64_t seed0) {
  std::vector<int32_t> system;
  for (int i = 0; i < 37; ++i) system.push_back(int32_t(20 + (i * 7) % 200));
  std::vector<GenerationRequest> r;
  for (int i = 0; i < count; ++i) {
    GenerationRequest g;
    g.id = std::to_string(i);
    g.prompt_ids = system;
    for (int j = 0; j < (i % 3 == 2 ? 0 : 1 + (i * 5) % 23); ++j) g.prompt_ids.push_back(int32_t(30 + (i * 11 + j * 3) % 250));
    if (i % 4 == 3) g.prompt_ids = {int32_t(5 + i), 9, 9};  // short, unrelated
    g.params = p;
    g.params.seed = seed0 + uint64_t(i);
    r.push_back(g);
  }
  return r;
}

}  // namespace

TEST_CASE("paged engine: logits equal full recomputation with chunked prefill, mixed steps, prefix hits and preemption") {
  struct Case { int64_t budget; double kv_mb; bool prefix; };
  // 0.02 MiB = 20 blocks of 4 tokens: forces preemption and re-prefill (prefix hits on the way back).
  for (Case c : {Case{7, 64, true}, Case{3, 64, true}, Case{64, 0.02, true}, Case{5, 0.02, true}, Case{7, 64, false},
                 Case{1, 64, true}}) {
    CausalLM model = init_model(tiny_config(), 21);
    EngineOptions eo;
    eo.keep_logits = true;
    eo.block_size = 4;
    eo.kv_cache_mb = c.kv_mb;
    eo.max_batch = 12;
    eo.max_num_batched_tokens = c.budget;
    eo.enable_prefix_caching = c.prefix;
    Engine engine(model, byte_tokenizer(), {}, eo);
    SamplingParams p;
    p.n = 2, p.temperature = 1.0, p.max_new_tokens = 9, p.ignore_eos = true;
    auto reqs = shared_prefix_requests(p, 10, 300);
    auto res = engine.generate(reqs);
    // Again on the same engine: the blocks of the first call are found in the prefix cache.
    auto res2 = engine.generate(reqs);
    EngineStats st = engine.stats();
    INFO("budget " << c.budget << " kv_mb " << c.kv_mb << " prefix " << c.prefix << " preemptions " << st.preemptions
                   << " prefix hits " << st.prefix_cache_hits << "/" << st.prefix_cache_queries << " steps " << st.steps);
    for (const auto* rs : {&res, &res2})
      for (const auto& r : *rs) {
        REQUIRE(r.error.empty());
        REQUIRE(r.samples.size() == 2);
        for (const auto& s : r.samples) CHECK(s.token_ids.size() == 9);
      }
    CHECK(max_cache_error(model, reqs, res) <= 1e-4);
    CHECK(max_cache_error(model, reqs, res2) <= 1e-4);
    for (size_t i = 0; i < res.size(); ++i)  // same seeds: the same samples, cached prefix or not
      for (size_t k = 0; k < 2; ++k) CHECK(res[i].samples[k].token_ids == res2[i].samples[k].token_ids);
    if (c.prefix) CHECK(st.prefix_cache_hits > 0);
    else CHECK(st.prefix_cache_hits == 0);
    if (c.kv_mb < 1) CHECK(st.preemptions > 0);
    CHECK(st.kv_blocks_used == 0);  // everything was given back
    if (c.budget <= 7) CHECK(st.steps > 9 * 2);  // prompts of up to 60 tokens took several chunks each
  }
}

TEST_CASE("paged engine: a request's samples do not depend on what else is in the batch") {
  CausalLM model = init_model(tiny_config(), 22);
  EngineOptions eo;
  eo.block_size = 4;
  eo.max_batch = 64;
  eo.max_num_batched_tokens = 32;
  SamplingParams p;
  p.n = 2, p.temperature = 0.9, p.top_p = 0.9, p.max_new_tokens = 12, p.ignore_eos = true;
  p.logprobs = true, p.top_logprobs = 3;
  GenerationRequest alone;
  alone.id = "x";
  alone.prompt_ids = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5};
  alone.params = p;
  alone.params.seed = 4242;
  Engine e1(model, byte_tokenizer(), {}, eo);
  auto a = e1.generate({alone});
  // The same request in the middle of 31 others with other lengths and parameters.
  SamplingParams q = p;
  q.top_k = 7, q.repetition_penalty = 1.3, q.min_p = 0.05, q.temperature = 1.2, q.logprobs = false;
  auto others = shared_prefix_requests(q, 31, 900);
  others[5].params.temperature = 0;  // a greedy one too
  others.insert(others.begin() + 13, alone);
  Engine e2(model, byte_tokenizer(), {}, eo);
  auto b = e2.generate(others);
  const auto& in_batch = b[13];
  REQUIRE(in_batch.id == "x");
  for (size_t k = 0; k < 2; ++k) {
    CHECK(a[0].samples[k].token_ids == in_batch.samples[k].token_ids);
    REQUIRE(a[0].samples[k].logprobs.size() == in_batch.samples[k].logprobs.size());
    for (size_t t = 0; t < a[0].samples[k].logprobs.size(); ++t)
      CHECK(a[0].samples[k].logprobs[t] == doctest::Approx(in_batch.samples[k].logprobs[t]).epsilon(1e-4));
  }
  CHECK(a[0].samples[0].token_ids != a[0].samples[1].token_ids);
}

TEST_CASE("paged engine: prompt log-probs over chunks equal one full forward") {
  CausalLM model = init_model(tiny_config(), 23);
  EngineOptions eo;
  eo.block_size = 4;
  eo.max_num_batched_tokens = 5;  // the prompt's logits come in several chunks
  Engine engine(model, byte_tokenizer(), {}, eo);
  SamplingParams p;
  p.temperature = 0, p.max_new_tokens = 2, p.prompt_logprobs = 2;
  auto reqs = shared_prefix_requests(p, 3, 1);
  auto warm = engine.generate(reqs);  // fills the prefix cache: prompt log-probs must not use it
  auto res = engine.generate(reqs);
  torch::NoGradGuard ng;
  for (size_t i = 0; i < reqs.size(); ++i) {
    std::vector<int64_t> ids(reqs[i].prompt_ids.begin(), reqs[i].prompt_ids.end());
    auto logp = torch::log_softmax(model->forward(torch::tensor(ids).unsqueeze(0))[0].to(torch::kFloat32), 1);
    REQUIRE(res[i].prompt_logprobs.size() == ids.size() - 1);
    REQUIRE(res[i].prompt_top_logprobs.size() == ids.size() - 1);
    for (size_t j = 0; j + 1 < ids.size(); ++j) {
      CHECK(res[i].prompt_logprobs[j] == doctest::Approx(logp[int64_t(j)][ids[j + 1]].item<float>()).epsilon(1e-4));
      CHECK(res[i].prompt_top_logprobs[j][0].first == logp[int64_t(j)].argmax().item<int64_t>());
    }
    REQUIRE(warm[i].prompt_logprobs.size() == res[i].prompt_logprobs.size());
    for (size_t j = 0; j < res[i].prompt_logprobs.size(); ++j)  // other batch mates: rounding only
      CHECK(warm[i].prompt_logprobs[j] == doctest::Approx(res[i].prompt_logprobs[j]).epsilon(1e-4));
  }
  // Scoring only (max_tokens 0, as lm-evaluation-harness asks), then a normal call on the same engine.
  p.max_new_tokens = 0;
  auto scored = engine.generate(shared_prefix_requests(p, 3, 1));
  for (size_t i = 0; i < reqs.size(); ++i) {
    REQUIRE(scored[i].prompt_logprobs.size() == res[i].prompt_logprobs.size());
    for (size_t j = 0; j < res[i].prompt_logprobs.size(); ++j)
      CHECK(scored[i].prompt_logprobs[j] == doctest::Approx(res[i].prompt_logprobs[j]).epsilon(1e-4));
    CHECK(scored[i].samples[0].token_ids.empty());
  }
  p.max_new_tokens = 3, p.prompt_logprobs = -1;
  auto after = engine.generate(shared_prefix_requests(p, 3, 1));
  for (size_t i = 0; i < reqs.size(); ++i) CHECK(after[i].samples[0].token_ids.size() == 3);
}

TEST_CASE("paged engine: release_kv_cache gives the memory back and the next call takes it again") {
  CausalLM model = init_model(tiny_config(), 24);
  EngineOptions eo;
  eo.block_size = 4;
  Engine engine(model, byte_tokenizer(), {}, eo);
  SamplingParams p;
  p.temperature = 0.8, p.max_new_tokens = 6, p.n = 3;
  // As GRPO: generate, give the memory back, generate again (every block once cached, several times).
  auto reqs = shared_prefix_requests(p, 12, 5);
  auto a = engine.generate(reqs);
  for (int round = 0; round < 3; ++round) {
    engine.release_kv_cache();
    auto b = engine.generate(reqs);
    for (size_t i = 0; i < a.size(); ++i)
      for (size_t k = 0; k < 3; ++k) CHECK(a[i].samples[k].token_ids == b[i].samples[k].token_ids);
  }
  CHECK(engine.stats().kv_blocks_used == 0);
}

TEST_CASE("engine: run() serves submits from another thread; after it returns, submit() answers at once") {
  CausalLM model = init_model(tiny_config(), 25);
  Engine engine(model, byte_tokenizer(), {}, EngineOptions{});
  std::thread loop([&] { engine.run(); });
  SamplingParams p;
  p.temperature = 0, p.max_new_tokens = 4;
  GenerationRequest req;
  req.id = "a", req.prompt_ids = {5, 6, 7}, req.params = p;
  auto served = engine.submit(req).get();
  CHECK(served.error.empty());
  CHECK(served.samples.at(0).token_ids.size() == 4);
  engine.stop(/*drain=*/true);
  loop.join();
  req.id = "late";
  auto fut = engine.submit(req);
  REQUIRE(fut.wait_for(std::chrono::seconds(5)) == std::future_status::ready);  // was: never answered
  auto late = fut.get();
  CHECK(late.id == "late");
  CHECK(late.error.find("shutting down") != std::string::npos);
}

TEST_CASE("paged engine: a preempted sequence that needs the whole cache resumes alone (no endless loop)") {
  // 5 blocks of 16: a 48-token prompt with n = 2 is accepted (3 + 2 blocks); at position 64 the two
  // samples need 6 blocks, the newer is preempted and later needs all 5 to resume, then stops at
  // the cache's end ("length") instead of waiting for a sixth block for ever.
  CausalLM model = init_model(tiny_config(), 25);
  EngineOptions eo;
  eo.block_size = 16;
  eo.kv_cache_mb = 5 * BlockPool::bytes_per_block(model->config, 16, torch::kFloat32) / 1048576.0;
  Engine engine(model, byte_tokenizer(), {}, eo);
  REQUIRE(BlockPool::blocks_for_budget(model->config, 16, torch::kFloat32, eo.kv_cache_mb) == 5);
  GenerationRequest r;
  for (int i = 0; i < 48; ++i) r.prompt_ids.push_back(int32_t(1 + i));
  r.params.n = 2, r.params.temperature = 1.0, r.params.max_new_tokens = 60, r.params.ignore_eos = true, r.params.seed = 3;
  auto res = engine.generate({r});
  REQUIRE(res[0].error.empty());
  CHECK(engine.stats().preemptions > 0);
  for (const auto& s : res[0].samples) {
    CHECK(s.finish_reason == "length");
    CHECK(s.token_ids.size() >= 16);            // both got past the point of preemption
    CHECK(48 + s.token_ids.size() <= 5 * 16 + 1);  // and stopped at the cache's end (+ the last draw)
  }
  CHECK(engine.stats().kv_blocks_used == 0);
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

// ---- batched sampler (sample_batch) ------------------------------------------------------------

namespace {

// Chi-square of counts against probabilities, tokens pooled (most likely first) into bins of at
// least 20 expected draws; tokens of probability 0 must never be drawn. Returns {chi2, 99.9th
// percentile of chi-square with the bins' degrees of freedom (Wilson-Hilferty)}.
std::pair<double, double> chi_square(const std::vector<double>& expect, const std::vector<int64_t>& counts, int64_t draws) {
  std::vector<size_t> order(expect.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return expect[a] > expect[b]; });
  std::vector<std::pair<double, double>> bins;  // (expected, observed)
  double e = 0, o = 0;
  for (size_t i : order) {
    if (expect[i] == 0) {
      CHECK_MESSAGE(counts[i] == 0, "token " << i << " has probability 0 and was drawn " << counts[i] << " times");
      continue;
    }
    e += expect[i] * double(draws), o += double(counts[i]);
    if (e >= 20) bins.emplace_back(e, o), e = 0, o = 0;
  }
  if (e > 0 && !bins.empty()) bins.back().first += e, bins.back().second += o;
  else if (e > 0) bins.emplace_back(e, o);
  double chi2 = 0;
  for (auto [ex, ob] : bins) chi2 += (ob - ex) * (ob - ex) / ex;
  double df = std::max<double>(1, double(bins.size()) - 1);
  double h = 2.0 / (9 * df);
  return {chi2, df * std::pow(1 - h + 3.09 * std::sqrt(h), 3)};
}

std::vector<double> to_vec(const torch::Tensor& t) {
  auto c = t.to(torch::kFloat64).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

// `n` draws of one row (V) through sample_batch, `per_call` rows a call, each with its own generator.
std::vector<int64_t> batch_draws(const torch::Tensor& logits, const SamplingParams& p, const std::vector<int32_t>& ctx,
                                 size_t prompt_len, int64_t n, uint64_t seed, int64_t per_call = 1000) {
  std::vector<int64_t> counts(size_t(logits.size(0)), 0);
  for (int64_t done = 0; done < n; done += per_call) {
    int64_t b = std::min(per_call, n - done);
    std::vector<torch::Generator> gens;
    for (int64_t i = 0; i < b; ++i) gens.push_back(at::make_generator<at::CPUGeneratorImpl>(seed + uint64_t(done + i)));
    std::vector<SampleRow> rows(static_cast<size_t>(b));
    for (int64_t i = 0; i < b; ++i) {
      rows[size_t(i)].params = &p, rows[size_t(i)].context = &ctx, rows[size_t(i)].prompt_len = prompt_len;
      rows[size_t(i)].generator = &gens[size_t(i)];
    }
    for (const auto& r : sample_batch(logits.unsqueeze(0).expand({b, -1}), rows)) {
      REQUIRE(r.error.empty());
      counts[size_t(r.token)]++;
    }
  }
  return counts;
}

}  // namespace

TEST_CASE("sample_batch: top-p without top-k matches the full-sort distribution (64, 1,024 or 16,384 candidates, or a full sort)") {
  SamplingParams p;
  p.temperature = 0.9, p.top_p = 0.9;
  // Which of the sampler's paths a row takes follows from the mass its most likely tokens hold:
  // peaked (the 64 most likely hold >= top_p), less peaked (only the 1,024 most likely do), flat
  // over 40,000 (the 16,384 most likely do), flat over 5,000 (only the whole row does: full sort).
  // Cases with 0 draws check the path of the next case's row (the same seed).
  struct Case { int64_t V; double scale; int64_t head; bool enough; int64_t draws; };
  for (Case c : {Case{5000, 4.0, 64, true, 10000}, Case{5000, 2.5, 64, false, 0}, Case{5000, 2.5, 1024, true, 10000},
                 Case{40000, 2.2, 1024, false, 0}, Case{40000, 2.2, 16384, true, 2000}, Case{5000, 0.1, 1024, false, 10000}}) {
    torch::manual_seed(uint64_t(c.V));  // the two 40,000 cases: the same row
    auto logits = torch::randn({c.V}) * c.scale;
    auto sorted = std::get<0>(torch::softmax(logits / p.temperature, 0).sort(0, true));
    double head = sorted.slice(0, 0, c.head).sum().item<double>();
    INFO("V " << c.V << " scale " << c.scale << " mass of the " << c.head << " most likely " << head);
    CHECK((c.enough ? head > p.top_p + 1e-3 : head < p.top_p - 1e-3));
    if (c.draws == 0) continue;  // the next case draws from this row
    auto expect = to_vec(sampling_distribution(logits, p, {}));
    auto [chi2, bound] = chi_square(expect, batch_draws(logits, p, {}, 0, c.draws, 1000, 500), c.draws);
    INFO("chi2 " << chi2 << " bound " << bound);
    CHECK(chi2 < bound);
  }
}

TEST_CASE("sample_batch: penalties and logit_bias match their definitions (chi-square)") {
  const int64_t V = 60, draws = 40000;
  torch::manual_seed(11);
  auto logits = torch::randn({V}) * 1.5;
  std::vector<int32_t> ctx = {1, 2, 3, 3, 9, /* output: */ 3, 4, 4, 4, 12, 2, 50};
  const size_t prompt_len = 5;
  SamplingParams p;
  p.temperature = 0.8, p.top_k = 40, p.min_p = 0.01, p.repetition_penalty = 1.3, p.frequency_penalty = 0.4,
  p.presence_penalty = 0.3, p.logit_bias = {{3, 2.0f}, {7, -100.0f}, {10, 1.5f}, {55, 3.0f}};
  // From the definitions: bias, then transformers' repetition rule over prompt and output, then
  // OpenAI's count * frequency + presence over the output, then the filters (analytic above).
  auto l = to_vec(logits);
  for (auto [id, b] : p.logit_bias) l[size_t(id)] += b;
  std::vector<bool> seen(V, false);
  for (int32_t t : ctx) seen[size_t(t)] = true;
  for (int64_t i = 0; i < V; ++i)
    if (seen[size_t(i)]) l[size_t(i)] = l[size_t(i)] > 0 ? l[size_t(i)] / 1.3 : l[size_t(i)] * 1.3;
  std::vector<int> count(V, 0);
  for (size_t i = prompt_len; i < ctx.size(); ++i) count[size_t(ctx[i])]++;
  for (int64_t i = 0; i < V; ++i)
    if (count[size_t(i)] > 0) l[size_t(i)] -= count[size_t(i)] * 0.4 + 0.3;
  auto expect = analytic(l, p.temperature, p.top_k, 1.0, p.min_p);
  auto ref = to_vec(sampling_distribution(logits, p, ctx, prompt_len));
  for (int64_t i = 0; i < V; ++i) CHECK(ref[size_t(i)] == doctest::Approx(expect[size_t(i)]).epsilon(1e-4));
  auto [chi2, bound] = chi_square(expect, batch_draws(logits, p, ctx, prompt_len, draws, 77), draws);
  INFO("chi2 " << chi2 << " bound " << bound);
  CHECK(chi2 < bound);
}

namespace {

// Mixed rows for the batch tests: greedy, top-k (with tied logits), top-p (peaked and flat),
// min-p, penalties, logit_bias, banned ids, raw log-probs.
SamplingParams mixed_params(int i) {
  SamplingParams p;
  switch (i % 8) {
    case 0: p.temperature = 0; p.repetition_penalty = 1.2; break;
    case 1: p.temperature = 0.7; p.top_k = 50; break;
    case 2: p.temperature = 1.0; p.top_p = 0.9; break;
    case 3: p.temperature = 0.8; p.min_p = 0.05; break;
    case 4: p.temperature = 1.2; p.top_k = 20; p.top_p = 0.8; p.min_p = 0.02; p.frequency_penalty = 0.5; break;
    case 5: p.temperature = 1.0; p.repetition_penalty = 1.5; p.presence_penalty = 1.0; p.logit_bias = {{5, 5.0f}, {6, -3.0f}}; break;
    case 6: p.temperature = 0.6; p.top_p = 0.95; p.top_k = 1500; break;
    default: p.temperature = 1.0; break;
  }
  return p;
}

}  // namespace

TEST_CASE("sample_batch: a row's token and log-probs do not depend on the other rows of the batch") {
  const int64_t B = 32, V = 3000, steps = 40;
  std::vector<SamplingParams> params;
  std::vector<std::vector<int32_t>> ctx(B);
  std::vector<torch::Generator> in_batch, alone;
  for (int64_t i = 0; i < B; ++i) {
    params.push_back(mixed_params(int(i)));
    for (int32_t t = 0; t < 10; ++t) ctx[size_t(i)].push_back(int32_t((i * 37 + t * 101) % V));
    in_batch.push_back(at::make_generator<at::CPUGeneratorImpl>(500 + uint64_t(i)));
    alone.push_back(at::make_generator<at::CPUGeneratorImpl>(500 + uint64_t(i)));
  }
  torch::manual_seed(3);
  int64_t differs = 0, sampled = 0;
  for (int64_t step = 0; step < steps; ++step) {
    auto logits = torch::randn({B, V}) * 3;
    logits.slice(0, 8, 16) = (logits.slice(0, 8, 16) * 2).round() / 2;  // many tied logits
    logits.slice(0, 16, 20) *= 0.05;                                      // flat: top-p sorts everything
    auto make = [&](int64_t i, torch::Generator& g) {
      SampleRow r;
      r.params = &params[size_t(i)], r.context = &ctx[size_t(i)], r.prompt_len = 10, r.generator = &g;
      if (i % 3 == 0) r.banned = {int32_t(i), 17, 2999};
      r.raw_logprobs = i % 2 == 0;
      r.top_logprobs = r.raw_logprobs ? int(i % 5) * 5 : 0;
      return r;
    };
    std::vector<SampleRow> rows;
    for (int64_t i = 0; i < B; ++i) rows.push_back(make(i, in_batch[size_t(i)]));
    auto batch = sample_batch(logits, rows);
    for (int64_t i = 0; i < B; ++i) {
      auto one = sample_batch(logits.slice(0, i, i + 1), {make(i, alone[size_t(i)])}).front();
      const auto& b = batch[size_t(i)];
      INFO("step " << step << " row " << i);
      REQUIRE(b.error.empty());
      CHECK(b.token == one.token);
      CHECK(b.logprob == one.logprob);
      CHECK(b.raw_logprob == one.raw_logprob);
      CHECK(b.sampling_logprob == one.sampling_logprob);
      CHECK(b.top == one.top);
      for (int32_t t : rows[size_t(i)].banned) CHECK(b.token != t);
      differs += b.token != logits[i].argmax().item<int64_t>();
      sampled += !params[size_t(i)].greedy();
      ctx[size_t(i)].push_back(b.token);
    }
  }
  CHECK(differs > sampled / 4);  // the rows really sample
}

TEST_CASE("sample_batch: each row of a mixed batch draws from sampling_distribution (chi-square)") {
  const int64_t V = 40, copies = 3000;
  torch::manual_seed(5);
  const int kinds = 8;
  auto base = torch::randn({kinds, V}) * 2;
  base[1] = (base[1] * 2).round() / 2;  // top-k 50 > V: off; ties harmless
  std::vector<SamplingParams> params;
  for (int k = 0; k < kinds; ++k) params.push_back(mixed_params(k));
  params[1].top_k = 7;  // rank 7 of 40, with ties at the boundary possible
  std::vector<int32_t> ctx = {1, 2, 3, 5, 5, 6, 30};
  // Rows interleaved: kind = row % kinds; every row its own generator.
  const int64_t B = kinds * copies;
  auto logits = base.repeat({copies, 1});
  std::vector<torch::Generator> gens;
  std::vector<SampleRow> rows(B);
  for (int64_t r = 0; r < B; ++r) gens.push_back(at::make_generator<at::CPUGeneratorImpl>(9000 + uint64_t(r)));
  for (int64_t r = 0; r < B; ++r) {
    rows[size_t(r)].params = &params[size_t(r % kinds)], rows[size_t(r)].context = &ctx, rows[size_t(r)].prompt_len = 3;
    rows[size_t(r)].generator = &gens[size_t(r)];
  }
  auto out = sample_batch(logits, rows);
  for (int k = 0; k < kinds; ++k) {
    std::vector<int64_t> counts(V, 0);
    for (int64_t r = k; r < B; r += kinds) {
      REQUIRE(out[size_t(r)].error.empty());
      counts[size_t(out[size_t(r)].token)]++;
    }
    auto expect = to_vec(sampling_distribution(base[k], params[size_t(k)], ctx, 3));
    // the reported sampling log-prob is the drawn token's log-prob under that same distribution
    for (int64_t r = k; r < B; r += kinds * 97) {
      const auto& o = out[size_t(r)];
      CHECK(o.sampling_logprob == doctest::Approx(std::log(expect[size_t(o.token)])).epsilon(1e-5));
    }
    auto [chi2, bound] = chi_square(expect, counts, copies);
    INFO("kind " << k << " chi2 " << chi2 << " bound " << bound);
    CHECK(chi2 < bound);
  }
}

TEST_CASE("sample_batch: raw log-probs and alternatives are log_softmax and topk of the raw logits") {
  const int64_t B = 8, V = 1000;
  torch::manual_seed(9);
  auto logits = torch::randn({B, V}) * 4;
  std::vector<SamplingParams> params;
  for (int64_t i = 0; i < B; ++i) params.push_back(mixed_params(int(i)));
  std::vector<int32_t> ctx = {4, 8, 15, 16, 23, 42};
  std::vector<torch::Generator> gens;
  for (int64_t i = 0; i < B; ++i) gens.push_back(at::make_generator<at::CPUGeneratorImpl>(uint64_t(i)));
  std::vector<SampleRow> rows(B);
  const int tops[B] = {0, 1, 5, 20, 0, 3, 20, 0};
  for (int64_t i = 0; i < B; ++i) {
    rows[size_t(i)].params = &params[size_t(i)], rows[size_t(i)].context = &ctx, rows[size_t(i)].prompt_len = 2;
    rows[size_t(i)].generator = &gens[size_t(i)];
    rows[size_t(i)].raw_logprobs = i != 7, rows[size_t(i)].top_logprobs = tops[i];
  }
  auto out = sample_batch(logits, rows);
  for (int64_t i = 0; i < B; ++i) {
    INFO("row " << i);
    const auto& o = out[size_t(i)];
    REQUIRE(o.error.empty());
    auto lp = torch::log_softmax(logits[i], 0);
    if (rows[size_t(i)].raw_logprobs) CHECK(o.raw_logprob == doctest::Approx(lp[o.token].item<double>()).epsilon(1e-6));
    REQUIRE(o.top.size() == size_t(tops[i]));
    auto [tv, ti] = lp.topk(std::max(tops[i], 1));
    for (int j = 0; j < tops[i]; ++j) {
      CHECK(o.top[size_t(j)].first == ti[j].item<int64_t>());
      CHECK(o.top[size_t(j)].second == doctest::Approx(tv[j].item<double>()).epsilon(1e-6));
    }
    // The sampled log-prob: the temperature-scaled distribution before the filters (TRL).
    SamplingParams unfiltered = params[size_t(i)];
    unfiltered.top_k = 0, unfiltered.top_p = 1, unfiltered.min_p = 0;
    if (unfiltered.greedy()) unfiltered.temperature = 1;
    auto scaled = sampling_distribution(logits[i], unfiltered, ctx, 2);
    CHECK(o.logprob == doctest::Approx(std::log(scaled[o.token].item<double>())).epsilon(1e-5));
    // The sampling log-prob: the distribution actually drawn from (after the filters, renormalised).
    auto drawn = sampling_distribution(logits[i], params[size_t(i)], ctx, 2);
    CHECK(o.sampling_logprob == doctest::Approx(std::log(drawn[o.token].item<double>())).epsilon(1e-5));
    if (!params[size_t(i)].greedy() && (params[size_t(i)].top_p < 1 || params[size_t(i)].top_k > 0))
      CHECK(o.sampling_logprob > o.logprob);  // the filters drop mass, so the kept tokens gain
  }
}

TEST_CASE("sample_batch: a row with NaN logits fails alone; the others sample") {
  const int64_t B = 6, V = 100;
  torch::manual_seed(1);
  auto logits = torch::randn({B, V});
  logits[2][17] = std::nanf("");
  logits[5].fill_(std::nanf(""));
  std::vector<SamplingParams> params(B);
  params[1].top_k = 10, params[2].top_p = 0.5, params[3].temperature = 0, params[4].min_p = 0.1, params[5].temperature = 0;
  std::vector<int32_t> ctx;
  std::vector<torch::Generator> gens;
  for (int64_t i = 0; i < B; ++i) gens.push_back(at::make_generator<at::CPUGeneratorImpl>(uint64_t(i)));
  std::vector<SampleRow> rows(B);
  for (int64_t i = 0; i < B; ++i)
    rows[size_t(i)].params = &params[size_t(i)], rows[size_t(i)].context = &ctx, rows[size_t(i)].generator = &gens[size_t(i)],
    rows[size_t(i)].raw_logprobs = true, rows[size_t(i)].top_logprobs = 2;
  auto out = sample_batch(logits, rows);
  for (int64_t i = 0; i < B; ++i) {
    INFO("row " << i);
    if (i == 2 || i == 5) {
      CHECK(out[size_t(i)].token == -1);
      CHECK(out[size_t(i)].error.find("not finite") != std::string::npos);
    } else {
      CHECK(out[size_t(i)].error.empty());
      CHECK((out[size_t(i)].token >= 0 && out[size_t(i)].token < V));
      CHECK(out[size_t(i)].top.size() == 2);
    }
  }
  CHECK(out[3].token == logits[3].argmax().item<int64_t>());
  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(1);
  CHECK_THROWS_WITH_AS(sample_token(logits[2], params[2], g, ctx), doctest::Contains("not finite"), std::runtime_error);
}

TEST_CASE("sample_batch: +inf logits (overflow) fail the row; -inf entries are never drawn") {
  const int64_t B = 4, V = 50;
  torch::manual_seed(2);
  auto logits = torch::randn({B, V});
  const float inf = std::numeric_limits<float>::infinity();
  logits[0][3] = inf;                          // greedy row with an overflowed logit
  logits[1][7] = inf;                          // sampled row with one
  logits[2].slice(0, 0, 40).fill_(-inf);       // only ids 40..49 possible
  logits[3][0] = -inf;                         // greedy: -inf is just a very unlikely token
  std::vector<SamplingParams> params(B);
  params[0].temperature = 0, params[1].temperature = 0.7, params[2].temperature = 1.0, params[3].temperature = 0;
  std::vector<torch::Generator> gens;
  for (int64_t i = 0; i < B; ++i) gens.push_back(at::make_generator<at::CPUGeneratorImpl>(uint64_t(i)));
  std::vector<SampleRow> rows(B);
  for (int64_t i = 0; i < B; ++i) rows[size_t(i)].params = &params[size_t(i)], rows[size_t(i)].generator = &gens[size_t(i)];
  for (int rep = 0; rep < 50; ++rep) {
    auto out = sample_batch(logits, rows);
    CHECK(out[0].error.find("not finite") != std::string::npos);
    CHECK(out[1].error.find("not finite") != std::string::npos);
    REQUIRE(out[2].error.empty());
    CHECK(out[2].token >= 40);
    CHECK(std::isfinite(out[2].logprob));
    REQUIRE(out[3].error.empty());
    CHECK(out[3].token == logits[3].argmax().item<int64_t>());
  }
}

TEST_CASE("bench: sample_batch" * doctest::skip()) {
  // B = 128 rows of V = 151,936 (Qwen2), fp32 on the CPU with 2 threads: one sample_batch call vs
  // the per-row loop it replaced (the per-row processing of sampling_distribution + multinomial).
  const int64_t B = 128, V = 151936;
  int threads = at::get_num_threads();
  at::set_num_threads(2);
  torch::manual_seed(0);
  auto logits = torch::randn({B, V}) * 3;
  std::vector<std::vector<int32_t>> ctx(B);
  for (int64_t i = 0; i < B; ++i)
    for (int t = 0; t < 600; ++t) ctx[size_t(i)].push_back(int32_t((i * 7919 + t * 104729) % V));
  struct Variant { std::string name; SamplingParams p; };
  std::vector<Variant> variants(4);
  variants[0].name = "temperature 0.7, top_p 0.95", variants[0].p.temperature = 0.7, variants[0].p.top_p = 0.95;
  variants[1] = variants[0], variants[1].name = "... and top_k 50", variants[1].p.top_k = 50;
  variants[2] = variants[0], variants[2].name = "... and penalties (rep 1.1, freq 0.5, pres 0.5; 600-token contexts)";
  variants[2].p.repetition_penalty = 1.1, variants[2].p.frequency_penalty = 0.5, variants[2].p.presence_penalty = 0.5;
  variants[3].name = "temperature 1.0 only", variants[3].p.temperature = 1.0;
  for (const auto& v : variants) {
    std::vector<torch::Generator> gens;
    for (int64_t i = 0; i < B; ++i) gens.push_back(at::make_generator<at::CPUGeneratorImpl>(uint64_t(i)));
    std::vector<SampleRow> rows(B);
    for (int64_t i = 0; i < B; ++i)
      rows[size_t(i)].params = &v.p, rows[size_t(i)].context = &ctx[size_t(i)], rows[size_t(i)].prompt_len = 300,
      rows[size_t(i)].generator = &gens[size_t(i)];
    auto time = [](auto&& f, int reps) {
      f();
      auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < reps; ++r) f();
      return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
    };
    double batched = time([&] { sample_batch(logits, rows); }, 5);
    double loop = time([&] {
      for (int64_t i = 0; i < B; ++i) {
        auto probs = sampling_distribution(logits[i], v.p, ctx[size_t(i)], 300);
        (void)torch::multinomial(probs, 1, false, gens[size_t(i)]).item<int64_t>();
      }
    }, 1);
    MESSAGE(v.name << ": sample_batch " << batched << " ms/call, per-row loop " << loop << " ms/call ("
                   << loop / batched << "x)");
  }
  at::set_num_threads(threads);
}

TEST_CASE("LoRA: adapters applied unmerged (training forward, engine) equal the merged weights") {
  CausalLM model = init_model(tiny_config(), 21), merged = init_model(tiny_config(), 21);  // one base
  LoraOptions o;
  o.r = 4, o.alpha = 8, o.dropout = 0.2, o.target_modules = {"all-linear"};
  CHECK(add_lora(*model, o, 5) == 14);
  CHECK(add_lora(*merged, o, 5) == 14);
  CHECK_THROWS_AS(add_lora(*model, o, 5), ConfigError);  // already on
  {
    torch::NoGradGuard ng;  // B starts at zero (the model unchanged): give it what training would
    auto a = lora_sites(*model), b = lora_sites(*merged);
    for (size_t i = 0; i < a.size(); ++i) {
      a[i].adapter->B->weight.normal_(0, 0.05);
      b[i].adapter->B->weight.copy_(a[i].adapter->B->weight);
      CHECK(torch::equal(a[i].adapter->A->weight, b[i].adapter->A->weight));  // seeded
    }
  }
  auto names = model->named_parameters();
  CHECK(names.contains("model.layers.1.mlp.down_proj.lora_B.weight"));
  CHECK(lora_tensors(*model).front().first == "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  merge_lora(*merged);
  CHECK_FALSE(has_lora(*merged));
  CHECK(merged->named_parameters().size() == init_model(tiny_config(), 21)->named_parameters().size());
  auto ids = torch::tensor(std::vector<int64_t>{3, 1, 4, 1, 5, 9, 2, 6}).unsqueeze(0);
  model->eval(), merged->eval();
  {
    torch::NoGradGuard ng;
    auto base = init_model(tiny_config(), 21)->forward(ids);
    auto lora = model->forward(ids), m = merged->forward(ids);
    CHECK((lora - m).abs().max().item<double>() < 1e-5);
    CHECK((lora - base).abs().max().item<double>() > 1e-3);  // the adapters matter: the check can fail
    CHECK(torch::equal(model->forward(ids), lora));         // no dropout in eval
  }
  // The engine's paged forward applies them too: cached decoding equals the full forward, and
  // greedy tokens equal the merged model's.
  EngineOptions eo;
  eo.keep_logits = true;
  Engine with_lora(model, byte_tokenizer(), {}, eo), with_merged(merged, byte_tokenizer(), {}, eo);
  SamplingParams g;
  g.temperature = 0, g.max_new_tokens = 12, g.ignore_eos = true;
  auto reqs = requests(g);
  auto a = with_lora.generate(reqs), b = with_merged.generate(reqs);
  CHECK(max_cache_error(model, reqs, a) <= 1e-4);
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i].samples[0].token_ids == b[i].samples[0].token_ids);
  // Training: dropout on the adapters' input; gradients reach the adapters only.
  model->train();
  auto y1 = model->forward(ids), y2 = model->forward(ids);
  CHECK_FALSE(torch::equal(y1, y2));
  y1.square().mean().backward();
  for (const auto& p : model->named_parameters()) {
    bool adapter = p.key().find(".lora_") != std::string::npos;
    CAPTURE(p.key());
    CHECK(p.value().requires_grad() == adapter);
    CHECK(p.value().grad().defined() == adapter);
  }
  // Activation checkpointing with frozen embeddings and dropout: the same gradients (the recompute
  // draws the same masks).
  auto grads = [&](bool checkpointing) {
    model->zero_grad();
    model->activation_checkpointing = checkpointing;
    torch::manual_seed(7);
    model->forward(ids).square().mean().backward();
    std::vector<torch::Tensor> g;
    for (auto& p : model->parameters())
      if (p.grad().defined()) g.push_back(p.grad().clone());
    return g;
  };
  auto plain = grads(false), ckpt = grads(true);
  model->activation_checkpointing = false;
  REQUIRE(plain.size() == 28);
  REQUIRE(ckpt.size() == plain.size());
  for (size_t i = 0; i < plain.size(); ++i) CHECK(torch::allclose(plain[i], ckpt[i], 1e-5, 1e-7));
  LoraOptions none = o;
  none.target_modules = {"nope_proj"};
  CHECK_THROWS_WITH_AS(add_lora(*init_model(tiny_config(), 1), none, 0), doctest::Contains("matches no linear layer"), ConfigError);
  LoraOptions suffix = o;
  suffix.target_modules = {"self_attn.o_proj"};
  CHECK(add_lora(*init_model(tiny_config(), 1), suffix, 0) == 2);
  LoraOptions re = o;
  re.target_modules.clear(), re.target_regex = "model\\.layers\\.1\\.mlp\\..*_proj";
  CHECK(add_lora(*init_model(tiny_config(), 1), re, 0) == 3);
  CHECK(add_lora(*init_model(tiny_config(), 1), LoraOptions{}, 0) == 4);  // PEFT's default: q_proj, v_proj
}
