// grpo: reinforcement learning with verifiable rewards (stage 2 of the paper), with TRL's
// GRPOConfig option names and meanings. Each step samples `num_generations` completions for each of
// `prompts_per_step` prompts through the engine, scores them with the stage's rewards (weighted sum),
// computes group-relative advantages and takes one optimizer step per iteration over micro-batches
// of the PPO-clip loss (grpo_loss.h). Checkpoints every `save_steps` and on SIGINT/SIGTERM; resume
// continues at the next step with the same data order and sampling seeds.
#include <chrono>
#include <cmath>
#include <fstream>
#include <future>
#include <random>

#include "grpo_batch.h"
#include "grpo_loss.h"
#include "warmup/model.h"
#include "warmup/precision.h"
#include "warmup/distributed.h"
#include "warmup/sdk.h"
#include "warmup/training.h"

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

class Grpo final : public warmup::Algorithm {
 public:
  explicit Grpo(const warmup::PluginInit& init) {
    warmup::Options o(init);
    split_ = o.get<std::string>("split", "train");
    num_examples_ = o.get<int64_t>("num_examples", 100, warmup::at_least(0));  // subsample of the split (<= 100 in the paper); 0 = all
    data_seed_ = o.get<int64_t>("data_seed", 42);                  // the paper's subsampling seed
    seed_ = o.get<int64_t>("seed", int64_t(init.seed));            // shuffling and sampling
    epochs_ = o.get<double>("num_train_epochs", 25.0, warmup::epochs_bounds());
    max_steps_ = o.get<int64_t>("max_steps", -1, warmup::at_least(-1).at_most(warmup::kMaxSteps));
    // Token lengths first: they bound how many sequences a step may hold.
    const warmup::Bounds length = warmup::fits_in_memory(1, warmup::kMinBytesPerToken, "tokens of 16 bytes");
    max_prompt_ = o.get<int64_t>("max_prompt_length", 256, length);        // left truncation
    lo_.max_completion_length = o.get<int64_t>("max_completion_length", 1024, length);
    long double seq_bytes = warmup::kMinBytesPerToken * (long double)(max_prompt_ + lo_.max_completion_length);
    std::string seqs = "sequences of max_prompt_length + max_completion_length = " +
                       std::to_string(max_prompt_ + lo_.max_completion_length) + " tokens";
    // The engine samples at most 1024 completions per prompt.
    G_ = o.get<int64_t>("num_generations", 10, warmup::at_least(2).at_most(1024, "(completions per prompt the engine samples)"));
    micro_ = o.get<int64_t>("per_device_train_batch_size", 4, warmup::fits_in_memory(1, seq_bytes, seqs));  // completions per micro-batch
    prompts_per_step_ = o.get<int64_t>("prompts_per_step", trl_step_size(o, seq_bytes, seqs), warmup::fits_in_memory(1, seq_bytes, seqs));
    if (o.has("generation_batch_size") && prompts_per_step_ * G_ != o.get<int64_t>("generation_batch_size", 0))
      o.fail("prompts_per_step", "x num_generations must equal generation_batch_size when both are given");
    if (o.has("gradient_accumulation_steps") &&
        prompts_per_step_ * G_ != micro_ * o.get<int64_t>("gradient_accumulation_steps", 1))
      o.fail("prompts_per_step", "x num_generations must equal per_device_train_batch_size x "
                                 "gradient_accumulation_steps when both are given");
    if ((long double)prompts_per_step_ * (long double)G_ > (long double)warmup::memory_capacity(seq_bytes))
      o.fail("prompts_per_step", "x num_generations = " + std::to_string(prompts_per_step_ * G_) + " " + seqs +
                                     " must be <= " + std::to_string(warmup::memory_capacity(seq_bytes)) + " (what " +
                                     warmup::memory_text() + " holds)");
    iterations_ = o.get<int64_t>("num_iterations", 1, warmup::at_least(1).at_most(1000));
    temperature_ = o.get<double>("temperature", 0.7, warmup::above(0));  // log-probs are taken at this temperature
    top_p_ = o.get<double>("top_p", 0.95, warmup::above(0).at_most(1));
    top_k_ = o.get<int64_t>("top_k", 0, warmup::at_least(-1));
    min_p_ = o.get<double>("min_p", 0.0, warmup::at_least(0).at_most(1));
    stop_ = o.get<std::vector<std::string>>("stop", {});
    lo_.loss_type = o.get<std::string>("loss_type", "bnpo");      // TRL 0.16's token-level loss (the paper)
    lo_.epsilon_low = o.get<double>("epsilon", 0.2, warmup::at_least(0));
    lo_.epsilon_high = o.get<double>("epsilon_high", lo_.epsilon_low, warmup::at_least(0));
    lo_.beta = o.get<double>("beta", 0.0, warmup::at_least(0));
    scale_ = o.get<std::string>("scale_rewards", "none");         // the paper: no division by std
    mask_truncated_ = o.get<bool>("mask_truncated_completions", false);
    // DAPO's soft overlong punishment (grpo_batch.h overlong_penalty): off with buffer 0.
    overlong_buffer_ = o.get<int64_t>("overlong_buffer_length", 0, warmup::at_least(0));
    overlong_factor_ = o.get<double>("overlong_penalty_factor", 1.0, warmup::at_least(0));
    // DAPO's dynamic sampling (verl's algorithm.filter_groups): groups whose rewards all agree are
    // dropped and more prompts sampled, up to max_num_gen_batches rounds per step (0: no limit).
    dynamic_sampling_ = o.get<bool>("dynamic_sampling", false);
    // Each micro-batch's sequences packed into rows instead of padded to the longest (TRL's name).
    padding_free_ = o.get<bool>("padding_free", false);
    // Importance sampling against the sampler (TRL's vllm_importance_sampling_*, without the
    // prefix; grpo_loss.h importance_sampling_ratio). importance_sampling_cap: TRL < 0.26's name of
    // the upper bound.
    is_correction_ = o.get<bool>("importance_sampling_correction", false);
    is_.mode = o.get<std::string>("importance_sampling_mode", "sequence_mask");
    if (o.has("importance_sampling_cap") && o.has("importance_sampling_clip_max"))
      o.fail("importance_sampling_cap", "is TRL's older name of importance_sampling_clip_max: give one of them");
    o.allow_nonfinite("importance_sampling_clip_max").allow_nonfinite("importance_sampling_cap");
    is_.clip_max = o.has("importance_sampling_cap") ? o.get<double>("importance_sampling_cap", 3.0, warmup::above(0))
                                                    : o.get<double>("importance_sampling_clip_max", 3.0, warmup::above(0));
    is_.clip_min = o.get<double>("importance_sampling_clip_min", 0.0, warmup::at_least(0));
    if (is_.mode != "token_truncate" && is_.mode != "token_mask" && is_.mode != "sequence_truncate" &&
        is_.mode != "sequence_mask")
      o.fail("importance_sampling_mode", "must be token_truncate, token_mask, sequence_truncate or sequence_mask");
    if (is_.clip_min > is_.clip_max)
      o.fail("importance_sampling_clip_min", "must be <= importance_sampling_clip_max");
    for (const char* trl : {"vllm_importance_sampling_correction", "vllm_importance_sampling_mode",
                            "vllm_importance_sampling_clip_min", "vllm_importance_sampling_clip_max",
                            "vllm_importance_sampling_cap"})
      if (o.has(trl))
        o.fail(trl, std::string("is TRL's name for vLLM; the built-in engine's option is ") + (trl + 5) +
                        " (importance_sampling_correction and its mode, clip_min, clip_max)");
    max_gen_batches_ = o.get<int64_t>("max_num_gen_batches", 10, warmup::at_least(0).at_most(1 << 20));
    if (overlong_buffer_ > lo_.max_completion_length)
      o.fail("overlong_buffer_length", "must be <= max_completion_length (" + std::to_string(lo_.max_completion_length) + ")");
    // Fraction of a step's completions the rewards may fail to judge (RewardStatus::kError) before
    // the stage fails; errored completions are left out of their group and of the loss.
    max_error_rate_ = o.get<double>("max_error_rate", 0.01, warmup::at_least(0).at_most(1));
    schedule_.lr = o.get<double>("learning_rate", 1e-6, warmup::learning_rate_bounds());
    schedule_.type = o.get<std::string>("lr_scheduler_type", "constant_with_warmup");
    schedule_.warmup_steps = o.get<int64_t>("warmup_steps", 25, warmup::steps_bounds());
    beta1_ = o.get<double>("adam_beta1", 0.9, warmup::adam_beta_bounds());
    beta2_ = o.get<double>("adam_beta2", 0.99, warmup::adam_beta_bounds());
    eps_ = o.get<double>("adam_epsilon", 1e-8, warmup::adam_epsilon_bounds());
    weight_decay_ = o.get<double>("weight_decay", 0.1, warmup::at_least(0));
    max_grad_norm_ = o.get<double>("max_grad_norm", 0.1, warmup::above(0));
    checkpointing_ = o.get<bool>("gradient_checkpointing", false);
    bf16_mode_ = warmup::bf16_option(o);  // bf16 autocast (mixed precision): true, false or "auto"
    save_steps_ = o.get<int64_t>("save_steps", 50, warmup::at_least(0));
    log_groups_ = o.get<int64_t>("log_completions_groups", 1, warmup::at_least(-1));  // groups per step stored as samples; -1 = all
    reward_workers_ = o.get<int64_t>("reward_workers", 4, warmup::at_least(1).at_most(1024));
    logging_steps_ = warmup::logging_steps_option(o);  // TRL's name: the step line every N steps
    warmup::refuse_trl_only_options(o);
    zero_stage_ = o.get<int64_t>("zero_stage", 0, warmup::at_least(0).at_most(1));  // DeepSpeed's: 1 = ZeRO-1 over the ranks
    ddp_ = warmup::data_parallel_options(o);  // ddp_bucket_cap_mb, overlap_comm
    lora_ = warmup::lora_options(o);  // TRL's use_peft, lora_r, lora_alpha, lora_dropout, lora_target_modules
    if (scale_ != "group" && scale_ != "batch" && scale_ != "none") o.fail("scale_rewards", "must be group, batch or none");
    if (lo_.loss_type != "grpo" && lo_.loss_type != "bnpo" && lo_.loss_type != "dr_grpo" && lo_.loss_type != "dapo")
      o.fail("loss_type", "must be grpo, bnpo, dr_grpo or dapo");
    if (!warmup::LrSchedule::known(schedule_.type))
      o.fail("lr_scheduler_type", "must be constant, constant_with_warmup, cosine or linear");
    o.finish();
  }

