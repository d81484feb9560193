// See validate.h.
#include "runtime/validate.h"

#include <unistd.h>

#include "model/checkpoint.h"
#include "model/lora.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "text/tokenizer.h"

namespace warmup {
namespace fs = std::filesystem;
namespace {

template <class F>
void check(Validation& v, const std::string& where, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    v.error(where + ": " + e.what());
  }
}

// The nearest existing folder at or above `p` is writable (the store file is created there).
void check_store(Validation& v, const fs::path& store) {
  fs::path p = fs::absolute(store);
  std::error_code ec;
  if (fs::exists(p, ec)) {
    if (fs::is_directory(p, ec)) v.error("--store " + store.string() + ": is a directory, not a SQLite file");
    else if (access(p.c_str(), R_OK | W_OK) != 0) v.error("--store " + store.string() + ": not readable and writable");
    return;
  }
  for (p = p.parent_path(); !p.empty() && !fs::exists(p, ec); p = p.parent_path()) {
  }
  if (!p.empty() && access(p.c_str(), W_OK | X_OK) != 0)
    v.error("--store " + store.string() + ": cannot create it (" + p.string() + " is not writable)");
}

}  // namespace

std::vector<std::string> validate_experiment(const ExperimentConfig& cfg, const std::vector<StageToValidate>& stages,
                                             const fs::path& store) {
  Validation v;
  const std::string model_at = "[model] of " + cfg.file.string();
  if (!stages.empty()) check(v, model_at + ": device", [&] { parse_device(cfg.model.device); });
  bool model_used = false;  // by a stage still to run (a stage fed by an earlier one has none)
  for (const auto& s : stages) model_used |= !s.plan.model.path.empty();
  if (model_used) {
    const fs::path dir = cfg.model.path;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
      v.error(model_at + ": path " + dir.string() + (fs::exists(dir, ec) ? " is not a directory" : " does not exist"));
    } else {
      // A PEFT adapter directory: its chain of adapters, then the plain base model under it.
      fs::path root = dir, files = dir;
      check(v, model_at + ": path", [&] { root = adapter_root_model(dir), files = model_files_dir(dir); });
      check(v, model_at + ": path", [&] { ModelConfig::load(root); });
      check(v, model_at + ": path", [&] { SafetensorsCheckpoint ckpt(root); });
      check(v, model_at + ": tokenizer", [&] { Tokenizer::load(files); });
    }
  }
  check_store(v, store);
  for (const auto& s : stages) {
    const std::string who = "stages." + s.plan.stage_name;
    try {
      if (s.abi_minor >= 6) s.algorithm->validate(s.plan, v);
      else
        for (const auto& t : s.plan.tasks) v.check_declared_split(t, s.plan.eval.split, who);
    } catch (const std::exception& e) {
      v.error(who + ": validation failed: " + e.what());
    }
  }
  return v.errors();
}

}  // namespace warmup
