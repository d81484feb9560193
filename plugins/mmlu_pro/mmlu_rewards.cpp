// MMLU-Pro rewards (see mmlu_rewards.h). Both never throw on model output and are safe to call
// concurrently (no mutable state; the extraction keeps its match state per thread).
#include "mmlu_rewards.h"

#include "plugin_common/paper_format.h"

namespace mmlu {
namespace {

Chain chain_option(warmup::Options& o, const std::string& fallback) {
  std::string name = o.get<std::string>("extract", fallback);  // paper | official
  auto c = parse_chain(name);
  if (!c) o.fail("extract", "must be paper or official");
  return *c;
}

}  // namespace

std::optional<Chain> parse_chain(const std::string& name) {
  if (name == "paper") return Chain::kPaper;
  if (name == "official") return Chain::kOfficial;
  return std::nullopt;
}

PaperReward::PaperReward(const warmup::PluginInit& init) {
  warmup::Options o(init);
  format_error_ = o.get<double>("format_error", -2.0);  // format gate failed
  correct_ = o.get<double>("correct", 2.0);             // extracted letter equals the gold
  wrong_ = o.get<double>("wrong", -0.5);                // other letter, or none found
  chain_ = chain_option(o, "paper");                    // extraction chain on the answer span
  paren_again_ = o.get<bool>("official_paren", true);   // official tier 2 accepts "Answer: (X)"
  o.finish();
}

warmup::RewardResult PaperReward::score(const warmup::Example& ex, const std::string& s) const {
  warmup::RewardResult r;
  std::string span;
  if (!warmup::paper_format_gate(s, format_error_, r, span)) return r;
  Extraction x = extract(chain_, py_strip(span), paren_again_);
  r.breakdown["tier"] = x.tier;
  if (x.letter) r.extracted_answer = std::string(1, x.letter);
  bool ok = x.letter != 0 && std::string(1, x.letter) == ex.reference;
  r.correct = ok;
  r.value = ok ? correct_ : wrong_;
  if (!x.letter) r.error = "no answer letter in the answer span";
  return r;
}

AccuracyReward::AccuracyReward(const warmup::PluginInit& init) {
  warmup::Options o(init);
  correct_ = o.get<double>("correct", 1.0);              // the letter (or the guess) equals the gold
  wrong_ = o.get<double>("wrong", 0.0);                  // anything else
  chain_ = chain_option(o, "paper");                     // paper (R1 prompts) | official (5-shot)
  paren_again_ = o.get<bool>("official_paren", true);    // official tier 2 accepts "Answer: (X)"
  guess_ = o.get<bool>("guess", true);                   // no letter -> seeded random guess
  guess_seed_ = o.get<int64_t>("guess_seed", 12345);     // the official scripts' random.seed(12345)
  per_example_ = o.get<bool>("guess_per_example", false);  // mix the example id into the seed
  if (guess_seed_ < 0) o.fail("guess_seed", "must be >= 0");
  o.finish();
}

warmup::RewardResult AccuracyReward::score(const warmup::Example& ex, const std::string& s) const {
  warmup::RewardResult r;
  Extraction x = extract(chain_, s, paren_again_);
  char letter = x.letter;
  if (x.letter) r.extracted_answer = std::string(1, x.letter);  // the official `pred`; a guess is not extracted
  r.breakdown["tier"] = x.tier;
  r.breakdown["guessed"] = 0.0;
  if (!letter && guess_) {
    int64_t n = 10;
    if (ex.metadata.is_object() && ex.metadata.contains("n_options") && ex.metadata["n_options"].is_number_integer())
      n = std::clamp<int64_t>(ex.metadata["n_options"].get<int64_t>(), 1, 10);
    uint64_t seed = uint64_t(guess_seed_);
    if (per_example_) seed ^= fnv1a(ex.id) & 0x7fffffffffffffffULL;
    letter = "ABCDEFGHIJ"[python_randint_below(seed, n)];
    r.breakdown["guessed"] = 1.0;
    r.error = std::string("no answer letter found; random guess ") + letter;
  } else if (!letter) {
    r.error = "no answer letter found";
  }
  bool ok = letter != 0 && std::string(1, letter) == ex.reference;
  r.correct = ok;
  r.value = ok ? correct_ : wrong_;
  return r;
}

}  // namespace mmlu