  // TRL's names for a step's size (GRPOConfig, steps_per_generation = gradient_accumulation_steps):
  // each optimizer step samples generation_batch_size completions, trained in
  // gradient_accumulation_steps micro-batches of per_device_train_batch_size; here that is
  // prompts_per_step = generation_batch_size / num_generations. Returns that (10 without them).
  int64_t trl_step_size(warmup::Options& o, long double seq_bytes, const std::string& seqs) const {
    const bool ga = o.has("gradient_accumulation_steps"), gbs = o.has("generation_batch_size");
    if (!ga && !gbs) return 10;
    int64_t accum = ga ? o.get<int64_t>("gradient_accumulation_steps", 1, warmup::at_least(1).at_most(1 << 20)) : 0;
    int64_t total = gbs ? o.get<int64_t>("generation_batch_size", 1, warmup::fits_in_memory(1, seq_bytes, seqs)) : micro_ * accum;
    if (ga && total != micro_ * accum)
      o.fail("generation_batch_size", "(" + std::to_string(total) + ") must equal per_device_train_batch_size x "
             "gradient_accumulation_steps = " + std::to_string(micro_ * accum) + " (TRL's rule with steps_per_generation "
             "= gradient_accumulation_steps)");
    if (total % G_ != 0)
      o.fail(gbs ? "generation_batch_size" : "gradient_accumulation_steps",
             "gives " + std::to_string(total) + " completions per step, not a multiple of num_generations = " +
             std::to_string(G_) + " (TRL's rule)");
    return total / G_;
  }

