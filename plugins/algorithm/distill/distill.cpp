// distill: builds a supervised fine-tuning dataset from a teacher. For every example of the
// stage's tasks (split from [stages.eval]), asks the stage's teacher for `n` completions, scores
// them with the stage's rewards, keeps them by `keep` (all | format | correct), and writes JSONL
// lines {id, source_id, task, prompt, completion, reward, rewards, correct, teacher} to
// <run dir>/<output>, registered as an artifact (with sha256) and as a dataset.
//
// Metrics: distill/<task>/{completions,kept,kept_fraction,reward_mean,accuracy}.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "warmup/durable_io.h"

#include "warmup/sdk.h"

namespace {

class Distill final : public warmup::Algorithm {
 public:
  explicit Distill(const warmup::PluginInit& init) {
    warmup::Options o(init);
    n_ = o.get<int64_t>("n", 1, warmup::at_least(1).at_most(1024));  // completions per example
    keep_ = o.get<std::string>("keep", "all");                // all | format | correct
    output_ = o.get<std::string>("output", "sft.jsonl");      // file name in the run directory
    format_part_ = o.get<std::string>("format_part", "format");  // breakdown key that marks well-formed
    batch_ = o.get<int64_t>("batch", 64, warmup::at_least(1).at_most(1 << 20));  // examples per teacher call
    // A plain file name: the file stays in the run directory.
    if (!warmup::is_safe_name(output_))
      o.fail("output", std::string("must be a file name of ") + warmup::kSafeNameRule + ", got '" + output_ + "'");
    if (keep_ != "all" && keep_ != "format" && keep_ != "correct") o.fail("keep", "must be all, format or correct");
    o.finish();
  }

  // Every task's eval split loads (distill reads it); the stage has a teacher and a task.
  void validate(const warmup::StagePlan& plan, warmup::Validation& v) override {
    const std::string who = "stages." + plan.stage_name + ".distill";
    if (plan.teachers.empty()) v.error(who + ": distill needs a teacher");
    if (plan.tasks.empty()) v.error(who + ": distill needs a task");
    for (const auto& t : plan.tasks) v.check_split(t, plan.eval.split, who);
  }

  void run(warmup::StageContext& ctx) override {
    // (no LibTorch here, so not warmup/distributed.h: torchrun's WORLD_SIZE says as much)
    if (int w = std::getenv("WORLD_SIZE") ? std::atoi(std::getenv("WORLD_SIZE")) : 1; w > 1)
      throw warmup::ConfigError("stage '" + ctx.stage_name() + "' (distill): the run has " + std::to_string(w) +
                                " ranks; distill is bound by its teacher, not by this machine: run it with one process (a run of its own), then SFT on its output with several");
    if (ctx.teachers().empty()) throw warmup::ConfigError("stage '" + ctx.stage_name() + "': distill needs a teacher");
    if (ctx.tasks().empty()) throw warmup::ConfigError("stage '" + ctx.stage_name() + "': distill needs a task");
    const auto& teacher = ctx.teachers().front();
    // Save-as-you-go: after each teacher batch the output is flushed and `progress.json` (in the
    // stage's checkpoint folder) records how far it got, so a stopped stage resumes after the last
    // finished batch instead of asking the teacher again. Metrics are written once per task.
    if (ctx.resuming()) ctx.discard_after(-1);
    const auto path = ctx.run_dir() / output_;
    const auto state_file = ctx.checkpoint_dir() / "progress.json";
    nlohmann::json state = resume_state(ctx, path, state_file);
    std::ofstream out(path, state.empty() ? std::ios::trunc : std::ios::app);
    if (!out) throw std::runtime_error(path.string() + ": cannot write");
    std::vector<warmup::Example> kept_examples;  // for the dataset digest: one entry per kept line
    for (size_t ti = 0; ti < ctx.tasks().size(); ++ti) {
      const auto& t = ctx.tasks()[ti];
      auto examples = t.task->examples(ctx.eval().split);
      if (ctx.eval().limit > 0 && int64_t(examples.size()) > ctx.eval().limit) examples.resize(size_t(ctx.eval().limit));
      size_t start = 0;
      nlohmann::json c = {{"total", 0}, {"kept", 0}, {"correct", 0}, {"known", 0}, {"reward_sum", 0.0}};
      if (!state.empty()) {
        size_t done_task = state.at("task").get<size_t>();
        if (ti < done_task) start = examples.size(), c = state.at("finished").at(t.name);
        else if (ti == done_task) start = std::min(examples.size(), state.at("next").get<size_t>()), c = state.at("counters");
        restore_kept(path, t.name, examples, kept_examples);
      }
      for (; start < examples.size(); start += size_t(batch_)) {
        std::vector<warmup::Example> batch(examples.begin() + long(start),
                                           examples.begin() + long(std::min(examples.size(), start + size_t(batch_))));
        auto outs = teacher.teacher->complete(batch, int(n_));
        for (size_t i = 0; i < batch.size(); ++i) {
          for (size_t k = 0; k < outs.at(i).size(); ++k) {
            const auto& cm = outs[i][k];
            warmup::Score s = warmup::score_all(ctx.rewards(), batch[i], cm.text);
            c["total"] = c["total"].get<int64_t>() + 1;
            c["reward_sum"] = c["reward_sum"].get<double>() + s.total;
            if (s.correct) c["known"] = c["known"].get<int64_t>() + 1, c["correct"] = c["correct"].get<int64_t>() + *s.correct;
            if (!keeps(s)) continue;
            c["kept"] = c["kept"].get<int64_t>() + 1;
            nlohmann::json line = {{"id", batch[i].id + "#" + std::to_string(k)}, {"source_id", batch[i].id},
                                   {"task", t.name}, {"prompt", batch[i].prompt}, {"completion", cm.text},
                                   {"reward", s.total}, {"rewards", s.parts},
                                   {"correct", s.correct ? nlohmann::json(*s.correct) : nlohmann::json()},
                                   {"teacher", teacher.name}, {"finish_reason", cm.finish_reason}};
            out << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
            warmup::Example e = batch[i];
            e.reference = cm.text;
            kept_examples.push_back(std::move(e));
          }
        }
        out.flush();
        if (!out) throw std::runtime_error(path.string() + ": write failed");
        state["task"] = ti, state["next"] = start + size_t(batch_), state["counters"] = c;
        state["bytes"] = uint64_t(std::filesystem::file_size(path));  // not tellp(): 0 in append mode before a write
        warmup::durable::write_file_durable(state_file, state.dump());
        ctx.progress(t.name, int64_t(std::min(examples.size(), start + size_t(batch_))), int64_t(examples.size()), "");
        if (ctx.stop_requested()) return;
      }
      state["finished"][t.name] = c;
      std::string p = "distill/" + t.name + "/";
      int64_t total = c["total"], kept = c["kept"], known = c["known"], correct = c["correct"];
      ctx.metric(p + "completions", 0, double(total));
      ctx.metric(p + "kept", 0, double(kept));
      ctx.metric(p + "kept_fraction", 0, total ? double(kept) / double(total) : 0.0);
      ctx.metric(p + "reward_mean", 0, total ? c["reward_sum"].get<double>() / double(total) : 0.0);
      if (known) ctx.metric(p + "accuracy", 0, double(correct) / double(known));
      ctx.log(warmup::LogLevel::kInfo, t.name + ": kept " + std::to_string(kept) + " of " + std::to_string(total) +
                                           " completions (" + keep_ + ")");
    }
    out.close();
    ctx.artifact(path, output_);
    ctx.dataset("sft", output_, kept_examples);
  }

