// humaneval_plus: HumanEval (OpenAI) and HumanEval+ (EvalPlus v0.1.10) problems with the paper's
// prompts. Three variants: "plus_originfmt" (EvalPlus's self-checking check(candidate), one
// process per sample: the paper's setting), "plus" (EvalPlus's base/plus inputs, outputs compared
// with the canonical solution's), "base" (the original HumanEval tests). Splits: a seeded
// permutation of the 164 problems, the first `train_size` are "train", the rest "test", and
// "all" in file order. The task only renders prompts and references; the rewards in
// he_rewards.cpp run the code.
#include <filesystem>

#include "he_data.h"
#include "he_rewards.h"
#include "he_prompts.h"  // generated: kHumanevalRlTemplate, kHumanevalEvalTemplate
#include "plugin_common/paths.h"
#include "warmup/sdk.h"

namespace {

namespace fs = std::filesystem;
using he::field;
using VT = nlohmann::json::value_t;

std::string fill(std::string tmpl, const std::string& prompt) {
  size_t at = tmpl.find("{prompt}");
  return at == std::string::npos ? tmpl : tmpl.replace(at, 8, prompt);
}

class HumanevalPlus final : public warmup::Task {
 public:
  explicit HumanevalPlus(const warmup::PluginInit& init) {
    warmup::Options o(init);
    data_dir_ = o.require<std::string>("data_dir");  // folder of the files below, relative to the experiment
    base_file_ = o.get<std::string>("base_file", "humaneval.jsonl");                // OpenAI HumanEval
    plus_file_ = o.get<std::string>("plus_file", "humaneval_plus.jsonl.gz");        // EvalPlus, with inputs
    originfmt_file_ = o.get<std::string>("originfmt_file", "humaneval_plus_originfmt.jsonl.gz");  // self-checking
    variant_ = o.get<std::string>("variant", "plus_originfmt");  // plus_originfmt | plus | base
    prompt_ = o.get<std::string>("prompt", "rl");                // rl | eval (the paper's) | raw (the problem only)
    train_size_ = o.get<int64_t>("train_size", 50);              // problems in "train" (paper: 50 of 164)
    split_seed_ = o.get<int64_t>("split_seed", 42);              // seed of the train/test permutation
    limit_ = o.get<int64_t>("limit", 0);                         // first N of a split; 0 = all
    if (variant_ != "plus_originfmt" && variant_ != "plus" && variant_ != "base")
      o.fail("variant", "must be plus_originfmt, plus or base");
    if (prompt_ != "rl" && prompt_ != "eval" && prompt_ != "raw") o.fail("prompt", "must be rl, eval or raw");
    if (train_size_ < 0) o.fail("train_size", "must be >= 0");
    o.finish();
    data_dir_ = warmup::common::resolve_path(data_dir_, init.base_dir);
  }

  std::vector<std::string> splits() const override { return {"train", "test", "all"}; }

  std::vector<warmup::Example> examples(const std::string& split) override {
    if (split != "train" && split != "test" && split != "all")
      throw warmup::ConfigError("humaneval_plus: unknown split '" + split + "' (train, test, all)");
    std::vector<warmup::Example> all = load();
    std::vector<warmup::Example> out;
    if (split == "all") {
      out = std::move(all);
    } else {
      auto perm = he::permutation(all.size(), uint64_t(split_seed_));
      size_t n_train = std::min(all.size(), size_t(train_size_));
      size_t b = split == "train" ? 0 : n_train, e = split == "train" ? n_train : all.size();
      for (size_t i = b; i < e; ++i) out.push_back(all[perm[i]]);
    }
    if (limit_ > 0 && out.size() > size_t(limit_)) out.resize(size_t(limit_));
    return out;
  }

 private:
  std::vector<warmup::Example> load() const {
    std::string file = (fs::path(data_dir_) /
                        (variant_ == "plus" ? plus_file_ : variant_ == "base" ? base_file_ : originfmt_file_)).string();
    const char* tmpl = prompt_ == "rl" ? kHumanevalRlTemplate : prompt_ == "eval" ? kHumanevalEvalTemplate : "{prompt}";
    std::vector<warmup::Example> out;
    std::vector<std::string> lines;
    auto rows = he::read_jsonl(file, &lines);
    for (size_t k = 0; k < rows.size(); ++k) {
      const auto& row = rows[k];
      std::string where = file + ":" + std::to_string(row["__line"].get<size_t>());
      std::string task_id = field(row, "task_id", VT::string, where).get<std::string>();
      std::string prompt = field(row, "prompt", VT::string, where).get<std::string>();
      std::string entry = field(row, "entry_point", VT::string, where).get<std::string>();
      nlohmann::json ref = {{"task_id", task_id}, {"entry_point", entry}, {"variant", variant_}, {"prompt", prompt}};
      if (variant_ == "plus") {
        ref["canonical"] = prompt + field(row, "canonical_solution", VT::string, where).get<std::string>();
        ref["n_base"] = field(row, "base_input", VT::array, where).size();
        ref["n_plus"] = field(row, "plus_input", VT::array, where).size();
        ref["base_input"] = he::raw_array(lines[k], "base_input", where);  // JSON text: big ints intact
        ref["plus_input"] = he::raw_array(lines[k], "plus_input", where);
        ref["atol"] = field(row, "atol", VT::number_float, where).get<double>();
      } else {
        ref["test"] = field(row, "test", VT::string, where).get<std::string>();
      }
      warmup::Example e;
      e.id = "humaneval_plus/" + task_id;
      e.prompt = fill(tmpl, prompt);
      e.reference = ref.dump();
      e.metadata = {{"task_id", task_id}, {"entry_point", entry}, {"variant", variant_},
                    {"canonical_solution", row.value("canonical_solution", std::string())}, {"prompt", prompt}};
      out.push_back(std::move(e));
    }
    if (out.empty()) throw warmup::DataError(file + ": no problems");
    return out;
  }

  std::string data_dir_, base_file_, plus_file_, originfmt_file_, variant_, prompt_;
  int64_t train_size_, split_seed_, limit_;
};

}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Task, HumanevalPlus>("humaneval_plus", "0.1.0",
                                                        "HumanEval / HumanEval+ problems with the paper's prompts"),
              warmup::entry<warmup::Reward, he::PaperReward>(
                  "humaneval_paper", "0.1.0", "the paper's HumanEval+ reward: +2 pass, -1 fail, -2 format"),
              warmup::entry<warmup::Reward, he::PassFraction>(
                  "humaneval_pass_fraction", "0.1.0", "fraction of HumanEval+ tests passed (sandboxed)"))