  // Each task's training split loads (the evaluation, if any, is another stage's).
  void validate(const warmup::StagePlan& plan, warmup::Validation& v) override {
    for (const auto& t : plan.tasks) v.check_split(t, split_, "stages." + plan.stage_name + ".grpo");
  }

  void run(warmup::StageContext& ctx) override {
    dist_ = &warmup::distributed(ctx);
    warmup::Policy& policy = warmup::policy(ctx);
    bf16_ = warmup::bf16_enabled(bf16_mode_, policy.device());
    if (is_correction_ && is_.mode.starts_with("sequence") && (top_p_ < 1.0 || top_k_ > 0 || min_p_ > 0.0))
      ctx.log(warmup::LogLevel::kWarn,
              "grpo: importance_sampling_mode = " + is_.mode + " with top_p/top_k/min_p: each token's ratio is about "
              "the sampler's kept mass (< 1), so a completion's ratio, their product, shrinks with its length "
              "(0.95^256 ~ 2e-6) and long completions barely train; token_truncate corrects per token");
    if (ctx.tasks().empty() || ctx.rewards().empty())
      throw warmup::ConfigError("stage '" + ctx.stage_name() + "': grpo needs a task and at least one reward");
    load_data(ctx);
    int64_t per_epoch = (int64_t(data_.size()) + prompts_per_step_ - 1) / prompts_per_step_;
    int64_t total = warmup::total_steps("grpo", epochs_, per_epoch, max_steps_);
    ctx.log(warmup::LogLevel::kInfo, "grpo: " + std::to_string(data_.size()) + " prompts, " + std::to_string(total) +
                                         " steps of " + std::to_string(prompts_per_step_) + " x " + std::to_string(G_) +
                                         " completions, loss " + lo_.loss_type);
    std::unique_ptr<warmup::Policy> ref;
    if (lo_.beta != 0.0) ref = policy.frozen_copy();  // the stage's starting weights, before any resume
    auto& module = policy.module();
    module.train();
    policy.set_activation_checkpointing(checkpointing_);
    if (lora_) {
      int64_t n = policy.enable_lora(*lora_, uint64_t(seed_));
      ctx.log(warmup::LogLevel::kInfo, std::string("grpo") + ": LoRA r=" + std::to_string(lora_->r) + " on " + std::to_string(n) +
                                           " linear layers; the base weights are frozen, the output is a PEFT adapter");
    }
    std::vector<torch::Tensor> params = warmup::trainable_parameters(policy);
    torch::optim::AdamW opt(params, torch::optim::AdamWOptions(schedule_.lr).betas({beta1_, beta2_}).eps(eps_).weight_decay(weight_decay_));
    warmup::Zero1 zero(*dist_, params, zero_stage_ == 1);
    zero_ = &zero;
    int64_t start = ctx.resuming() ? warmup::restore_checkpoint(ctx, policy, opt) : 0;
    zero.drop_foreign_state(opt);
    // The gradients are all-reduced bucket by bucket during the backward of this rank's last micro-batch.
    warmup::GradientReducer reducer = warmup::make_gradient_reducer(*dist_, params, ddp_);
    reducer_ = &reducer;
    first_step_ = start, t_start_ = Clock::now();
    cursor_ = cursor_after(ctx, start);
    for (int64_t step = start; step < total; ++step) {
      train_step(ctx, policy, ref.get(), opt, params, step, total, per_epoch);
      int64_t s1 = step + 1;
      if (dist_->rank() == 0) save_cursor(ctx, s1);
      // every rank stops together (a signal reaches them at different times)
      bool stop = warmup::all_reduce_sum(*dist_, {ctx.stop_requested() ? 1.0 : 0.0})[0] > 0;
      if ((save_steps_ > 0 && s1 % save_steps_ == 0 && s1 < total) || stop) {
        zero.gather_state(opt);
        warmup::save_checkpoint(ctx, policy, opt, s1);
        zero.drop_foreign_state(opt);
      }
      if (stop) return;
    }
    warmup::save_output_model(ctx, policy);
  }

 private:
  struct Item {
    const warmup::Example* example;
    std::string task;
  };

  void load_data(warmup::StageContext& ctx) {
    for (const auto& t : ctx.tasks()) {
      auto ex = t.task->examples(split_);
      // The paper's subsample: shuffle with data_seed, keep the first num_examples.
      std::mt19937_64 rng{uint64_t(data_seed_)};
      std::shuffle(ex.begin(), ex.end(), rng);
      if (num_examples_ > 0 && int64_t(ex.size()) > num_examples_) ex.resize(size_t(num_examples_));
      ctx.dataset(t.name, split_, ex);
      auto& kept = examples_.emplace_back(std::move(ex));
      for (const auto& e : kept) data_.push_back({&e, t.name});
    }
    if (data_.empty()) throw warmup::DataError("grpo: the '" + split_ + "' split has no examples");
  }

