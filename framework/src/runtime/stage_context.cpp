#include "runtime/stage_context.h"

#include "runtime/host_policy.h"
#include "util/log.h"
#include "util/process.h"
#include "util/sha256.h"

namespace warmup {
namespace fs = std::filesystem;
namespace {
constexpr size_t kFlushRows = 512;        // write when this many rows are buffered
constexpr double kFlushSeconds = 2.0;     // ... or this long after the last write
}  // namespace

std::string examples_digest(const std::vector<Example>& examples) {
  Sha256 h;
  for (const auto& e : examples) {
    nlohmann::json j = {{"id", e.id}, {"prompt", e.prompt}, {"reference", e.reference},
                        {"metadata", e.metadata}};
    h.update(j.dump()).update("\n");
  }
  return h.hex();
}

HostStageContext::HostStageContext(Store* store, StageSetup setup)
    : store_(store), s_(std::move(setup)), last_flush_(std::chrono::steady_clock::now()) {}

HostStageContext::~HostStageContext() {
  try {
    flush();
  } catch (const std::exception& e) {
    log_line(LogLevel::kError, s_.stage_name, std::string("could not write buffered rows: ") + e.what());
  }
}

fs::path HostStageContext::checkpoint_dir() const {
  fs::path d = s_.run_dir / "checkpoints" / s_.stage_name;
  fs::create_directories(d);
  return d;
}

void HostStageContext::log(LogLevel level, std::string_view message) {
  log_line(level, s_.stage_name, message);
}

void HostStageContext::progress(std::string_view label, int64_t done, int64_t total, std::string_view detail) {
  log_progress(s_.stage_name, label, done, total, detail);
}

void HostStageContext::metric(std::string_view key, int64_t step, double value) {
  if (!store_) return;
  metrics_.push_back({s_.stage_name, std::string(key), step, value, unix_now()});
  last_[std::string(key)] = value;
  maybe_flush();
}

void HostStageContext::sample(const SampleRecord& sample) {
  if (!store_) return;
  samples_.push_back(sample);
  maybe_flush();
}

void HostStageContext::maybe_flush() {
  double since = std::chrono::duration<double>(std::chrono::steady_clock::now() - last_flush_).count();
  if (metrics_.size() + samples_.size() >= kFlushRows || since >= kFlushSeconds) flush();
}

void HostStageContext::flush() {
  if (!store_) return;
  store_->write_metrics(s_.run_id, metrics_);
  store_->write_samples(s_.run_id, s_.stage_name, samples_);
  metrics_.clear();
  samples_.clear();
  last_flush_ = std::chrono::steady_clock::now();
}

void HostStageContext::discard_after(int64_t step) {
  if (!store_) return;
  flush();
  store_->discard_after(s_.run_id, s_.stage_name, step);
}

void HostStageContext::artifact(const fs::path& path, std::string_view name) {
  if (!store_) return;
  fs::path abs = fs::absolute(path);
  int64_t bytes = 0;
  if (fs::is_directory(abs)) {
    for (const auto& e : fs::recursive_directory_iterator(abs))
      if (e.is_regular_file()) bytes += int64_t(e.file_size());
  } else {
    bytes = int64_t(fs::file_size(abs));
  }
  store_->add_artifact(s_.run_id, s_.stage_name, std::string(name), abs.string(), bytes, sha256_path(abs));
}

void* HostStageContext::service(std::string_view name) {
  if (name == Distributed::kServiceName) return s_.distributed;
  if (name != "policy" || !s_.policy) return nullptr;
  if (!*s_.policy) {
    if (s_.model.path.empty()) return nullptr;
    log(LogLevel::kInfo, "loading model " + s_.model.path);
    *s_.policy = std::make_shared<HostPolicy>(s_.model);
  }
  return s_.policy->get();
}

std::string HostStageContext::dataset(std::string_view task, std::string_view split,
                                      const std::vector<Example>& examples) {
  std::string digest = examples_digest(examples);
  if (!store_) return digest;
  store_->add_dataset(s_.run_id, s_.stage_name, std::string(task), std::string(split),
                     int64_t(examples.size()), digest);
  return digest;
}

}  // namespace warmup
