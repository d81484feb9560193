// knights_knaves: Knights & Knaves puzzles in the Xie et al. / Logic-RL JSONL schema (`quiz`,
// `names`, `solution`, `solution_text_format`, `statements`, `cot_*`), one file per size and
// split: <data_dir>/<n>ppl_<split>.jsonl. Prompts: the paper's raw-text R1 template (byte for
// byte) or Logic-RL's ChatML template. Every puzzle is checked with the solver at load: the
// stored solution must be the unique one.
#include <fstream>
#include <set>

#include "kk_generate.h"
#include "kk_logic.h"
#include "kk_rewards.h"
#include "kk_prompts.h"  // generated: kKkPaperTemplate
#include "plugin_common/jsonl.h"
#include "plugin_common/paths.h"
#include "warmup/sdk.h"

namespace {

namespace fs = std::filesystem;

// Logic-RL's ChatML prompt (verl data_preprocess/kk.py), ending inside the assistant turn.
const char* kLogicRlTemplate =
    "<|im_start|>system\nYou are a helpful assistant. The assistant first thinks about the reasoning process in "
    "the mind and then provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> "
    "<answer> answer here </answer>.  Now the user asks you to solve a logical reasoning problem. After thinking, "
    "when you finally reach a conclusion, clearly state the identity of each character within <answer> </answer> "
    "tags. i.e., <answer> (1) Zoey is a knight\n(2) ... </answer>.\n<|im_end|>\n<|im_start|>user\n{prompt}\n"
    "<|im_end|>\n<|im_start|>assistant\n<think>";

// A minimal prompt for tiny models trained from scratch (the CPU quickstart): the quiz, then the
// opening tag the completion continues.
const char* kPlainTemplate = "{prompt}\n<think>";

constexpr long double kPuzzleBytes = 4096;

std::string fill(std::string tmpl, const std::string& quiz) {
  size_t at = tmpl.find("{prompt}");
  return at == std::string::npos ? tmpl : tmpl.replace(at, 8, quiz);
}

class KnightsKnaves final : public warmup::Task {
 public:
  explicit KnightsKnaves(const warmup::PluginInit& init) {
    warmup::Options o(init);
    data_dir_ = o.get<std::string>("data_dir", "");  // directory of <n>ppl_<split>.jsonl files
    // Or puzzles generated at load (Xie et al.'s grammar), per size one seeded stream without
    // duplicates: its first `train` puzzles are the train split, the next `test` the test split.
    // Each puzzle is held in memory as an example (prompt, quiz, metadata): ~4 KiB.
    const warmup::Bounds puzzles = warmup::fits_in_memory(0, kPuzzleBytes, "puzzles of ~4 KiB");
    gen_train_ = o.get<int64_t>("generate_train", 0, puzzles);
    gen_test_ = o.get<int64_t>("generate_test", 0, puzzles);
    gen_seed_ = o.get<int64_t>("generate_seed", int64_t(init.seed));
    gen_names_ = o.get<std::vector<std::string>>("generate_names", {});  // [] = the 51 common names
    gen_shuffle_ = o.get<bool>("generate_shuffle_names", true);          // false: person i is always name i
    gen_templates_ = o.get<std::vector<std::string>>("generate_templates", {});  // [] = the dataset's 18 "said" templates
    people_ = o.get<std::vector<int64_t>>("people", {3, 4, 5, 6, 7});  // puzzle sizes to use
    prompt_ = o.get<std::string>("prompt", "paper");                  // paper | logic_rl | plain
    limit_ = o.get<int64_t>("limit_per_size", 0, warmup::at_least(0));  // first N per size; 0 = all
    verify_ = o.get<bool>("verify", true);                            // solve every puzzle at load
    if (prompt_ != "paper" && prompt_ != "logic_rl" && prompt_ != "plain")
      o.fail("prompt", "must be paper, logic_rl or plain");
    if (people_.empty()) o.fail("people", "must list at least one size");
    o.check("people", people_, warmup::at_least(2).at_most(20, "(the solver enumerates all 2^n cases)"));
    bool generate = gen_train_ > 0 || gen_test_ > 0;
    if (generate == !data_dir_.empty())
      o.fail(generate ? "data_dir" : "generate_train", "give either data_dir or generate_train/generate_test");
    if (generate) {
      // Every size is generated separately, and the test split regenerates the train puzzles first.
      long double all = (long double)people_.size() * (long double)(gen_train_ + gen_test_);
      if (all > (long double)warmup::memory_capacity(kPuzzleBytes))
        o.fail("generate_train", "+ generate_test = " + std::to_string(gen_train_ + gen_test_) + " puzzles for each of " +
                                     std::to_string(people_.size()) + " sizes must be <= " +
                                     std::to_string(warmup::memory_capacity(kPuzzleBytes)) + " puzzles of ~4 KiB in all (" +
                                     warmup::memory_text() + ")");
    }
    if (!gen_names_.empty()) {
      std::set<std::string> distinct(gen_names_.begin(), gen_names_.end());
      if (distinct.size() != gen_names_.size()) o.fail("generate_names", "must be distinct");
      for (int64_t n : people_)
        if (n > int64_t(gen_names_.size())) o.fail("generate_names", "needs at least as many names as people");
    }
    for (const auto& t : gen_templates_)
      if (t.find("{name}") == std::string::npos || t.find("{content}") == std::string::npos)
        o.fail("generate_templates", "each template needs {name} and {content}, got '" + t + "'");
    o.finish();
    data_dir_ = warmup::common::resolve_path(data_dir_, init.base_dir);
  }

