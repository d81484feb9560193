// evaluate: scores a split of each stage task through the stage's rewards (or the subset named in
// `task_rewards`) and records every completion as a sample and the paper's statistics as metrics.
// Completions come from `completions = "reference"` (the gold answers through `reference_template`:
// checks a task/reward pair end to end without a model), the stage's first teacher, or the
// stage's model (`completions = "model"`, sampled through the host's engine with prompt +
// completion capped at `max_model_len`).
//
// Completions a reward could not judge (Score::errored) are errors, not wrong answers: counted in
// eval/<task>/errors, left out of the means, and past `max_error_rate` the stage fails.
// Metrics (step 0), see eval_metrics.h: eval/<task>/{count, errors, error_rate, reward_mean, accuracy, accuracy_mean,
// accuracy_std, response_tokens_mean, pass@k, <reward>_mean}; with `group_by` (metadata keys such
// as n_people, subject, level) the same per group under eval/<task>/<key>=<value>/.
// Does not retry failed generations or rescore stored runs (`warmup score` rescoring is the CLI's).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <set>
#include <optional>
#include <thread>

#include "eval_metrics.h"
#include "eval_progress.h"
#include "warmup/distributed.h"
#include "warmup/training.h"
#include "warmup/model.h"
#include "warmup/sdk.h"