 private:
  // A resumed stage's progress (empty: start over): the output is cut back to the bytes of the
  // last finished batch, which the state records.
  static nlohmann::json resume_state(warmup::StageContext& ctx, const std::filesystem::path& out,
                                     const std::filesystem::path& state_file) {
    std::error_code ec;
    if (!ctx.resuming() || !std::filesystem::exists(state_file, ec)) return nlohmann::json::object();
    std::ifstream in(state_file);
    nlohmann::json st = nlohmann::json::parse(in, nullptr, false);
    if (st.is_discarded() || !st.is_object() || !st.contains("bytes")) return nlohmann::json::object();
    uint64_t bytes = st["bytes"].get<uint64_t>();
    if (std::filesystem::file_size(out, ec) < bytes || ec) return nlohmann::json::object();
    std::filesystem::resize_file(out, bytes);
    if (!st.contains("finished")) st["finished"] = nlohmann::json::object();
    ctx.log(warmup::LogLevel::kInfo, "resuming after the stopped attempt's last batch (" + std::to_string(bytes) +
                                         " bytes of " + out.filename().string() + " kept)");
    return st;
  }

  // The kept lines of `task` already in the output, as dataset entries (their examples by id).
  static void restore_kept(const std::filesystem::path& out, const std::string& task,
                           const std::vector<warmup::Example>& examples, std::vector<warmup::Example>& kept) {
    std::map<std::string, const warmup::Example*> by_id;
    for (const auto& e : examples) by_id[e.id] = &e;
    std::ifstream in(out);
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || j.value("task", "") != task) continue;
      auto it = by_id.find(j.value("source_id", ""));
      if (it == by_id.end()) continue;
      warmup::Example e = *it->second;
      e.reference = j.value("completion", "");
      kept.push_back(std::move(e));
    }
  }

  bool keeps(const warmup::Score& s) const {
    if (keep_ == "all") return true;
    if (keep_ == "correct") return s.correct.value_or(false);
    for (const auto& [k, v] : s.parts)  // "<reward>/<format_part>" > 0 for every reward that has one
      if (k.size() > format_part_.size() && k.compare(k.size() - format_part_.size(), format_part_.size(), format_part_) == 0 &&
          k[k.size() - format_part_.size() - 1] == '/' && v <= 0)
        return false;
    return true;
  }

  int64_t n_, batch_;
  std::string keep_, output_, format_part_;
};

}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Algorithm, Distill>(
    "distill", "0.1.0", "teacher completions -> scored, filtered JSONL SFT dataset (an artifact)"))
