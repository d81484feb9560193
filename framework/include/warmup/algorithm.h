// Algorithm interface (kind "algorithm", interface warmup.algorithm v1) and the StageContext the
// host hands it: one algorithm object runs one stage of an experiment (evaluate, sft, grpo...).
// The host owns the store, plugins, signals and run directory; the algorithm only uses them here.
#pragma once

#include <cstdint>
#include <exception>
#include <filesystem>
#include <map>
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

  // ABI 1.6: progress of a long loop (optimizer steps, examples) for the host's progress bar,
  // drawn only on a terminal (never in pipes, files or CI); cheap to call every iteration.
  // `detail` follows the counts, e.g. "loss 0.412 | ETA 3m05s". done == total removes the bar.
  virtual void progress(std::string_view /*label*/, int64_t /*done*/, int64_t /*total*/,
                        std::string_view /*detail*/) {}
};

// ABI 1.6: what a stage will be given, known before anything runs (see Algorithm::validate).
struct StagePlan {
  std::string stage_name;
  std::vector<TaskRef> tasks;
  std::vector<WeightedReward> rewards;
  std::vector<TeacherRef> teachers;
  EvalSettings eval;
  ModelSpec model;  // model.path is empty when an earlier stage of the run produces the model
};

// ABI 1.6: the problems found by validation. Plugins report each with error() rather than
// throwing, so one `warmup run --dry-run` names all of them. Messages name the place: the file
// and line, or the option ("stages.x.sft.data: /p/train.jsonl does not exist").
class Validation {
 public:
  void error(std::string message) { errors_.push_back(std::move(message)); }
  const std::vector<std::string>& errors() const { return errors_; }

  // Loads `split` of `task` (once per task object and split, whichever stage asks) and reports
  // what examples() throws, or an empty split, as "<who>: task '<name>' split '<split>': ...".
  // Returns whether the split loaded with at least one example.
  bool check_split(const TaskRef& task, const std::string& split, std::string_view who) {
    auto key = std::make_pair(static_cast<const void*>(task.task), split);
    if (auto it = checked_.find(key); it != checked_.end()) return it->second;
    std::string problem;
    try {
      if (task.task->examples(split).empty()) problem = "has no examples";
    } catch (const std::exception& e) {
      problem = e.what();
    } catch (...) {
      problem = "unknown error";
    }
    if (!problem.empty())
      error(std::string(who) + ": task '" + task.name + "' split '" + split + "': " + problem);
    return checked_[key] = problem.empty();
  }
  // check_split when the task lists `split` in splits() (a split it offers must load); else
  // nothing: whether the stage needs it is the algorithm's to say.
  bool check_declared_split(const TaskRef& task, const std::string& split, std::string_view who) {
    std::vector<std::string> offered;
    try {
      offered = task.task->splits();
    } catch (...) {
      return check_split(task, split, who);
    }
    for (const auto& s : offered)
      if (s == split) return check_split(task, split, who);
    return true;
  }

 private:
  std::vector<std::string> errors_;
  std::map<std::pair<const void*, std::string>, bool> checked_;
};

class Algorithm {
 public:
  static constexpr const char* kKind = "algorithm";
  static constexpr const char* kInterfaceId = "warmup.algorithm";
  static constexpr uint32_t kInterfaceVersion = 1;

  virtual ~Algorithm() = default;
  // Runs the stage. Throwing fails the stage and the run with the exception's message.
  virtual void run(StageContext& ctx) = 0;

  // ABI 1.6: checks, before any stage runs, everything run() will read that can be checked
  // without running: the task splits it uses (Validation::check_split), its own input files
  // (exist; first record parses). Called by `warmup run --dry-run` and at the start of every run,
  // for each stage still to run. Reports problems through `v`; throws only on a bug. The default
  // checks the stage's eval split of every task that offers it (Validation::check_declared_split).
  // Files an earlier stage writes ({run_dir}/...) do not exist yet and are not checked.
  virtual void validate(const StagePlan& plan, Validation& v) {
    for (const auto& t : plan.tasks) v.check_declared_split(t, plan.eval.split, "stages." + plan.stage_name);
  }
};

}  // namespace warmup
