// Algorithm interface (kind "algorithm", interface warmup.algorithm v1) and the StageContext the
// host hands it: one algorithm object runs one stage of an experiment (evaluate, sft, grpo...).
// The host owns the store, plugins, signals and run directory; the algorithm only uses them here.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "reward.h"
#include "task.h"
#include "teacher.h"
#include "types.h"

namespace warmup {

// [model] of the experiment, as the stage sees it (a previous stage may have replaced `path`).
struct ModelSpec {
  std::string path;    // Hugging Face model directory; empty when the stage needs no model
  std::string dtype;   // "auto" | "float32" | "bfloat16" | "float16"
  std::string device;  // "auto" | "cpu" | "cuda" | "cuda:N"
  nlohmann::json extra = nlohmann::json::object();  // any other [model] keys, for model plugins
};

// [stages.eval] of the stage.
struct EvalSettings {
  std::string split = "test";  // which split to score
  int64_t limit = 0;           // first N examples per task; 0 = all
  int64_t num_samples = 1;     // completions per example
  int64_t every_steps = 0;     // training algorithms: evaluate every N steps; 0 = only at the end
};

struct TaskRef {
  std::string name;  // instance name in the experiment
  Task* task = nullptr;
};

struct TeacherRef {
  std::string name;
  Teacher* teacher = nullptr;
};

class StageContext {
 public:
  virtual ~StageContext() = default;

  // --- what the stage is
  virtual int64_t run_id() const = 0;
  virtual const std::string& stage_name() const = 0;
  virtual uint64_t seed() const = 0;  // experiment seed
  virtual const std::vector<TaskRef>& tasks() const = 0;
  virtual const std::vector<WeightedReward>& rewards() const = 0;
  virtual const std::vector<TeacherRef>& teachers() const = 0;
  virtual const EvalSettings& eval() const = 0;
  virtual const ModelSpec& model() const = 0;

  // --- where it writes
  virtual std::filesystem::path run_dir() const = 0;         // exists; unique to the run
  virtual std::filesystem::path checkpoint_dir() const = 0;  // exists; unique to the stage
  virtual bool resuming() const = 0;  // the run is resumed: look for checkpoints first

  // --- host services (buffered, batched into the store)
  virtual void log(LogLevel level, std::string_view message) = 0;
  virtual void metric(std::string_view key, int64_t step, double value) = 0;
  virtual void sample(const SampleRecord& sample) = 0;
  // Registers a file or directory produced by the stage (sha256 and size are computed here).
  virtual void artifact(const std::filesystem::path& path, std::string_view name) = 0;
  // Records the examples used from a task split; returns their digest (sha256, hex).
  virtual std::string dataset(std::string_view task, std::string_view split,
                              const std::vector<Example>& examples) = 0;
  // A later stage should use this model directory instead of [model].path.
  virtual void set_output_model(const std::filesystem::path& dir) = 0;
  // Writes buffered metrics and samples now (done automatically at stage end).
  virtual void flush() = 0;

  // SIGINT/SIGTERM received: save what is needed and return from run() soon.
  virtual bool stop_requested() const = 0;

  // ABI 1.2: a host service by name, or null. "policy" is the stage's model (see model.h),
  // loaded on first use from [model] or the previous stage's output.
  virtual void* service(std::string_view name) = 0;

  // ABI 1.3: a resumed stage continues after `step`: drops this stage's metrics and samples
  // recorded for later steps by the interrupted attempt (so no step is stored twice). A stage
  // without checkpoints that starts over (evaluate, distill) calls discard_after(-1): drops all.
  virtual void discard_after(int64_t step) = 0;
};

class Algorithm {
 public:
  static constexpr const char* kKind = "algorithm";
  static constexpr const char* kInterfaceId = "warmup.algorithm";
  static constexpr uint32_t kInterfaceVersion = 1;

  virtual ~Algorithm() = default;
  // Runs the stage. Throwing fails the stage and the run with the exception's message.
  virtual void run(StageContext& ctx) = 0;
};

}  // namespace warmup
