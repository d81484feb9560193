// evaluate: scores a split of each stage task through the stage's rewards and records samples and
// per-task metrics. Completions come from `completions = "reference"` (the gold answers: checks a
// task/reward pair end to end without a model), the stage's first teacher, or the stage's model
// (`completions = "model"`, sampled with the options below through the host's engine).
//
// Metrics (step 0): eval/<task>/reward_mean, eval/<task>/accuracy (where rewards report
// correctness), eval/<task>/<reward>_mean per reward part, eval/<task>/count; with `group_by`
// (a metadata key such as K&K's n_people) also eval/<task>/<key>=<value>/{accuracy,reward_mean,count}.
#include <algorithm>
#include <cmath>

#include "warmup/model.h"
#include "warmup/sdk.h"

namespace {

class Evaluate final : public warmup::Algorithm {
 public:
  explicit Evaluate(const warmup::PluginInit& init) {
    warmup::Options o(init);
    completions_ = o.get<std::string>("completions", "reference");  // reference | teacher | model
    // Sampling for completions = "model" (the paper's evaluation: 0.7, 0.95, stop strings below).
    sample_.temperature = o.get<double>("temperature", 0.7);
    sample_.top_p = o.get<double>("top_p", 0.95);
    sample_.top_k = o.get<int64_t>("top_k", 0);
    sample_.max_new_tokens = o.get<int64_t>("max_new_tokens", 1024);
    sample_.stop = o.get<std::vector<std::string>>("stop", {"Question:", "Assistant:", "User:"});
    sample_.seed = uint64_t(o.get<int64_t>("seed", int64_t(init.seed)));
    max_samples_ = o.get<int64_t>("max_samples", -1);  // samples stored per task; -1 = all
    // completions = "reference": the text scored, with {reference} replaced by the gold answer
    // (e.g. "...</think>\n<answer>{reference}</answer>" to check a reward's maximum).
    reference_template_ = o.get<std::string>("reference_template", "{reference}");
    group_by_ = o.get<std::string>("group_by", "");  // metadata key for per-group metrics
    if (completions_ != "reference" && completions_ != "teacher" && completions_ != "model")
      o.fail("completions", "must be reference, teacher or model");
    o.finish();
  }

  void run(warmup::StageContext& ctx) override {
    if (ctx.tasks().empty()) throw warmup::ConfigError("stage '" + ctx.stage_name() + "' lists no tasks");
    if (ctx.rewards().empty()) throw warmup::ConfigError("stage '" + ctx.stage_name() + "' lists no rewards");
    if (completions_ == "teacher" && ctx.teachers().empty())
      throw warmup::ConfigError("stage '" + ctx.stage_name() + "': completions = \"teacher\" needs a teacher");
    const warmup::EvalSettings& ev = ctx.eval();
    for (const auto& t : ctx.tasks()) {
      std::vector<warmup::Example> examples = t.task->examples(ev.split);
      if (ev.limit > 0 && int64_t(examples.size()) > ev.limit) examples.resize(size_t(ev.limit));
      std::string digest = ctx.dataset(t.name, ev.split, examples);
      ctx.log(warmup::LogLevel::kInfo, "scoring " + std::to_string(examples.size()) + " x " +
                                           std::to_string(ev.num_samples) + " of " + t.name + "/" +
                                           ev.split + " (digest " + digest.substr(0, 12) + ")");
      std::vector<std::vector<warmup::Completion>> outs = complete(ctx, examples, int(ev.num_samples));
      score_task(ctx, t.name, examples, outs);
      if (ctx.stop_requested()) return;
    }
  }

 private:
  std::vector<std::vector<warmup::Completion>> complete(warmup::StageContext& ctx,
                                                        const std::vector<warmup::Example>& ex, int n) {
    if (completions_ == "teacher") return ctx.teachers().front().teacher->complete(ex, n);
    if (completions_ == "model") {
      std::vector<std::string> prompts;
      for (const auto& e : ex) prompts.push_back(e.prompt);
      warmup::SampleOptions so = sample_;
      so.n = n;
      return warmup::policy(ctx).generate(prompts, so);
    }
    std::vector<std::vector<warmup::Completion>> out;
    for (const auto& e : ex) {
      std::string text = reference_template_;
      for (size_t at; (at = text.find("{reference}")) != std::string::npos;) text.replace(at, 11, e.reference);
      out.emplace_back(size_t(n), warmup::Completion{text, "stop", -1});
    }
    return out;
  }

  void score_task(warmup::StageContext& ctx, const std::string& task,
                  const std::vector<warmup::Example>& examples,
                  const std::vector<std::vector<warmup::Completion>>& outs) {
    double total = 0;
    int64_t n = 0, n_correct = 0, n_known = 0, stored = 0;
    std::map<std::string, double> part_sums;
    struct Group {
      double total = 0;
      int64_t n = 0, correct = 0, known = 0;
    };
    std::map<std::string, Group> groups;
    for (size_t i = 0; i < examples.size(); ++i) {
      for (const auto& c : outs.at(i)) {
        warmup::Score s = warmup::score_all(ctx.rewards(), examples[i], c.text);
        total += s.total, ++n;
        for (const auto& [k, v] : s.parts) part_sums[k] += v;
        if (s.correct) ++n_known, n_correct += *s.correct;
        if (!group_by_.empty() && examples[i].metadata.contains(group_by_)) {
          const auto& g = examples[i].metadata[group_by_];
          Group& grp = groups[group_by_ + "=" + (g.is_string() ? g.get<std::string>() : g.dump())];
          grp.total += s.total, ++grp.n;
          if (s.correct) ++grp.known, grp.correct += *s.correct;
        }
        if (max_samples_ < 0 || stored < max_samples_) {
          warmup::SampleRecord r;
          r.task = task, r.example_id = examples[i].id, r.prompt = examples[i].prompt;
          r.completion = c.text, r.completion_tokens = c.tokens, r.finish_reason = c.finish_reason;
          r.reward = s.total, r.rewards = s.parts, r.correct = s.correct;
          ctx.sample(r);
          ++stored;
        }
      }
      if (ctx.stop_requested()) break;
    }
    const std::string p = "eval/" + task + "/";
    ctx.metric(p + "count", 0, double(n));
    ctx.metric(p + "reward_mean", 0, n ? total / double(n) : std::nan(""));
    if (n_known) ctx.metric(p + "accuracy", 0, double(n_correct) / double(n_known));
    for (const auto& [k, v] : part_sums) ctx.metric(p + k + "_mean", 0, v / double(n));
    for (const auto& [g, grp] : groups) {
      ctx.metric(p + g + "/count", 0, double(grp.n));
      ctx.metric(p + g + "/reward_mean", 0, grp.total / double(grp.n));
      if (grp.known) ctx.metric(p + g + "/accuracy", 0, double(grp.correct) / double(grp.known));
    }
    ctx.log(warmup::LogLevel::kInfo,
            task + ": " + std::to_string(n) + " completions, reward mean " +
                std::to_string(n ? total / double(n) : 0.0) +
                (n_known ? ", accuracy " + std::to_string(double(n_correct) / double(n_known)) : ""));
  }

  std::string completions_, reference_template_, group_by_;
  warmup::SampleOptions sample_;
  int64_t max_samples_;
};

}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Algorithm, Evaluate>(
    "evaluate", "0.1.0", "score a task split through the stage rewards (gold answers or a teacher)"))
