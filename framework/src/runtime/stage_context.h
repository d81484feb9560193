// The host's StageContext: what an algorithm sees of the run while it executes one stage.
// Metrics and samples are buffered and written to the store in batched transactions.
#pragma once

#include <chrono>
#include <functional>

#include "store/store.h"
#include "warmup/algorithm.h"
#include "warmup/distributed.h"
#include "warmup/model.h"

namespace warmup {

struct StageSetup {
  int64_t run_id = 0;
  std::string stage_name;
  uint64_t seed = 0;
  std::vector<TaskRef> tasks;
  std::vector<WeightedReward> rewards;
  std::vector<TeacherRef> teachers;
  EvalSettings eval;
  ModelSpec model;
  std::filesystem::path run_dir;
  bool resuming = false;
  std::function<bool()> stop_requested;
  // The run's model, shared by its stages (loaded on first use; a stage that set an output model
  // makes the next stage load that one).
  std::shared_ptr<Policy>* policy = nullptr;
  // The ranks of a multi-process run (the "distributed" service); null in a one-process run.
  Distributed* distributed = nullptr;
};

// `store` null: a rank other than 0 of a multi-process run, whose metrics, samples, artifacts and
// datasets are dropped (rank 0 records the run; algorithms reduce what they report).
class HostStageContext final : public StageContext {
 public:
  HostStageContext(Store* store, StageSetup setup);
  ~HostStageContext() override;

  int64_t run_id() const override { return s_.run_id; }
  const std::string& stage_name() const override { return s_.stage_name; }
  uint64_t seed() const override { return s_.seed; }
  const std::vector<TaskRef>& tasks() const override { return s_.tasks; }
  const std::vector<WeightedReward>& rewards() const override { return s_.rewards; }
  const std::vector<TeacherRef>& teachers() const override { return s_.teachers; }
  const EvalSettings& eval() const override { return s_.eval; }
  const ModelSpec& model() const override { return s_.model; }
  std::filesystem::path run_dir() const override { return s_.run_dir; }
  std::filesystem::path checkpoint_dir() const override;
  bool resuming() const override { return s_.resuming; }

  void log(LogLevel level, std::string_view message) override;
  void metric(std::string_view key, int64_t step, double value) override;
  void sample(const SampleRecord& sample) override;
  void artifact(const std::filesystem::path& path, std::string_view name) override;
  std::string dataset(std::string_view task, std::string_view split,
                      const std::vector<Example>& examples) override;
  void set_output_model(const std::filesystem::path& dir) override { output_model_ = dir.string(); }
  void flush() override;
  bool stop_requested() const override { return s_.stop_requested && s_.stop_requested(); }
  void* service(std::string_view name) override;
  void discard_after(int64_t step) override;
  void progress(std::string_view label, int64_t done, int64_t total, std::string_view detail) override;

  const std::string& output_model() const { return output_model_; }
  // Last value of each metric key seen in this stage, for the end-of-run summary.
  const std::map<std::string, double>& last_metrics() const { return last_; }

 private:
  void maybe_flush();
  Store* store_;
  StageSetup s_;
  std::vector<MetricRow> metrics_;
  std::vector<SampleRecord> samples_;
  std::map<std::string, double> last_;
  std::string output_model_;
  std::chrono::steady_clock::time_point last_flush_;
};

// Digest of a list of examples: sha256 over canonical JSON lines (id, prompt, reference, metadata).
std::string examples_digest(const std::vector<Example>& examples);

}  // namespace warmup
