// arithmetic: a toy task of integer expressions ("What is 37 + 58?") with exact gold answers.
// Generated from the experiment seed, so it needs no data files; used by the smoke experiment and
// the tests. Not a benchmark of anything.
#include <random>

#include "warmup/sdk.h"

namespace {

class Arithmetic final : public warmup::Task {
 public:
  explicit Arithmetic(const warmup::PluginInit& init) {
    warmup::Options o(init);
    // Every example of a split is held in memory (~1 KiB with its prompt and metadata).
    const warmup::Bounds size = warmup::fits_in_memory(0, 1024, "examples of ~1 KiB");
    train_size_ = o.get<int64_t>("train_size", 200, size);  // examples in "train"
    test_size_ = o.get<int64_t>("test_size", 50, size);     // examples in "test"
    max_operand_ = o.get<int64_t>("max_operand", 99); // operands drawn from [0, max_operand]
    operators_ = o.get<std::string>("operators", "+-*");  // any of + - *
    seed_ = o.get<int64_t>("seed", int64_t(init.seed));   // data seed (default: experiment seed)
    // {a}, {op}, {b} are replaced; the answer is the integer value.
    template_ = o.get<std::string>("prompt_template", "What is {a} {op} {b}? Answer with a number.");
    if (max_operand_ < 1 || max_operand_ > 1000000) o.fail("max_operand", "must be in [1, 1000000]");
    if (operators_.empty() || operators_.find_first_not_of("+-*") != std::string::npos)
      o.fail("operators", "must be a non-empty string of + - *");
    o.finish();
  }

  std::vector<std::string> splits() const override { return {"train", "test"}; }

  std::vector<warmup::Example> examples(const std::string& split) override {
    if (split != "train" && split != "test")
      throw warmup::ConfigError("arithmetic has no split '" + split + "' (train, test)");
    int64_t n = split == "train" ? train_size_ : test_size_;
    // Separate streams per split: changing train_size never changes the test set.
    std::mt19937_64 rng(uint64_t(seed_) * 2654435761ULL + (split == "train" ? 1 : 2));
    std::uniform_int_distribution<int64_t> operand(0, max_operand_);
    std::uniform_int_distribution<size_t> op(0, operators_.size() - 1);
    std::vector<warmup::Example> out;
    for (int64_t i = 0; i < n; ++i) {
      int64_t a = operand(rng), b = operand(rng);
      char o = operators_[op(rng)];
      int64_t value = o == '+' ? a + b : o == '-' ? a - b : a * b;
      warmup::Example e;
      e.id = "arithmetic/" + split + "/" + std::to_string(i);
      e.prompt = render(a, o, b);
      e.reference = std::to_string(value);
      e.metadata = {{"a", a}, {"b", b}, {"op", std::string(1, o)}};
      out.push_back(std::move(e));
    }
    return out;
  }

 private:
  std::string render(int64_t a, char op, int64_t b) const {
    std::string s = template_;
    auto replace = [&s](const std::string& key, const std::string& value) {
      for (size_t p; (p = s.find(key)) != std::string::npos;) s.replace(p, key.size(), value);
    };
    replace("{a}", std::to_string(a));
    replace("{op}", std::string(1, op));
    replace("{b}", std::to_string(b));
    return s;
  }

  int64_t train_size_, test_size_, max_operand_, seed_;
  std::string operators_, template_;
};

}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Task, Arithmetic>(
    "arithmetic", "0.1.0", "toy integer arithmetic with exact answers (generated, no data files)"))
