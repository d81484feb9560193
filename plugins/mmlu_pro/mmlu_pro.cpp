// mmlu_pro: the MMLU-Pro task (TIGER-Lab test + validation splits as JSONL) with the paper's
// per-category seeded train/test separation and three prompt styles: the paper's zero-shot R1
// templates for RL and for evaluation (byte for byte, compiled in) and the official 5-shot CoT
// prompt built from the validation split. The library also holds the two MMLU-Pro rewards
// (mmlu_rewards.cpp). Does not shorten the 5-shot prompt to fit a context (the official script
// drops exemplars when prompt tokens >= 2048; a task has no tokenizer).
#include <filesystem>

#include "mmlu_data.h"
#include "mmlu_prompts.h"  // generated: kMmluRlTemplate, kMmluEvalTemplate
#include "mmlu_rewards.h"
#include "plugin_common/paths.h"
#include "warmup/sdk.h"

namespace {

namespace fs = std::filesystem;

class MmluPro final : public warmup::Task {
 public:
  explicit MmluPro(const warmup::PluginInit& init) {
    warmup::Options o(init);
    data_dir_ = o.require<std::string>("data_dir");                           // folder of the JSONL files
    test_file_ = o.get<std::string>("test_file", "test.jsonl");               // relative to data_dir
    validation_file_ = o.get<std::string>("validation_file", "validation.jsonl");  // relative to data_dir
    categories_ = o.get<std::vector<std::string>>("categories", {});          // empty = all 14
    per_category_ = o.get<int64_t>("train_per_category", 100);                // train rows per category (paper: 100)
    seed_ = o.get<int64_t>("seed", 42);                                       // separation seed (paper: 42)
    test_split_ = o.get<std::string>("test_split", "rest");                   // rest (held out) | all
    train_prompt_ = o.get<std::string>("train_prompt", "rl");                 // rl | eval | five_shot
    eval_prompt_ = o.get<std::string>("eval_prompt", "eval");                 // same, for test and validation
    shots_ = o.get<int64_t>("shots", 5);                                      // exemplars of five_shot
    header_ = o.get<std::string>("five_shot_header", mmlu::kOfficialHeader);  // "{$}" = category
    limit_ = o.get<int64_t>("limit_per_category", 0);                         // first N per category; 0 = all
    for (const auto& c : categories_)
      if (std::find(mmlu::all_categories().begin(), mmlu::all_categories().end(), c) == mmlu::all_categories().end()) {
        std::string known;
        for (const auto& k : mmlu::all_categories()) known += (known.empty() ? "" : ", ") + k;
        o.fail("categories", "has unknown category '" + c + "' (the 14 categories: " + known + ")");
      }
    if (categories_.empty()) categories_ = mmlu::all_categories();
    if (per_category_ < 0) o.fail("train_per_category", "must be >= 0");
    if (seed_ < 0) o.fail("seed", "must be >= 0");
    if (test_split_ != "rest" && test_split_ != "all") o.fail("test_split", "must be rest or all");
    for (const char* k : {"train_prompt", "eval_prompt"}) {
      const std::string& v = std::string(k) == "train_prompt" ? train_prompt_ : eval_prompt_;
      if (v != "rl" && v != "eval" && v != "five_shot") o.fail(k, "must be rl, eval or five_shot");
    }
    if (shots_ < 0) o.fail("shots", "must be >= 0");
    if (limit_ < 0) o.fail("limit_per_category", "must be >= 0");
    o.finish();
    data_dir_ = warmup::common::resolve_path(data_dir_, init.base_dir);
  }

  std::vector<std::string> splits() const override { return {"train", "test", "validation"}; }

  std::vector<warmup::Example> examples(const std::string& split) override {
    if (split != "train" && split != "test" && split != "validation")
      throw warmup::ConfigError("mmlu_pro: unknown split '" + split + "' (train, test, validation)");
    const std::string& style = split == "train" ? train_prompt_ : eval_prompt_;
    std::vector<size_t> rows;
    const std::vector<mmlu::Question>* source = nullptr;
    if (split == "validation") {
      source = &validation();
      for (size_t i = 0; i < source->size(); ++i)
        if (std::find(categories_.begin(), categories_.end(), (*source)[i].category) != categories_.end())
          rows.push_back(i);
    } else {
      source = &test();
      auto sep = mmlu::separate(test(), categories_, per_category_, uint64_t(seed_));
      if (split == "train") rows = sep.train;
      else if (test_split_ == "rest") rows = sep.rest;
      else rows = mmlu::separate(test(), categories_, 0, 0).rest;  // every row of the categories
    }
    std::map<std::string, int64_t> per_cat;
    std::vector<warmup::Example> out;
    for (size_t i : rows) {
      const mmlu::Question& q = (*source)[i];
      if (limit_ > 0 && per_cat[q.category]++ >= limit_) continue;
      warmup::Example e;
      e.id = "mmlu_pro/" + split + "/" + std::to_string(q.question_id);
      e.prompt = style == "rl"     ? mmlu::fill_paper(kMmluRlTemplate, q)
                 : style == "eval" ? mmlu::fill_paper(kMmluEvalTemplate, q)
                                   : mmlu::five_shot(header_, validation(), q, shots_);
      e.reference = q.answer;
      e.metadata = {{"category", q.category}, {"question_id", q.question_id}, {"src", q.src},
                    {"n_options", int64_t(q.options.size())}, {"answer_index", q.answer_index}};
      out.push_back(std::move(e));
    }
    return out;
  }

 private:
  const std::vector<mmlu::Question>& test() {
    if (!test_loaded_) test_ = mmlu::load_questions((fs::path(data_dir_) / test_file_).string()), test_loaded_ = true;
    return test_;
  }
  const std::vector<mmlu::Question>& validation() {
    if (!val_loaded_) val_ = mmlu::load_questions((fs::path(data_dir_) / validation_file_).string()), val_loaded_ = true;
    return val_;
  }

  std::string data_dir_, test_file_, validation_file_, test_split_, train_prompt_, eval_prompt_, header_;
  std::vector<std::string> categories_;
  int64_t per_category_, seed_, shots_, limit_;
  std::vector<mmlu::Question> test_, val_;
  bool test_loaded_ = false, val_loaded_ = false;
};

}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Task, MmluPro>("mmlu_pro", "0.1.0",
                                                  "MMLU-Pro: seeded per-category splits, paper R1 or official 5-shot prompts"),
              warmup::entry<warmup::Reward, mmlu::PaperReward>(
                  "mmlu_pro_paper", "0.1.0", "MMLU-Pro reward of the paper (format -2, right +2, wrong -0.5)"),
              warmup::entry<warmup::Reward, mmlu::AccuracyReward>(
                  "mmlu_pro_accuracy", "0.1.0", "MMLU-Pro accuracy: paper or official letter chain, seeded guess"))