  std::vector<std::string> splits() const override { return {"train", "test"}; }

  std::vector<warmup::Example> examples(const std::string& split) override {
    std::vector<warmup::Example> out;
    if (data_dir_.empty()) {
      if (split != "train" && split != "test") throw warmup::ConfigError("knights_knaves: unknown split '" + split + "'");
      for (int64_t n : people_) {
        kk::Generator gen(uint64_t(gen_seed_) * 1000 + uint64_t(n), int(n), gen_names_, gen_shuffle_, gen_templates_);
        int64_t skip = split == "train" ? 0 : gen_train_, count = split == "train" ? gen_train_ : gen_test_;
        if (limit_ > 0) count = std::min(count, limit_);
        for (int64_t i = 0; i < skip + count; ++i) {
          nlohmann::ordered_json rec = gen.next(i);
          if (i >= skip)
            out.push_back(parse(rec, "generated puzzle " + std::to_string(i), n, split, i - skip));
        }
      }
      return out;
    }
    for (int64_t n : people_) {
      fs::path file = fs::path(data_dir_) / (std::to_string(n) + "ppl_" + split + ".jsonl");
      int64_t kept = 0;
      warmup::common::read_jsonl(file.string(), [&](nlohmann::json& j, const std::string& where, int64_t ln) {
        if (limit_ != 0 && kept >= limit_) return false;
        out.push_back(parse(j, where, n, split, ln - 1));
        ++kept;
        return true;
      }, "split '" + split + "', " + std::to_string(n) + " people");
    }
    return out;
  }

 private:
  warmup::Example parse(const nlohmann::json& j, const std::string& where, int64_t n, const std::string& split,
                        int64_t index) const {
    try {
      warmup::Example e;
      auto names = warmup::json_field<std::vector<std::string>>(j, "names", where);
      auto solution = warmup::json_field<std::vector<bool>>(j, "solution", where);
      if (int64_t(names.size()) != n || solution.size() != names.size())
        throw warmup::DataError(where + ": expected " + std::to_string(n) + " names and solution values");
      std::string quiz = warmup::json_field<std::string>(j, "quiz", where);
      e.id = "kk/" + std::to_string(n) + "ppl/" + split + "/" + std::to_string(index);
      e.prompt = fill(prompt_ == "paper" ? kKkPaperTemplate : prompt_ == "logic_rl" ? kLogicRlTemplate : kPlainTemplate, quiz);
      e.reference = warmup::json_field<std::string>(j, "solution_text_format", where);
      e.metadata = {{"n_people", n}, {"names", names}, {"solution", solution}, {"quiz", quiz}};
      if (j.contains("statements")) e.metadata["statements"] = j["statements"];
      if (verify_ && j.contains("statements")) {
        auto st = kk::parse_statements(warmup::json_field<std::string>(j, "statements", where));
        auto sols = kk::solve(st);
        if (sols.size() != 1 || sols[0] != solution)
          throw warmup::DataError(where + ": the statements have " + std::to_string(sols.size()) +
                                  " solutions, or not the stored one");
      }
      return e;
    } catch (const nlohmann::json::exception& e) {
      throw warmup::DataError(where + ": malformed puzzle: " + e.what());
    } catch (const std::runtime_error& e) {
      if (dynamic_cast<const warmup::DataError*>(&e)) throw;
      throw warmup::DataError(where + ": " + e.what());
    }
  }

