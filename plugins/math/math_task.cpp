// math: MATH problems (Hendrycks et al.) from JSONL, one file per split: MATH-500
// (`problem, solution, answer, subject, level:int, unique_id`) and the MATH train split (`level`
// "Level N", `type` instead of `subject`). Prompts: the paper's RL or evaluation template (byte
// for byte, compiled in) or the bare problem. The reference is the gold answer (the last \boxed{}
// of the solution when a row has no `answer`). Scoring lives in math_rewards.cpp.
#include <filesystem>
#include <fstream>

#include "math_prompts.h"  // generated: kMathRlTemplate, kMathEvalTemplate
#include "math_rewards.h"
#include "mv_normalize.h"
#include "plugin_common/jsonl.h"
#include "plugin_common/paths.h"
#include "warmup/sdk.h"

namespace {

namespace fs = std::filesystem;

std::string fill(std::string tmpl, const std::string& problem) {
  size_t at = tmpl.find("{prompt}");
  return at == std::string::npos ? tmpl : tmpl.replace(at, 8, problem);
}

// "Level 3" -> 3, 3 -> 3, "Level ?" -> null
nlohmann::json parse_level(const nlohmann::json& v) {
  if (v.is_number_integer()) return v;
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    if (s.rfind("Level ", 0) == 0 && s.size() > 6 && std::isdigit(static_cast<unsigned char>(s[6]))) return std::stoi(s.substr(6));
    return nullptr;
  }
  return nullptr;
}

class MathTask final : public warmup::Task {
 public:
  explicit MathTask(const warmup::PluginInit& init) {
    warmup::Options o(init);
    files_["test"] = o.get<std::string>("test", "");    // JSONL of the test split (MATH-500); "" = none
    files_["train"] = o.get<std::string>("train", "");  // JSONL of the train split (MATH train); "" = none
    prompt_ = o.get<std::string>("prompt", "eval");     // rl | eval | none (the bare problem)
    limit_ = o.get<int64_t>("limit", 0);                // first N examples per split; 0 = all
    if (prompt_ != "rl" && prompt_ != "eval" && prompt_ != "none") o.fail("prompt", "must be rl, eval or none");
    if (limit_ < 0) o.fail("limit", "must be >= 0");
    o.finish();
    for (auto& [split, file] : files_)
      file = warmup::common::resolve_path(file, init.base_dir);
  }

  std::vector<std::string> splits() const override {
    std::vector<std::string> out;
    for (const char* s : {"train", "test"})
      if (!files_.at(s).empty()) out.push_back(s);
    return out;
  }

  std::vector<warmup::Example> examples(const std::string& split) override {
    auto it = files_.find(split);
    if (it == files_.end() || it->second.empty())
      throw warmup::ConfigError("math: no file for split '" + split + "' (set `" + split + " = \"path.jsonl\"`)");
    std::vector<warmup::Example> out;
    warmup::common::read_jsonl(it->second, [&](nlohmann::json& j, const std::string& where, int64_t) {
      if (limit_ != 0 && int64_t(out.size()) >= limit_) return false;
      out.push_back(parse(j, where, split, int64_t(out.size())));
      return true;
    }, "split '" + split + "'");
    return out;
  }

 private:
  warmup::Example parse(const nlohmann::json& j, const std::string& where, const std::string& split, int64_t index) const {
    try {
      warmup::Example e;
      std::string problem = warmup::json_field<std::string>(j, "problem", where);
      std::string answer;
      if (j.contains("answer")) answer = warmup::json_field<std::string>(j, "answer", where);
      else if (auto b = mv::last_boxed(warmup::json_field<std::string>(j, "solution", where))) answer = *b;
      else throw warmup::DataError(where + ": no `answer` and no \\boxed{} in `solution`");
      e.id = "math/" + split + "/" + std::to_string(index);
      e.prompt = prompt_ == "rl" ? fill(kMathRlTemplate, problem) : prompt_ == "eval" ? fill(kMathEvalTemplate, problem) : problem;
      e.reference = answer;
      e.metadata = {{"subject", j.contains("subject") ? j["subject"] : j.value("type", nlohmann::json())},
                    {"level", parse_level(j.value("level", nlohmann::json()))},
                    {"unique_id", j.value("unique_id", nlohmann::json())},
                    {"problem", problem}};
      return e;
    } catch (const nlohmann::json::exception& e) {
      throw warmup::DataError(where + ": malformed MATH row: " + e.what());
    }
  }

  std::map<std::string, std::string> files_;
  std::string prompt_;
  int64_t limit_;
};

}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Task, MathTask>("math", "0.1.0", "MATH / MATH-500 problems, the paper's prompts"),
              MATH_REWARD_ENTRIES)
