// Corrupt inputs for the parsers that read untrusted files: safetensors, config.json,
// tokenizer.json. Built with AddressSanitizer and UBSan (label `sanitize`): every mutation must
// end in a clean DataError (or a successful load), never in a memory error or a crash.
#include <fstream>
#include <random>

#include "../unit/helpers.h"
#include "../unit/torch_doctest.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "text/tokenizer.h"
#include "util/errors.h"

using namespace warmup;
namespace fs = std::filesystem;

namespace {

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

// Loads and touches every tensor; returns "ok" or the DataError message.
std::string try_load(const fs::path& p) {
  try {
    SafetensorsFile f(p);
    for (const auto& [name, info] : f.tensors()) {
      auto t = f.tensor(name);
      if (t.numel() > 0) (void)t.to(torch::kFloat64).sum().item<double>();
    }
    return "ok";
  } catch (const DataError& e) {
    return e.what();
  }
}

}  // namespace

TEST_CASE("safetensors: truncation at every length and random header mutations") {
  test::TempDir d;
  fs::path good = d.path / "good.safetensors";
  write_safetensors_file(good, {{"w", torch::randn({4, 3})}, {"b", torch::randn({5}).to(torch::kBFloat16)},
                                {"i", torch::arange(6, torch::kInt64)}});
  std::string bytes = read(good);
  CHECK(try_load(good) == "ok");
  fs::path bad = d.path / "bad.safetensors";
  int errors = 0;
  for (size_t n = 0; n < bytes.size(); ++n) {
    write(bad, bytes.substr(0, n));
    std::string r = try_load(bad);
    errors += r != "ok";
    CHECK(r != "ok");  // every strict prefix is incomplete
  }
  CHECK(errors == int(bytes.size()));
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(bytes[size_t(i)]);
  std::mt19937 rng(1234);
  const std::string alphabet = "0123456789[]{}\",:-eE. FBI";
  for (int iter = 0; iter < 2000; ++iter) {
    std::string m = bytes;
    int edits = 1 + int(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      size_t pos = rng() % (8 + header_len);  // the length field and the JSON header
      m[pos] = rng() % 2 ? alphabet[rng() % alphabet.size()] : char(rng() % 256);
    }
    write(bad, m);
    try_load(bad);  // any outcome but a crash or a sanitizer report
  }
}

TEST_CASE("config.json: wrong types and values are DataErrors") {
  nlohmann::json base = {{"architectures", {"Qwen2ForCausalLM"}}, {"vocab_size", 10}, {"hidden_size", 8},
                         {"intermediate_size", 8}, {"num_hidden_layers", 1}, {"num_attention_heads", 2}};
  CHECK_NOTHROW(ModelConfig::from_json(base, "c"));
  std::vector<std::pair<std::string, nlohmann::json>> cases = {
      {"architectures", "Qwen2ForCausalLM"}, {"architectures", {"Mystery"}}, {"vocab_size", "ten"},
      {"hidden_size", -1}, {"num_key_value_heads", 3}, {"rope_theta", "fast"}, {"rope_scaling", {{"rope_type", "yarn"}}},
      {"hidden_act", "gelu"}, {"tie_word_embeddings", "yes"}, {"head_dim", 3}};
  for (const auto& [k, v] : cases) {
    nlohmann::json j = base;
    j[k] = v;
    INFO(k);
    CHECK_THROWS_AS(ModelConfig::from_json(j, "c"), DataError);
  }
}

TEST_CASE("tokenizer.json: random mutations never crash") {
  test::TempDir d;
  std::string good = Tokenizer::byte_level_json({"<|endoftext|>"});
  write(d.path / "tokenizer.json", good);
  CHECK(Tokenizer::load(d.path).encode("héllo").size() == 6);
  std::mt19937 rng(99);
  int loaded = 0;
  for (int iter = 0; iter < 300; ++iter) {
    std::string m = good;
    for (int e = 0; e < 3; ++e) m[rng() % m.size()] = "\"{}[],:0a\\"[rng() % 10];
    write(d.path / "tokenizer.json", m);
    try {
      Tokenizer t = Tokenizer::load(d.path);
      (void)t.decode(t.encode("some text é 😀 <|endoftext|>"));
      ++loaded;
    } catch (const DataError&) {
    } catch (const std::out_of_range&) {
    }
  }
  CHECK(loaded < 300);
}
