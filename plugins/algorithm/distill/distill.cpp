// distill: builds a supervised fine-tuning dataset from a teacher. For every example of the
// stage's tasks (split from [stages.eval]), asks the stage's teacher for `n` completions, scores
// them with the stage's rewards, keeps them by `keep` (all | format | correct), and writes JSONL
// lines {id, source_id, task, prompt, completion, reward, rewards, correct, teacher} to
// <run dir>/<output>, registered as an artifact (with sha256) and as a dataset.
//
// Metrics: distill/<task>/{completions,kept,kept_fraction,reward_mean,accuracy}.
#include <fstream>

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

  void run(warmup::StageContext& ctx) override {
    if (ctx.teachers().empty()) throw warmup::ConfigError("stage '" + ctx.stage_name() + "': distill needs a teacher");
    if (ctx.tasks().empty()) throw warmup::ConfigError("stage '" + ctx.stage_name() + "': distill needs a task");
    const auto& teacher = ctx.teachers().front();
    // No checkpoints: a resumed stage starts over (the JSONL file is rewritten, the dataset and
    // artifact rows replaced), so it first drops the metrics the killed attempt stored.
    if (ctx.resuming()) ctx.discard_after(-1);
    auto path = ctx.run_dir() / output_;
    std::ofstream out(path);
    if (!out) throw std::runtime_error(path.string() + ": cannot write");
    std::vector<warmup::Example> kept_examples;  // for the dataset digest: one entry per kept line
    for (const auto& t : ctx.tasks()) {
      auto examples = t.task->examples(ctx.eval().split);
      if (ctx.eval().limit > 0 && int64_t(examples.size()) > ctx.eval().limit) examples.resize(size_t(ctx.eval().limit));
      int64_t total = 0, kept = 0, correct = 0, known = 0;
      double reward_sum = 0;
      for (size_t start = 0; start < examples.size(); start += size_t(batch_)) {
        std::vector<warmup::Example> batch(examples.begin() + long(start),
                                           examples.begin() + long(std::min(examples.size(), start + size_t(batch_))));
        auto outs = teacher.teacher->complete(batch, int(n_));
        for (size_t i = 0; i < batch.size(); ++i) {
          for (size_t k = 0; k < outs.at(i).size(); ++k) {
            const auto& c = outs[i][k];
            warmup::Score s = warmup::score_all(ctx.rewards(), batch[i], c.text);
            ++total, reward_sum += s.total;
            if (s.correct) ++known, correct += *s.correct;
            if (!keeps(s)) continue;
            ++kept;
            nlohmann::json line = {{"id", batch[i].id + "#" + std::to_string(k)}, {"source_id", batch[i].id},
                                   {"task", t.name}, {"prompt", batch[i].prompt}, {"completion", c.text},
                                   {"reward", s.total}, {"rewards", s.parts},
                                   {"correct", s.correct ? nlohmann::json(*s.correct) : nlohmann::json()},
                                   {"teacher", teacher.name}, {"finish_reason", c.finish_reason}};
            out << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
            warmup::Example e = batch[i];
            e.reference = c.text;
            kept_examples.push_back(std::move(e));
          }
        }
        if (ctx.stop_requested()) return;
      }
      std::string p = "distill/" + t.name + "/";
      ctx.metric(p + "completions", 0, double(total));
      ctx.metric(p + "kept", 0, double(kept));
      ctx.metric(p + "kept_fraction", 0, total ? double(kept) / double(total) : 0.0);
      ctx.metric(p + "reward_mean", 0, total ? reward_sum / double(total) : 0.0);
      if (known) ctx.metric(p + "accuracy", 0, double(correct) / double(known));
      ctx.log(warmup::LogLevel::kInfo, t.name + ": kept " + std::to_string(kept) + " of " + std::to_string(total) +
                                           " completions (" + keep_ + ")");
    }
    out.close();
    ctx.artifact(path, output_);
    ctx.dataset("sft", output_, kept_examples);
  }

 private:
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