  // Prompt k of the run: epoch-shuffled order, each epoch its own seed (exact on resume).
  const Item& item(int64_t k) {
    if (!order_) order_.emplace(int64_t(data_.size()), uint64_t(seed_));
    return data_[size_t((*order_)(k))];
  }

  void train_step(warmup::StageContext& ctx, warmup::Policy& policy, warmup::Policy* ref, torch::optim::AdamW& opt,
                  std::vector<torch::Tensor>& params, int64_t step, int64_t total, int64_t per_epoch) {
    int64_t s1 = step + 1;
    warmup::seed_step(seed_, step);  // lora_dropout's masks: the same on resume
    // 1-2. generate and score prompts_per_step prompts; with dynamic_sampling, more rounds of
    // prompts until prompts_per_step groups have reward variance (or max_num_gen_batches rounds:
    // then the step is filled up with uninformative groups, which give no gradient).
    std::vector<const Item*> items;
    std::vector<grpo::Rollout> rolls;
    std::vector<std::pair<const Item*, std::vector<grpo::Rollout>>> spare;  // dropped groups, in order
    double gen_s = 0, score_s = 0;
    int64_t round = 0, dropped = 0;
    for (; int64_t(items.size()) < prompts_per_step_; ++round) {
      if (round > 0 && (!dynamic_sampling_ || (max_gen_batches_ > 0 && round >= max_gen_batches_))) break;
      std::vector<const Item*> its;
      std::vector<grpo::Rollout> rs;
      sample_round(ctx, policy, step, round, its, rs, gen_s, score_s);
      for (size_t g = 0; g < its.size(); ++g) {
        std::vector<grpo::Rollout> group(std::make_move_iterator(rs.begin() + int64_t(g) * G_),
                                         std::make_move_iterator(rs.begin() + int64_t(g + 1) * G_));
        bool keep = int64_t(items.size()) < prompts_per_step_ &&
                    (!dynamic_sampling_ || grpo::informative_group(group, 0, size_t(G_)));
        if (!keep) {
          dropped += dynamic_sampling_ && !grpo::informative_group(group, 0, size_t(G_));
          spare.emplace_back(its[g], std::move(group));
          continue;
        }
        for (auto& r : group) r.prompt = items.size(), rolls.push_back(std::move(r));
        items.push_back(its[g]);
      }
    }
    int64_t filled = 0;
    for (size_t g = 0; g < spare.size() && int64_t(items.size()) < prompts_per_step_; ++g, ++filled) {
      for (auto& r : spare[g].second) r.prompt = items.size(), rolls.push_back(std::move(r));
      items.push_back(spare[g].first);
    }
    if (dynamic_sampling_) {
      ctx.metric("train/dynamic_sampling/rounds", s1, double(round));
      ctx.metric("train/dynamic_sampling/groups_dropped", s1, double(dropped));
      ctx.metric("train/dynamic_sampling/groups_filled", s1, double(filled));
      if (filled)
        ctx.log(warmup::LogLevel::kWarn, "step " + std::to_string(s1) + ": " + std::to_string(filled) + " of " +
                                             std::to_string(prompts_per_step_) + " groups have no reward variance after " +
                                             std::to_string(round) + " rounds (max_num_gen_batches)");
    }
    auto t_score = Clock::now();
    int64_t N = int64_t(rolls.size());
    auto rewards = torch::empty({N}, torch::kFloat64);
    auto valid = torch::ones({N}, torch::kBool);
    int64_t errored = 0;
    std::string first_error;
    for (int64_t r = 0; r < N; ++r) {
      const warmup::Score& sc = rolls[size_t(r)].score;
      rewards[r] = sc.total;
      if (sc.errored) {
        valid[r] = false;
        if (!errored++) first_error = items[rolls[size_t(r)].prompt]->example->id + ": " + sc.error;
      }
    }
    if (errored) {  // not the model's failures: out of the groups and the loss, warned, bounded
      double rate = double(errored) / double(N);
      std::string head = "step " + std::to_string(step + 1) + ": " + std::to_string(errored) + " of " +
                         std::to_string(N) + " completion(s) could not be judged: the verifier failed, not the model (first: " +
                         first_error + ")";
      if (rate > max_error_rate_)
        throw std::runtime_error(head + "; error rate " + std::to_string(rate) + " > max_error_rate " +
                                 std::to_string(max_error_rate_));
      ctx.log(warmup::LogLevel::kWarn, "WARNING: " + head + "; left out of their groups' advantages and of the loss");
    }
    torch::Tensor zero_std;
    auto adv = grpo::advantages(rewards, G_, scale_, &zero_std, valid).to(torch::kFloat32);
    score_s += since(t_score);

    // 3. train
    auto t_train = Clock::now();
    double lr = schedule_.at(step, total);
    schedule_.apply(opt, lr);
    auto batches = padding_free_ ? grpo::packed_micro_batches(rolls, micro_, mask_truncated_)
                                 : grpo::micro_batches(rolls, micro_, mask_truncated_);
    grpo::LossOptions lo = lo_;
    lo.accumulation_steps = int64_t(batches.size());
    double cells = 0, real = 0;  // token positions the model computes, and those that are not padding
    for (const auto& b : batches) cells += double(b.attn.numel()), real += b.attn.gt(0).sum().item<double>();
    padding_frac_ = cells > 0 ? 1.0 - real / cells : 0.0;
    lo.num_items_in_batch = 0;
    for (const auto& b : batches) lo.num_items_in_batch += b.mask.sum().item<double>();
    // Old log-probs (num_iterations > 1, or importance sampling against the sampler) and the
    // reference's (beta != 0), before any update; then the importance sampling weights.
    std::vector<torch::Tensor> old(batches.size()), refs(batches.size()), ent(batches.size()), is_w(batches.size());
    bool fused = iterations_ == 1 && lo.beta == 0.0;
    is_stats_ = grpo::ImportanceStats();
    // Several ranks: every rank holds the whole step's rollouts (sample_round gathers them) and
    // trains on every world_size-th micro-batch; each micro-batch's loss is normalised over the
    // whole step (num_items_in_batch, accumulation_steps), so the summed gradients are one
    // process's.
    const size_t W = size_t(dist_->world_size()), R = size_t(dist_->rank());
    auto mine = [&](size_t b) { return b % W == R; };
    if (!fused || is_correction_) {
      torch::NoGradGuard ng;
      for (size_t b = 0; b < batches.size(); ++b) {
        if (!mine(b)) continue;
        auto& mb = batches[b];
        auto zero = torch::zeros(mb.ids.sizes(), torch::kFloat32);
        {
          // With importance sampling, the trainer's numerics as in its loss pass (TRL autocasts
          // both); otherwise as before (float32).
          warmup::Autocast ac(policy.device(), bf16_ && is_correction_);
          policy.weighted_logprob_sum_at(mb.ids, mb.targets, zero, mb.attn, temperature_, &old[b],
                                         fused ? nullptr : &ent[b]);  // the fused pass computes its own entropy
        }
        old[b] = grpo::unpack(mb, old[b]).to(torch::kFloat32);
        if (!fused) ent[b] = grpo::unpack(mb, ent[b]);
        if (ref) refs[b] = grpo::unpack(mb, ref->token_logprobs_at(mb.ids, mb.targets, mb.attn, temperature_));
        if (is_correction_)
          is_w[b] = grpo::importance_sampling_ratio(old[b].cpu(), mb.sampling, mb.mask, is_, &is_stats_);
        if (iterations_ == 1) old[b] = torch::Tensor();
      }
    }
    if (W > 1 && is_correction_) {
      auto& is = is_stats_;
      auto v = warmup::all_reduce_sum(*dist_, {is.ratio_sum, is.ratio_count, is.capped, is.diff_sum, is.diff_count, is.kl_sum});
      is.ratio_sum = v[0], is.ratio_count = v[1], is.capped = v[2], is.diff_sum = v[3], is.diff_count = v[4], is.kl_sum = v[5];
      torch::Tensor mm = torch::tensor({-is.ratio_min, is.ratio_max, is.diff_max}, torch::kFloat64);
      dist_->all_reduce(mm, warmup::ReduceOp::kMax);
      is.ratio_min = -mm[0].item<double>(), is.ratio_max = mm[1].item<double>(), is.diff_max = mm[2].item<double>();
    }
    grpo::LossStats stats;
    double loss_sum = 0, gnorm = 0;
    for (int64_t it = 0; it < iterations_; ++it) {
      grpo::LossStats st;
      loss_sum = 0;
      size_t last = batches.size();  // this rank's last micro-batch: its backward overlaps the all-reduce
      for (size_t b = 0; b < batches.size(); ++b)
        if (mine(b)) last = b;
      for (size_t b = 0; b < batches.size(); ++b) {
        if (!mine(b)) continue;
        auto& mb = batches[b];
        auto a = adv.index_select(0, mb.rows);
        auto mask = mb.mask.to(policy.device());
        a = a.to(policy.device());
        if (fused) {
          // Ratio 1 and no KL: the loss is linear in the log-probs, so its gradient per token is a
          // constant known before the forward pass; the fused head applies it in one pass.
          auto probe = torch::zeros(mb.mask.sizes(), torch::TensorOptions().dtype(torch::kFloat32).device(policy.device()))
                           .requires_grad_(true);
          auto w = is_w[b].defined() ? is_w[b].to(policy.device()) : torch::Tensor();
          grpo::loss(probe, {}, {}, a, mask, {}, lo, nullptr, w).backward();
          torch::Tensor lp, en, sum;
          {
            warmup::Autocast ac(policy.device(), bf16_);
            sum = policy.weighted_logprob_sum_at(mb.ids, mb.targets, grpo::pack(mb, probe.grad()), mb.attn, temperature_,
                                                 &lp, &en);
          }
          if (b == last) reducer_->prepare_for_backward();
          sum.backward();
          lp = grpo::unpack(mb, lp), en = grpo::unpack(mb, en);
          loss_sum += grpo::loss(lp, {}, {}, a, mask, en, lo, &st, w).item<double>();
        } else {
          torch::Tensor lp;
          {
            warmup::Autocast ac(policy.device(), bf16_);
            lp = grpo::unpack(mb, policy.token_logprobs_at(mb.ids, mb.targets, mb.attn, temperature_).to(torch::kFloat32));
          }
          auto l = grpo::loss(lp, old[b].defined() ? old[b].to(lp.device()) : torch::Tensor(),
                              refs[b].defined() ? refs[b].to(lp.device()) : torch::Tensor(), a, mask,
                              ent[b].defined() ? ent[b].to(lp.device()) : torch::Tensor(), lo, &st,
                              is_w[b].defined() ? is_w[b].to(lp.device()) : torch::Tensor());
          if (b == last) reducer_->prepare_for_backward();
          l.backward();
          loss_sum += l.item<double>();
        }
      }
      if (W > 1) {
        reducer_->reduce();
        auto v = warmup::all_reduce_sum(*dist_, {loss_sum, st.kl, st.entropy, st.low_clipped, st.high_clipped,
                                                 st.region_clipped, st.tokens});
        loss_sum = v[0], st.kl = v[1], st.entropy = v[2], st.low_clipped = v[3], st.high_clipped = v[4];
        st.region_clipped = v[5], st.tokens = v[6];
      }
      gnorm = torch::nn::utils::clip_grad_norm_(params, max_grad_norm_);
      // Iteration 0 has touched nothing yet: the state is that after `step` whole steps.
      if (!warmup::finite_step(loss_sum, gnorm)) {
        if (it == 0) zero_->gather_state(opt);
        warmup::stop_on_nonfinite(ctx, policy, opt, step, loss_sum, gnorm, it == 0);
      }
      zero_->drop_foreign_grads();
      opt.step();
      zero_->broadcast_params();
      reducer_->zero_grad();  // in place in the gradient buckets with several ranks; dropped with one
      stats = st;
    }
    double train_s = since(t_train);

    // 4. metrics and samples
    record(ctx, items, rolls, rewards, adv, zero_std, stats, s1, per_epoch, lr, gnorm, loss_sum, gen_s, score_s, train_s);
    {
      char detail[96];
      std::snprintf(detail, sizeof detail, "reward %.3f | %s", mean_reward_,
                    warmup::eta_text(since(t_start_), s1 - first_step_, total - first_step_).c_str());
      ctx.progress("step", s1, total, detail);
    }
    if (warmup::log_this_step(s1, total, logging_steps_)) {
      char line[280];
      double el = since(t_start_);
      std::snprintf(line, sizeof(line), "step %lld/%lld | reward %.3f | len %.0f | loss %.4f | grad %.3f | gen %.1fs score %.1fs train %.1fs | %s",
                    (long long)s1, (long long)total, mean_reward_, mean_len_, loss_sum, gnorm, gen_s,
                    score_s, train_s, warmup::eta_text(el, s1 - first_step_, total - first_step_).c_str());
      ctx.log(warmup::LogLevel::kInfo, line);
    }
  }

