// See resume_overrides.h.
#include "runtime/resume_overrides.h"

#include <map>

#include "util/errors.h"

namespace warmup {
namespace fs = std::filesystem;
namespace {

std::string leaf(const std::string& key) {
  size_t dot = key.rfind('.');
  return dot == std::string::npos ? key : key.substr(dot + 1);
}

const std::set<std::string> kNeutralLeaves = {"logging_steps", "log_completions_groups", "reward_workers",
                                              "score_workers"};
// Keys that name files or folders (the in-tree plugins' and [model]'s; plugins of other names: a
// `*_path`, `*_dir` or `*_file` key). Only these take the "moved path" rule.
const std::set<std::string> kPathLeaves = {"path", "data", "data_dir", "train", "test", "validation",
                                           "cache", "tokenizer", "file", "dir"};

bool is_path_key(const std::string& key) {
  std::string l = leaf(key);
  return kPathLeaves.count(l) || l.ends_with("_path") || l.ends_with("_dir") || l.ends_with("_file");
}

bool exists_at(const std::string& path, const fs::path& base_dir) {
  if (path.empty() || path.find('{') != std::string::npos) return false;
  fs::path p = path;
  if (p.is_relative()) p = base_dir / p;
  std::error_code ec;
  return fs::exists(p, ec);
}

// "" when `key` may change from `before` to `after` in a resumed run, else why not.
std::string refusal(const std::string& key, const FlatValue* before, const FlatValue& after,
                    const fs::path& base_dir, const std::set<std::string>& started) {
  if (key == "model.device" || kNeutralLeaves.count(leaf(key))) return "";
  // sft's batch split, for resuming with another number of ranks: sft refuses a checkpoint whose
  // rows per step (ranks x batch x accumulation) differ, so the computation cannot change.
  if (key.rfind("stages.", 0) == 0 && (key.ends_with(".sft.per_device_train_batch_size") ||
                                       key.ends_with(".sft.gradient_accumulation_steps")))
    return "";
  if (key.rfind("stages.", 0) == 0) {
    std::string rest = key.substr(7);
    for (std::string_view tail : {".eval.limit", ".eval.num_samples"}) {
      if (rest.size() > tail.size() && rest.ends_with(tail)) {
        std::string stage = rest.substr(0, rest.size() - tail.size());
        if (!started.count(stage)) return "";
        return "stage '" + stage + "' has already started: its eval size is fixed";
      }
    }
  }
  if (before && before->type == "string" && after.type == "string" && is_path_key(key)) {
    if (before->text.empty() || before->text.find('{') != std::string::npos)
      return "its value '" + before->text + "' is not a path that can have moved";
    if (exists_at(before->text, base_dir)) return before->text + " still exists: a resumed run keeps its data";
    if (!exists_at(after.text, base_dir)) return after.text + " does not exist either";
    return "";
  }
  return "it changes what the run computes";
}

}  // namespace

std::vector<FlatValue> check_resume_overrides(const toml::table& stored, const std::vector<std::string>& overrides,
                                              const fs::path& base_dir, const std::set<std::string>& started,
                                              const std::string& who) {
  toml::table changed = stored;
  for (const auto& o : overrides) apply_override(changed, o);
  std::map<std::string, FlatValue> before;
  for (auto& f : flatten(stored)) before.emplace(f.key, std::move(f));
  std::vector<FlatValue> out;
  for (auto& f : flatten(changed)) {
    auto it = before.find(f.key);
    const FlatValue* b = it == before.end() ? nullptr : &it->second;
    if (b && b->type == f.type && b->text == f.text) continue;
    std::string why = refusal(f.key, b, f, base_dir, started);
    if (!why.empty())
      throw UsageError("--set " + f.key + ": a resumed run (" + who + ") takes only keys that do not change what it "
                       "computes (" + why + "). Allowed: a path that no longer exists replaced by one that does, "
                       "model.device, logging_steps, log_completions_groups, reward_workers, score_workers, sft's "
                       "per_device_train_batch_size and gradient_accumulation_steps (the rows per step must stay), and "
                       "eval.limit / eval.num_samples of stages not started; start a new run for anything else");
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace warmup