  std::string data_dir_, prompt_;
  std::vector<int64_t> people_;
  int64_t limit_;
  bool verify_;
  int64_t gen_train_ = 0, gen_test_ = 0, gen_seed_ = 0;
  std::vector<std::string> gen_names_, gen_templates_;
  bool gen_shuffle_ = true;
};

// kk_solver: the offline teacher. Writes the solver's backtracking chain of thought (exactly the
// dataset's cot_* text) and the gold answer in the paper's format, from each example's
// `statements` and `names` metadata. Deterministic: the n completions of an example are equal.
class KkSolverTeacher final : public warmup::Teacher {
 public:
  explicit KkSolverTeacher(const warmup::PluginInit& init) {
    warmup::Options o(init);
    // {cot}: head, steps and foot joined by spaces; {answer}: "(1) X is a knight\n(2) ...".
    template_ = o.get<std::string>("template", "{cot}\n</think>\n<answer>\n{answer}\n</answer>");
    // backtracking: the dataset's cot_* text (Xie et al.); truth_table: one line of marked cases per
    // claim; truth_vectors: one line of marked cases per subformula (kk_logic.h), for tiny models.
    cot_ = o.get<std::string>("cot", "backtracking");
    if (!kk::is_cot_style(cot_)) o.fail("cot", "must be " + std::string(kk::kCotStyles));
    // The truth styles' copied claim line: match the task's generate_templates for an exact copy.
    claim_ = o.get<std::string>("claim_template", kk::kDefaultClaim);
    if (claim_.find("{name}") == std::string::npos || claim_.find("{content}") == std::string::npos)
      o.fail("claim_template", "needs {name} and {content}");
    o.finish();
  }

  std::vector<std::vector<warmup::Completion>> complete(const std::vector<warmup::Example>& examples, int n) override {
    std::vector<std::vector<warmup::Completion>> out;
    for (const auto& e : examples) {
      if (!e.metadata.contains("statements") || !e.metadata.contains("names"))
        throw warmup::DataError("kk_solver: example " + e.id + " has no statements/names metadata (not a K&K example)");
      auto names = e.metadata["names"].get<std::vector<std::string>>();
      auto st = kk::parse_statements(e.metadata["statements"].get<std::string>());
      auto cot = kk::chain_of_thought(cot_, st, names, claim_);
      std::string text = template_;
      replace(text, "{cot}", cot.text());
      replace(text, "{answer}", cot.solution.empty() ? "No valid solution exists." : kk::solution_text_format(names, cot.solution));
      out.emplace_back(size_t(n), warmup::Completion{text, "stop", -1});
    }
    return out;
  }

 private:
  static void replace(std::string& s, const std::string& key, const std::string& value) {
    for (size_t at = 0; (at = s.find(key, at)) != std::string::npos; at += value.size()) s.replace(at, key.size(), value);
  }
  std::string template_, cot_, claim_;
};

}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Task, KnightsKnaves>(
                  "knights_knaves", "0.1.0", "Knights & Knaves puzzles (Xie et al. schema), paper or Logic-RL prompts"),
              warmup::entry<warmup::Teacher, KkSolverTeacher>(
                  "kk_solver", "0.1.0", "offline K&K teacher: the solver's backtracking chain of thought + the answer"),
              kk_paper_entry(), kk_logic_rl_entry())