  // One round of a step: the next prompts_per_step prompts of the data order (cursor_), G
  // completions each (round 0 samples with the seed steps always had), scored, the overlong
  // penalty added. `rolls` holds the groups in prompt order.
  void sample_round(warmup::StageContext& ctx, warmup::Policy& policy, int64_t step, int64_t round,
                    std::vector<const Item*>& items, std::vector<grpo::Rollout>& rolls, double& gen_s, double& score_s) {
    auto t_gen = Clock::now();
    std::vector<std::vector<int32_t>> prompts;
    for (int64_t i = 0; i < prompts_per_step_; ++i) {
      items.push_back(&item(cursor_++));
      auto ids = policy.encode(items.back()->example->prompt);
      if (int64_t(ids.size()) > max_prompt_) ids.erase(ids.begin(), ids.end() - max_prompt_);  // left truncation
      prompts.push_back(std::move(ids));
    }
    warmup::SampleOptions so;
    so.n = int(G_), so.temperature = temperature_, so.top_p = top_p_, so.top_k = top_k_, so.min_p = min_p_;
    so.max_new_tokens = lo_.max_completion_length, so.stop = stop_;
    so.seed = uint64_t(seed_) * 1000003ULL + uint64_t(step) * 7777ULL + uint64_t(round) * 0x9E3779B97F4A7C15ULL;
    // Several ranks: rank r samples and scores a contiguous block of the prompts, each prompt with
    // the seed it has in one process (seed + 1000 i), and every rank then holds all the groups.
    const size_t W = size_t(dist_->world_size());
    const auto [lo, hi] = warmup::contiguous_shard(prompts.size(), *dist_);
    std::vector<std::vector<warmup::TokenCompletion>> gens;
    if (hi > lo) {
      warmup::SampleOptions mine = so;
      mine.seed = warmup::shard_seed(so.seed, lo);
      gens = W == 1 ? policy.generate_ids(prompts, so)
                    : policy.generate_ids(std::vector<std::vector<int32_t>>(prompts.begin() + long(lo),
                                                                            prompts.begin() + long(hi)), mine);
    }
    gen_s += since(t_gen);
    gen_stats_.clear();  // a rank whose block is empty sampled nothing this round
    if (!gens.empty()) gen_stats_ = policy.last_generation_stats();
    // The sampler's log-probs (importance sampling only: the host returns them after every call).
    std::vector<std::vector<std::vector<float>>> sampling;
    if (is_correction_ && !gens.empty()) {
      sampling = policy.last_sampling_logprobs();
      bool aligned = sampling.size() == gens.size();
      for (size_t i = 0; aligned && i < gens.size(); ++i) {
        aligned = sampling[i].size() == gens[i].size();
        for (size_t k = 0; aligned && k < gens[i].size(); ++k) aligned = sampling[i][k].size() == gens[i][k].ids.size();
      }
      if (!aligned)
        throw warmup::ConfigError("stage '" + ctx.stage_name() + "': importance_sampling_correction needs the sampler's "
                                  "log-prob of every generated token, which this policy does not return");
    }

    // Rewards are thread-safe: scored in parallel by reward_workers threads.
    auto t_score = Clock::now();
    for (size_t i = lo; i < hi; ++i)
      for (size_t k = 0; k < gens[i - lo].size(); ++k)
        rolls.push_back({i, prompts[i], std::move(gens[i - lo][k]), {},
                         is_correction_ && k < sampling[i - lo].size() ? std::move(sampling[i - lo][k]) : std::vector<float>{}});
    score(ctx, items, rolls);
    if (overlong_buffer_ > 0)
      for (auto& r : rolls) {
        if (r.score.errored) continue;
        double p = grpo::overlong_penalty(int64_t(r.completion.ids.size()), lo_.max_completion_length, overlong_buffer_,
                                          overlong_factor_);
        r.score.total += p;
        r.score.parts["overlong_penalty"] = p;
      }
    if (W > 1) rolls = gather_rollouts(rolls, prompts);
    score_s += since(t_score);
  }