namespace {

// A string option that may also be given as a list of strings (`group_by = "n_people"` or
// `group_by = ["subject", "level"]`); empty strings are dropped.
std::vector<std::string> string_list(warmup::Options& o, const char* key, std::vector<std::string> fallback) {
  std::vector<std::string> v;
  try {
    v = o.get<std::vector<std::string>>(key, std::move(fallback));
  } catch (const warmup::ConfigError&) {
    v = {o.get<std::string>(key, "")};
  }
  v.erase(std::remove(v.begin(), v.end(), std::string()), v.end());
  return v;
}

std::string group_value(const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

class Evaluate final : public warmup::Algorithm {
 public:
  explicit Evaluate(const warmup::PluginInit& init) {
    warmup::Options o(init);
    completions_ = o.get<std::string>("completions", "reference");  // reference | teacher | model
    // Sampling for completions = "model" (the paper's evaluation: 0.7, 0.95, stop strings below).
    sample_.temperature = o.get<double>("temperature", 0.7, warmup::at_least(0));  // 0 = greedy
    sample_.top_p = o.get<double>("top_p", 0.95, warmup::above(0).at_most(1));
    sample_.top_k = o.get<int64_t>("top_k", 0, warmup::at_least(-1));
    // Completion cap in tokens; 0 = whatever max_model_len leaves after the prompt.
    const warmup::Bounds tokens = warmup::fits_in_memory(0, 16, "tokens of 16 bytes");
    max_new_tokens_ = o.get<int64_t>("max_new_tokens", 1024, tokens);
    // Prompt + completion cap in tokens (the paper: 4096); 0 = the model's max positions.
    max_model_len_ = o.get<int64_t>("max_model_len", 0, tokens);
    sample_.stop = o.get<std::vector<std::string>>("stop", {"Question:", "Assistant:", "User:"});
    sample_.seed = uint64_t(o.get<int64_t>("seed", int64_t(init.seed)));
    max_samples_ = o.get<int64_t>("max_samples", -1, warmup::at_least(-1));  // samples stored per task; -1 = all
    // Examples generated, scored and saved per chunk (a stopped stage resumes after the last saved
    // chunk, eval_progress.h); 0 = a task's whole split in one engine call.
    save_every_ = o.get<int64_t>("save_every", 64, warmup::at_least(0));
    // completions = "reference": the text scored, {reference} replaced by the gold answer
    // (e.g. "...</think>\n<answer>{reference}</answer>"). A list gives sample j template j % size.
    reference_templates_ = string_list(o, "reference_template", {"{reference}"});
    group_by_ = string_list(o, "group_by", {});  // metadata keys for per-group metrics
    pass_at_k_ = o.get<std::vector<int64_t>>("pass_at_k", {}, warmup::at_least(1).at_most(1024, "(eval.num_samples is at most 1024)"));  // k values of pass@k (each <= num_samples)
    // threads scoring completions (rewards are thread-safe); `score_workers` is its old name
    workers_ = o.get<int64_t>(o.has("score_workers") && !o.has("reward_workers") ? "score_workers" : "reward_workers", 4,
                              warmup::at_least(1).at_most(1024));
    // Fraction of a task's completions the verifier may fail to judge (RewardStatus::kError: not
    // wrong answers, left out of the accuracy) before the stage fails; any is warned about.
    max_error_rate_ = o.get<double>("max_error_rate", 0.01, warmup::at_least(0).at_most(1));
    // task_rewards = { <task> = ["<reward>", ...] }: the stage rewards that score that task
    // (tasks not listed: all of the stage's rewards).
    toml::table raw = toml::parse(init.config_toml);
    if (const toml::node* n = raw.get("task_rewards")) {
      if (!n->is_table()) o.fail("task_rewards", "must be a table: task = [\"reward\", ...]");
      for (const auto& [k, v] : *n->as_table())
        task_rewards_[std::string(k.str())] =
            o.require<std::vector<std::string>>("task_rewards." + std::string(k.str()));
    }
    if (completions_ != "reference" && completions_ != "teacher" && completions_ != "model")
      o.fail("completions", "must be reference, teacher or model");
    if (reference_templates_.empty()) o.fail("reference_template", "must not be empty");
    o.finish();
  }

  void run(warmup::StageContext& ctx) override {
    if (ctx.tasks().empty()) throw warmup::ConfigError("stage '" + ctx.stage_name() + "' lists no tasks");
    if (ctx.rewards().empty()) throw warmup::ConfigError("stage '" + ctx.stage_name() + "' lists no rewards");
    if (completions_ == "teacher" && ctx.teachers().empty())
      throw warmup::ConfigError("stage '" + ctx.stage_name() + "': completions = \"teacher\" needs a teacher");
    const warmup::EvalSettings& ev = ctx.eval();
    for (int64_t k : pass_at_k_)
      if (k > ev.num_samples)
        throw warmup::ConfigError("stage '" + ctx.stage_name() + "': pass_at_k " + std::to_string(k) +
                                  " exceeds eval.num_samples = " + std::to_string(ev.num_samples));
    check_task_rewards(ctx);
    // Save-as-you-go (eval_progress.h): a resumed stage drops what the stopped attempt stored and
    // records it again from its progress files, so no sample is stored twice and the order holds.
    if (ctx.resuming()) ctx.discard_after(-1);
    for (const auto& t : ctx.tasks()) {
      std::vector<warmup::Example> examples = t.task->examples(ev.split);
      if (ev.limit > 0 && int64_t(examples.size()) > ev.limit) examples.resize(size_t(ev.limit));
      std::string digest = ctx.dataset(t.name, ev.split, examples);
      if (!evaluate_task(ctx, t.name, examples, digest)) return;  // stopped
    }
  }

  // Checks the stage's eval split of every task and that the rewards and tasks the options name exist.
  void validate(const warmup::StagePlan& plan, warmup::Validation& v) override {
    const std::string who = "stages." + plan.stage_name + ".evaluate";
    for (const auto& t : plan.tasks) v.check_split(t, plan.eval.split, who);
    if (plan.tasks.empty()) v.error(who + ": the stage lists no tasks");
    if (plan.rewards.empty()) v.error(who + ": the stage lists no rewards");
    if (completions_ == "teacher" && plan.teachers.empty()) v.error(who + ": completions = \"teacher\" needs a teacher");
  }

 private:
  // One task: completions and scores chunk by chunk (`save_every` examples), each chunk saved
  // before the next starts; then the task's metrics. False when a stop was requested.
  bool evaluate_task(warmup::StageContext& ctx, const std::string& task, const std::vector<warmup::Example>& examples,
                     const std::string& digest) {
    const warmup::EvalSettings& ev = ctx.eval();
    const size_t N = examples.size(), runs = size_t(ev.num_samples);
    std::vector<std::string> ids;
    for (const auto& e : examples) ids.push_back(e.id);
    // Reference completions cost nothing to make again: one chunk.
    const size_t chunk = save_every_ > 0 && completions_ != "reference" ? size_t(save_every_) : std::max<size_t>(N, 1);
    const nlohmann::json header = {{"task", task}, {"split", ev.split}, {"digest", digest}, {"num_samples", runs},
                                   {"save_every", chunk}, {"completions", completions_}, {"seed", sample_.seed}};
    warmup::Distributed& dist = warmup::distributed(ctx);
    const bool leader = dist.rank() == 0;
    // Ranks that share the sampling (model completions; otherwise rank 0 works alone and the others
    // have left the stage) start where rank 0's progress file says and agree on stopping.
    const bool sharded = dist.world_size() > 1 && completions_ == "model";
    auto agreed_stop = [&](bool mine) { return sharded ? warmup::all_reduce_sum(dist, {mine ? 1.0 : 0.0})[0] > 0 : mine; };
    std::optional<evalp::Progress> progress;
    if (leader) progress.emplace(ctx.checkpoint_dir() / ("progress-" + task + ".jsonl"), ids, header, chunk, ctx.resuming());
    std::vector<std::vector<warmup::Completion>> outs(N);
    std::vector<std::vector<warmup::Score>> scores(N);
    size_t first = leader ? progress->done().size() : 0;
    if (sharded) first = size_t(std::stoull(dist.broadcast_bytes(std::to_string(first), 0)));
    for (size_t i = 0; leader && i < first; ++i)
      outs[i] = progress->done()[i].completions, scores[i] = progress->done()[i].scores;
    int64_t stored = 0;
    if (leader) record_samples(ctx, task, examples, outs, scores, 0, first, stored);
    ctx.log(warmup::LogLevel::kInfo, "scoring " + std::to_string(N) + " x " + std::to_string(runs) + " of " + task + "/" +
                                         ev.split + " (digest " + digest.substr(0, 12) + ")" +
                                         (first ? "; " + std::to_string(first) + " done by the stopped attempt" : ""));
    auto t0 = std::chrono::steady_clock::now();
    int64_t tokens = 0;
    for (size_t lo = first; lo < N; lo += chunk) {
      const size_t hi = std::min(N, lo + chunk);
      std::vector<warmup::Example> part(examples.begin() + lo, examples.begin() + hi);
      std::vector<std::vector<warmup::Completion>> got = complete(ctx, part, int(runs), lo);
      if (!leader) {  // rank 0 scores
        if (agreed_stop(ctx.stop_requested())) return false;
        continue;
      }
      std::vector<warmup::Score> flat;
      bool scored = score_chunk(ctx, task, part, got, flat);
      if (agreed_stop(!scored)) return false;
      progress->append(lo, ids, got, flat);
      for (size_t i = lo, k = 0; i < hi; ++i) {
        outs[i] = std::move(got[i - lo]);
        for (size_t j = 0; j < outs[i].size(); ++j) scores[i].push_back(std::move(flat[k++]));
        for (const auto& c : outs[i]) tokens += std::max<int64_t>(0, c.tokens);
      }
      record_samples(ctx, task, examples, outs, scores, lo, hi, stored);
      ctx.flush();
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      char line[240];
      std::snprintf(line, sizeof line, "%s: %zu/%zu examples x %zu (%lld tokens) from %s in %.1fs | %s", task.c_str(), hi, N,
                    runs, (long long)tokens, completions_.c_str(), secs,
                    warmup::eta_text(secs, int64_t(hi - first), int64_t(N - first)).c_str());
      ctx.progress(task, int64_t(hi), int64_t(N), warmup::eta_text(secs, int64_t(hi - first), int64_t(N - first)));
      ctx.log(warmup::LogLevel::kInfo, line);
      if (!sharded && ctx.stop_requested()) return false;
    }
    bool stop = agreed_stop(ctx.stop_requested());
    if (!leader) return !stop;
    summarize(ctx, task, examples, outs, scores, runs);
    return !stop;
  }

  void check_task_rewards(warmup::StageContext& ctx) const {
    std::set<std::string> tasks, rewards;
    for (const auto& t : ctx.tasks()) tasks.insert(t.name);
    for (const auto& r : ctx.rewards()) rewards.insert(r.name);
    for (const auto& [task, names] : task_rewards_) {
      if (!tasks.count(task))
        throw warmup::ConfigError("stage '" + ctx.stage_name() + "': task_rewards names task '" + task +
                                  "', which the stage does not list");
      if (names.empty()) throw warmup::ConfigError("stage '" + ctx.stage_name() + "': task_rewards." + task + " is empty");
      for (const auto& r : names)
        if (!rewards.count(r))
          throw warmup::ConfigError("stage '" + ctx.stage_name() + "': task_rewards." + task + " names reward '" + r +
                                    "', which the stage's rewards do not list");
    }
  }

  std::vector<warmup::WeightedReward> rewards_for(warmup::StageContext& ctx, const std::string& task) const {
    auto it = task_rewards_.find(task);
    if (it == task_rewards_.end()) return ctx.rewards();
    std::vector<warmup::WeightedReward> out;
    for (const auto& r : ctx.rewards())
      if (std::find(it->second.begin(), it->second.end(), r.name) != it->second.end()) out.push_back(r);
    return out;
  }

  // Completions of `ex`, examples [first, first + ex.size()) of the split: a chunk samples with the
  // seeds its prompts have in the whole split (the engine seeds prompt i with seed + 1000 * i).
  std::vector<std::vector<warmup::Completion>> complete(warmup::StageContext& ctx,
                                                        const std::vector<warmup::Example>& ex, int n, size_t first) {
    if (completions_ == "teacher") return ctx.teachers().front().teacher->complete(ex, n);
    if (completions_ == "model") return sample_model(ctx, ex, n, sample_.seed + 1000 * uint64_t(first));
    std::vector<std::vector<warmup::Completion>> out;
    for (const auto& e : ex) {
      std::vector<warmup::Completion> cs;
      for (int j = 0; j < n; ++j) {
        std::string text = reference_templates_[size_t(j) % reference_templates_.size()];
        for (size_t at = 0; (at = text.find("{reference}", at)) != std::string::npos; at += e.reference.size())
          text.replace(at, 11, e.reference);
        cs.push_back(warmup::Completion{text, "stop", -1});
      }
      out.push_back(std::move(cs));
    }
    return out;
  }

  // The model's completions with prompt + completion <= max_model_len per prompt (as vLLM's
  // max_model_len): one engine call with the largest budget, each sample cut to its prompt's budget.
  // A prompt that leaves no room gets one empty "error" completion per sample.
  std::vector<std::vector<warmup::Completion>> sample_model(warmup::StageContext& ctx,
                                                            const std::vector<warmup::Example>& ex, int n, uint64_t seed) {
    warmup::Policy& pol = warmup::policy(ctx);
    int64_t limit = pol.max_position_embeddings();
    if (max_model_len_ > 0) limit = std::min(limit, max_model_len_);
    std::vector<std::vector<int32_t>> prompts;
    std::vector<int64_t> caps(ex.size(), 0);
    std::vector<size_t> runnable;
    int64_t largest = 0, too_long = 0;
    for (size_t i = 0; i < ex.size(); ++i) {
      std::vector<int32_t> ids = pol.encode(ex[i].prompt);
      int64_t cap = limit - int64_t(ids.size());
      if (max_new_tokens_ > 0) cap = std::min(cap, max_new_tokens_);
      if (cap <= 0) {
        ++too_long;
        continue;
      }
      caps[i] = cap, largest = std::max(largest, cap);
      runnable.push_back(i);
      prompts.push_back(std::move(ids));
    }
    if (too_long)
      ctx.log(warmup::LogLevel::kWarn, std::to_string(too_long) + " prompt(s) leave no room under max_model_len " +
                                           std::to_string(limit) + ": scored as empty completions");
    std::vector<std::vector<warmup::Completion>> out(
        ex.size(), std::vector<warmup::Completion>(size_t(n), warmup::Completion{"", "error", 0}));
    if (prompts.empty()) return out;
    warmup::SampleOptions so = sample_;
    so.n = n;
    so.seed = seed;
    so.max_new_tokens = largest;
    std::vector<std::vector<warmup::TokenCompletion>> res = generate_sharded(ctx, pol, prompts, so);
    for (size_t r = 0; r < runnable.size(); ++r) {
      size_t i = runnable[r];
      out[i].clear();
      for (auto& tc : res.at(r)) {
        warmup::Completion c{std::move(tc.text), tc.finish_reason, int64_t(tc.ids.size())};
        if (int64_t(tc.ids.size()) > caps[i]) {
          tc.ids.resize(size_t(caps[i]));
          c = warmup::Completion{pol.decode(tc.ids), "length", caps[i]};
        }
        out[i].push_back(std::move(c));
      }
    }
    return out;
  }

  // Scores one chunk on `workers_` threads into `flat` (example-major). False when stopped.
  // The prompts' completions, each rank sampling a contiguous block of them: prompt k keeps the
  // seed it has in one process (seed + 1000 k), so the samples do not depend on the ranks.
  std::vector<std::vector<warmup::TokenCompletion>> generate_sharded(warmup::StageContext& ctx, warmup::Policy& pol,
                                                                     const std::vector<std::vector<int32_t>>& prompts,
                                                                     const warmup::SampleOptions& so) {
    warmup::Distributed& dist = warmup::distributed(ctx);
    if (dist.world_size() == 1) return pol.generate_ids(prompts, so);
    const auto [lo, hi] = warmup::contiguous_shard(prompts.size(), dist);
    std::vector<std::vector<warmup::TokenCompletion>> mine;
    if (hi > lo) {
      warmup::SampleOptions o = so;
      o.seed = warmup::shard_seed(so.seed, lo);
      mine = pol.generate_ids(std::vector<std::vector<int32_t>>(prompts.begin() + long(lo), prompts.begin() + long(hi)), o);
    }
    nlohmann::json j = nlohmann::json::array();
    for (const auto& per : mine) {
      nlohmann::json a = nlohmann::json::array();
      for (const auto& c : per) a.push_back({{"ids", c.ids}, {"text", c.text}, {"finish_reason", c.finish_reason}});
      j.push_back(std::move(a));
    }
    std::vector<std::vector<warmup::TokenCompletion>> out;
    for (const std::string& part : dist.all_gather_bytes(j.dump()))
      for (const auto& a : nlohmann::json::parse(part)) {
        out.emplace_back();
        for (const auto& c : a)
          out.back().push_back({c.at("ids").get<std::vector<int32_t>>(), c.at("text").get<std::string>(),
                                c.at("finish_reason").get<std::string>()});
      }
    return out;
  }

  bool score_chunk(warmup::StageContext& ctx, const std::string& task, const std::vector<warmup::Example>& examples,
                   const std::vector<std::vector<warmup::Completion>>& outs, std::vector<warmup::Score>& flat) {
    const std::vector<warmup::WeightedReward> rewards = rewards_for(ctx, task);
    std::vector<std::pair<size_t, size_t>> items;
    for (size_t i = 0; i < examples.size(); ++i)
      for (size_t j = 0; j < outs.at(i).size(); ++j) items.emplace_back(i, j);
    warmup::score_parallel(
        rewards, items.size(), [&](size_t k) -> const warmup::Example& { return examples[items[k].first]; },
        [&](size_t k) -> const std::string& { return outs[items[k].first][items[k].second].text; }, flat, workers_,
        [&] { return ctx.stop_requested(); });
    return !ctx.stop_requested();
  }

  // Samples of examples [lo, hi), in example/sample order, up to max_samples per task.
  void record_samples(warmup::StageContext& ctx, const std::string& task, const std::vector<warmup::Example>& examples,
                      const std::vector<std::vector<warmup::Completion>>& outs,
                      const std::vector<std::vector<warmup::Score>>& scores, size_t lo, size_t hi, int64_t& stored) {
    for (size_t i = lo; i < hi; ++i)
      for (size_t j = 0; j < outs[i].size() && (max_samples_ < 0 || stored < max_samples_); ++j, ++stored) {
        const warmup::Completion& c = outs[i][j];
        const warmup::Score& s = scores[i][j];
        warmup::SampleRecord r;
        r.task = task, r.example_id = examples[i].id, r.prompt = examples[i].prompt;
        r.completion = c.text, r.completion_tokens = c.tokens, r.finish_reason = c.finish_reason;
        r.reward = s.total, r.rewards = s.parts, r.correct = s.correct;
        ctx.sample(r);
      }
  }

  // The task's metrics over all its examples (eval_metrics.h); fails the stage past max_error_rate.
  void summarize(warmup::StageContext& ctx, const std::string& task, const std::vector<warmup::Example>& examples,
                 const std::vector<std::vector<warmup::Completion>>& outs,
                 const std::vector<std::vector<warmup::Score>>& scores, size_t runs) {
    evalm::Tally all(runs);
    std::map<std::string, evalm::Tally> groups;
    std::string first_error;
    for (size_t i = 0; i < examples.size(); ++i) {
      std::vector<evalm::Tally*> mine;
      for (const auto& key : group_by_)
        if (examples[i].metadata.is_object() && examples[i].metadata.contains(key))
          mine.push_back(&groups.try_emplace(key + "=" + group_value(examples[i].metadata[key]), runs).first->second);
      for (size_t j = 0; j < outs[i].size(); ++j) {
        const warmup::Score& s = scores[i][j];
        if (s.errored && first_error.empty()) first_error = examples[i].id + ": " + s.error;
        all.add(j, s, outs[i][j].tokens);
        for (auto* g : mine) g->add(j, s, outs[i][j].tokens, false);
      }
      all.end_example();
      for (auto* g : mine) g->end_example();
    }
    const std::string p = "eval/" + task + "/";
    std::map<std::string, double> sum = all.summary(pass_at_k_);
    for (const auto& [k, v] : sum) ctx.metric(p + k, 0, v);
    for (const auto& [g, tally] : groups)
      for (const auto& [k, v] : tally.summary(pass_at_k_)) ctx.metric(p + g + "/" + k, 0, v);
    std::string msg = task + ": " + std::to_string(all.count()) + " completions, reward mean " +
                      std::to_string(sum["reward_mean"]);
    if (sum.count("accuracy_mean"))
      msg += ", accuracy " + std::to_string(sum["accuracy_mean"]) + " +- " + std::to_string(sum["accuracy_std"]) +
             " over " + std::to_string(runs) + " run(s)";
    ctx.log(warmup::LogLevel::kInfo, msg);
    if (all.errors()) {
      std::string head = task + ": " + std::to_string(all.errors()) + " of " + std::to_string(all.count()) +
                         " completion(s) could not be judged: the verifier failed, not the model (first: " +
                         first_error + ")";
      if (sum["error_rate"] > max_error_rate_)
        throw std::runtime_error(head + "; error rate " + std::to_string(sum["error_rate"]) + " > max_error_rate " +
                                 std::to_string(max_error_rate_));
      ctx.log(warmup::LogLevel::kWarn, "WARNING: " + head + "; left out of the accuracy (eval/" + task + "/errors)");
    }
  }

  std::string completions_;
  std::vector<std::string> reference_templates_, group_by_;
  std::vector<int64_t> pass_at_k_;
  std::map<std::string, std::vector<std::string>> task_rewards_;
  warmup::SampleOptions sample_;
  int64_t max_new_tokens_, max_model_len_, max_samples_, workers_, save_every_;
  double max_error_rate_;
};

}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Algorithm, Evaluate>(
    "evaluate", "0.2.0", "score a task split through the stage rewards: n samples, accuracy mean/std, pass@k"))
