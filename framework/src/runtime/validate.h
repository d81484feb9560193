// Validation before a run starts (`warmup run --dry-run` and the start of every run): everything
// that can be checked without running, all problems collected so one attempt names each of them.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "config/experiment.h"
#include "warmup/algorithm.h"

namespace warmup {

// One stage still to run: its plan, its algorithm object and the ABI minor the algorithm's
// library was built with (Algorithm::validate exists from minor 6 on).
struct StageToValidate {
  StagePlan plan;
  Algorithm* algorithm = nullptr;
  uint32_t abi_minor = 0;
};

// Host checks ([model] device, [model] path: config.json, safetensors headers and tokenizer; the
// store's folder is writable) and each stage's Algorithm::validate (or, for algorithms built
// before ABI 1.6, each task's eval split). Returns the problems, one line each; never throws for
// bad input.
std::vector<std::string> validate_experiment(const ExperimentConfig& cfg, const std::vector<StageToValidate>& stages,
                                             const std::filesystem::path& store);

}  // namespace warmup