  // Every rank's scored rollouts, in rank order (= prompt order: the blocks are contiguous).
  std::vector<grpo::Rollout> gather_rollouts(const std::vector<grpo::Rollout>& mine,
                                             const std::vector<std::vector<int32_t>>& prompts) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& r : mine) {
      nlohmann::json sc = {{"total", r.score.total}, {"parts", r.score.parts}, {"error", r.score.error},
                           {"errored", r.score.errored}};
      if (r.score.correct) sc["correct"] = *r.score.correct;
      if (r.score.extracted_answer) sc["extracted_answer"] = *r.score.extracted_answer;
      j.push_back({{"prompt", r.prompt}, {"ids", r.completion.ids}, {"text", r.completion.text},
                   {"finish_reason", r.completion.finish_reason}, {"score", sc}, {"sampling", r.sampling_logps}});
    }
    std::vector<grpo::Rollout> out;
    for (const std::string& part : dist_->all_gather_bytes(j.dump()))
      for (const auto& x : nlohmann::json::parse(part)) {
        grpo::Rollout r;
        r.prompt = x.at("prompt").get<size_t>();
        r.prompt_ids = prompts.at(r.prompt);
        r.completion = {x.at("ids").get<std::vector<int32_t>>(), x.at("text").get<std::string>(),
                        x.at("finish_reason").get<std::string>()};
        const auto& sc = x.at("score");
        r.score.total = sc.at("total").get<double>();
        r.score.parts = sc.at("parts").get<std::map<std::string, double>>();
        r.score.error = sc.at("error").get<std::string>();
        r.score.errored = sc.at("errored").get<bool>();
        if (sc.contains("correct")) r.score.correct = sc["correct"].get<bool>();
        if (sc.contains("extracted_answer")) r.score.extracted_answer = sc["extracted_answer"].get<std::string>();
        r.sampling_logps = x.at("sampling").get<std::vector<float>>();
        out.push_back(std::move(r));
      }
    return out;
  }

  // The data cursor (prompts drawn so far) after `steps` steps: steps x prompts_per_step, or with
  // dynamic sampling what the cursor file recorded for that step (written after every step, so a
  // checkpoint of any step finds its line).
  int64_t cursor_after(warmup::StageContext& ctx, int64_t steps) const {
    if (!dynamic_sampling_ || steps == 0) return steps * prompts_per_step_;
    std::ifstream in(ctx.checkpoint_dir() / "grpo_cursor.jsonl");
    std::string line;
    int64_t found = -1;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_object() && j.value("step", int64_t(-1)) == steps) found = j.value("cursor", int64_t(-1));
    }
    if (found < 0)
      throw std::runtime_error((ctx.checkpoint_dir() / "grpo_cursor.jsonl").string() + " has no data cursor for step " +
                               std::to_string(steps) + ": cannot resume dynamic sampling exactly");
    return found;
  }

  void save_cursor(warmup::StageContext& ctx, int64_t steps) const {
    if (!dynamic_sampling_) return;
    std::filesystem::create_directories(ctx.checkpoint_dir());
    std::ofstream out(ctx.checkpoint_dir() / "grpo_cursor.jsonl", std::ios::app);
    out << nlohmann::json{{"step", steps}, {"cursor", cursor_}}.dump() << "\n";
    out.flush();
    if (!out) throw std::runtime_error((ctx.checkpoint_dir() / "grpo_cursor.jsonl").string() + ": cannot write");
  }

  void score(warmup::StageContext& ctx, const std::vector<const Item*>& items, std::vector<grpo::Rollout>& rolls) {
    std::vector<warmup::Score> scores;
    warmup::score_parallel(
        ctx.rewards(), rolls.size(), [&](size_t r) -> const warmup::Example& { return *items[rolls[r].prompt]->example; },
        [&](size_t r) -> const std::string& { return rolls[r].completion.text; }, scores, reward_workers_);
    for (size_t r = 0; r < rolls.size(); ++r) rolls[r].score = std::move(scores[r]);
  }

  void record(warmup::StageContext& ctx, const std::vector<const Item*>& items, const std::vector<grpo::Rollout>& rolls,
              const torch::Tensor& /*rewards: over judged completions below*/, const torch::Tensor& adv, const torch::Tensor& zero_std,
              const grpo::LossStats& st, int64_t s1, int64_t per_epoch, double lr, double gnorm, double loss,
              double gen_s, double score_s, double train_s) {
    auto m = [&](const std::string& k, double v) { ctx.metric("train/" + k, s1, v); };
    std::vector<double> judged;
    for (size_t r = 0; r < rolls.size(); ++r)
      if (!rolls[r].score.errored) judged.push_back(rolls[r].score.total);
    auto jt = torch::tensor(judged, torch::kFloat64);
    mean_reward_ = judged.empty() ? std::nan("") : jt.mean().item<double>();
    m("reward", mean_reward_);
    m("reward_std", judged.size() > 1 ? jt.std().item<double>() : 0.0);
    m("error_rate", 1.0 - double(judged.size()) / double(rolls.size()));
    std::map<std::string, std::vector<double>> parts;
    for (const auto& r : rolls)
      for (const auto& [k, v] : r.score.parts) parts[k].push_back(v);
    for (const auto& [k, v] : parts) {
      auto t = torch::tensor(v, torch::kFloat64);
      m("rewards/" + k + "/mean", t.mean().item<double>());
      m("rewards/" + k + "/std", v.size() > 1 ? t.std().item<double>() : 0.0);
    }
    m("frac_reward_zero_std", zero_std.to(torch::kFloat64).mean().item<double>());
    m("advantages/mean", adv.mean().item<double>());
    m("advantages/std", adv.std().item<double>());
    m("advantages/min", adv.min().item<double>());
    m("advantages/max", adv.max().item<double>());
    double n = 0, sum = 0, mn = 1e30, mx = 0, trunc = 0, correct = 0, known = 0;
    for (const auto& r : rolls) {
      double len = double(r.completion.ids.size());
      n += 1, sum += len, mn = std::min(mn, len), mx = std::max(mx, len);
      trunc += r.completion.finish_reason == "length";
      if (r.score.correct) known += 1, correct += *r.score.correct;
    }
    mean_len_ = sum / n;
    m("completions/mean_length", mean_len_);
    m("completions/min_length", mn);
    m("completions/max_length", mx);
    m("completions/clipped_ratio", trunc / n);
    if (known > 0) m("accuracy", correct / known);
    double tok = std::max(1.0, st.tokens);
    m("clip_ratio/low_mean", st.low_clipped / tok);
    m("clip_ratio/high_mean", st.high_clipped / tok);
    m("clip_ratio/region_mean", st.region_clipped / tok);
    if (lo_.beta != 0.0) m("kl", st.kl / tok);
    m("entropy", st.entropy / tok);
    m("loss", loss);
    m("learning_rate", lr);
    m("grad_norm", gnorm);
    m("epoch", double(s1) / double(per_epoch));
    m("time/generate", gen_s);
    // The engine's share of it (time/generate_forward, _sample, _host) and its state
    // (generation/tokens_per_s, prefix_cache_hit_rate, num_preemptions, kv_cache_usage_perc, ...).
    for (const auto& [name, value] : gen_stats_) {
      if (name.ends_with("_s") && !name.ends_with("_per_s"))  // seconds (a rate such as tokens_per_s is not)
        m("time/generate_" + name.substr(0, name.size() - 2), value);
      else
        m("generation/" + name, value);
    }
    m("time/score", score_s);
    m("time/train", train_s);
    m("padding_frac", padding_frac_);  // share of the training forward's positions that are padding
    if (is_correction_) {  // TRL's sampling/* metrics, plus the share capped and KL(sampler || trainer)
      const auto& is = is_stats_;
      double rn = std::max(1.0, is.ratio_count), dn = std::max(1.0, is.diff_count);
      m("sampling/importance_sampling_ratio/min", is.ratio_count > 0 ? is.ratio_min : 0.0);
      m("sampling/importance_sampling_ratio/mean", is.ratio_sum / rn);
      m("sampling/importance_sampling_ratio/max", is.ratio_count > 0 ? is.ratio_max : 0.0);
      m("sampling/importance_sampling_ratio/frac_capped", is.capped / rn);
      m("sampling/sampling_logp_difference/mean", is.diff_sum / dn);
      m("sampling/sampling_logp_difference/max", is.diff_max);
      m("sampling/kl_sampler_trainer", is.kl_sum / dn);
    }
    int64_t groups = log_groups_ < 0 ? int64_t(items.size()) : std::min<int64_t>(log_groups_, int64_t(items.size()));
    for (size_t r = 0; r < rolls.size(); ++r) {
      if (int64_t(rolls[r].prompt) >= groups) continue;
      const Item& it = *items[rolls[r].prompt];
      warmup::SampleRecord s;
      s.task = it.task, s.example_id = it.example->id, s.step = s1, s.prompt = it.example->prompt;
      s.completion = rolls[r].completion.text, s.completion_tokens = int64_t(rolls[r].completion.ids.size());
      s.finish_reason = rolls[r].completion.finish_reason, s.reward = rolls[r].score.total;
      s.rewards = rolls[r].score.parts, s.correct = rolls[r].score.correct;
      s.advantage = adv[int64_t(r)].item<double>();
      ctx.sample(s);
    }
  }

  std::string split_, scale_;
  warmup::LrSchedule schedule_;
  std::vector<std::string> stop_;
  int64_t num_examples_, data_seed_, seed_, max_steps_, prompts_per_step_, G_, micro_, iterations_, top_k_, max_prompt_;
  std::optional<warmup::LoraOptions> lora_;
  int64_t save_steps_, log_groups_, reward_workers_, logging_steps_ = 10;
  int64_t first_step_ = 0;  // the step this process started at (after a resume), for the ETA
  Clock::time_point t_start_ = Clock::now();
  double epochs_, temperature_, top_p_, min_p_, beta1_, beta2_, eps_, weight_decay_, max_grad_norm_, max_error_rate_;
  bool mask_truncated_, checkpointing_, bf16_ = false;
  int64_t overlong_buffer_ = 0, max_gen_batches_ = 10, cursor_ = 0;
  bool dynamic_sampling_ = false, padding_free_ = false;
  double padding_frac_ = 0;
  double overlong_factor_ = 1.0;
  warmup::Bf16 bf16_mode_ = warmup::Bf16::off;
  grpo::LossOptions lo_;
  bool is_correction_ = false;
  grpo::ImportanceSampling is_;
  grpo::ImportanceStats is_stats_;  // of the last step
  std::vector<std::vector<warmup::Example>> examples_;
  std::vector<Item> data_;
  std::optional<warmup::EpochOrder> order_;
  double mean_len_ = 0, mean_reward_ = 0;  // of the last step (judged completions)
  std::vector<std::pair<std::string, double>> gen_stats_;  // the last rollout's engine statistics (rank 0's)
  warmup::Distributed* dist_ = nullptr;  // the run's ranks (one in a one-process run)
  warmup::Zero1* zero_ = nullptr;        // of the running stage
  int64_t zero_stage_ = 0;
  warmup::DataParallelOptions ddp_;
  warmup::GradientReducer* reducer_ = nullptr;  // of the running stage
};

}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Algorithm, Grpo>("grpo", "0.1.0",
                                                     "GRPO with TRL GRPOConfig semantics (PPO-clip, group advantages, KL)"))
