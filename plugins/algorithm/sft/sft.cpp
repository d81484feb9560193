// sft: full-parameter supervised fine-tuning with the loss on completion tokens only (stage 1 of
// the paper: distilled K&K traces). AdamW, constant_with_warmup / cosine / linear schedules,
// gradient accumulation, grad-norm clipping, activation checkpointing, max length (truncating the
// completion, counted), optional packing (best-fit decreasing; attention stays within each
// sequence), seeded shuffling per epoch, held-out eval loss, checkpoints (weights in HF format +
// optimizer + step) and exact resume. Defaults are the paper's. Data: a JSONL file of
// {prompt, completion} (e.g. from `distill`), or the stage's tasks completed by its teacher.
//
// Metrics: train/loss (mean NLL per completion token), train/learning_rate (TRL's name), train/grad_norm,
// train/tokens_per_s, train/epoch, eval/loss, data/truncated.
#include <chrono>
#include <cmath>
#include <fstream>
#include <random>

#include "sft_batch.h"
#include "warmup/model.h"
#include "warmup/precision.h"
#include "plugin_common/jsonl.h"
#include "plugin_common/paths.h"
#include "warmup/sdk.h"
#include "warmup/sft_data.h"
#include "warmup/training.h"

namespace {

namespace fs = std::filesystem;

class Sft final : public warmup::Algorithm {
 public:
  explicit Sft(const warmup::PluginInit& init) : base_dir_(init.base_dir) {
    warmup::Options o(init);
    data_ = o.get<std::string>("data", "");          // JSONL {prompt, completion} ({run_dir} expands); "" = tasks + teacher
    split_ = o.get<std::string>("split", "train");   // task split when data = ""
    schedule_.lr = o.get<double>("learning_rate", 1e-6, warmup::learning_rate_bounds());
    schedule_.type = o.get<std::string>("lr_scheduler_type", "constant_with_warmup");  // | cosine | linear | constant
    schedule_.warmup_steps = o.get<int64_t>("warmup_steps", 25, warmup::steps_bounds());
    beta1_ = o.get<double>("adam_beta1", 0.9, warmup::adam_beta_bounds());
    beta2_ = o.get<double>("adam_beta2", 0.95, warmup::adam_beta_bounds());
    eps_ = o.get<double>("adam_epsilon", 1e-8, warmup::adam_epsilon_bounds());
    weight_decay_ = o.get<double>("weight_decay", 1e-4, warmup::at_least(0));
    max_grad_norm_ = o.get<double>("max_grad_norm", 0.1, warmup::above(0));
    epochs_ = o.get<double>("num_train_epochs", 3.0, warmup::epochs_bounds());
    max_steps_ = o.get<int64_t>("max_steps", -1, warmup::at_least(-1).at_most(warmup::kMaxSteps));  // overrides epochs when > 0
    max_length_ = o.get<int64_t>("max_length", 32768,
                                 warmup::fits_in_memory(2, warmup::kMinBytesPerToken, "tokens of 16 bytes"));
    // Rows of max_length tokens: what one micro-batch may hold.
    batch_ = o.get<int64_t>("per_device_train_batch_size", 1,
                            warmup::fits_in_memory(1, warmup::kMinBytesPerToken * (long double)max_length_,
                                                   "rows of max_length " + std::to_string(max_length_) + " tokens"));
    accum_ = o.get<int64_t>("gradient_accumulation_steps", 2, warmup::at_least(1).at_most(1 << 20));
    append_eos_ = o.get<bool>("append_eos", true);
    // TRL's SFTConfig.assistant_only_loss: loss on the assistant turns of conversational rows only
    // (the template's {% generation %} blocks; TRL's training template swapped in when it has none).
    assistant_only_loss_ = o.get<bool>("assistant_only_loss", false);
    // Several sequences per row of up to max_length tokens (best-fit decreasing, TRL's "bfd"),
    // each attending only to itself; per_device_train_batch_size then counts rows.
    packing_ = o.get<bool>("packing", false);
    checkpointing_ = o.get<bool>("gradient_checkpointing", false);
    bf16_mode_ = warmup::bf16_option(o);  // bf16 autocast (mixed precision): true, false or "auto"
    eval_examples_ = o.get<int64_t>("eval_examples", 0, warmup::at_least(0));  // held out for eval/loss (the paper: 100)
    eval_steps_ = o.get<int64_t>("eval_steps", 50, warmup::at_least(0));
    save_steps_ = o.get<int64_t>("save_steps", 0, warmup::at_least(0));  // checkpoint every N steps; 0 = only at the end
    logging_steps_ = warmup::logging_steps_option(o);  // TRL's name: the step line every N steps
    warmup::refuse_trl_only_options(o);
    seed_ = o.get<int64_t>("seed", int64_t(init.seed));
    // DeepSpeed's zero_optimization.stage: 0 (every rank keeps all AdamW state) or 1 (ZeRO-1: each
    // rank keeps and steps 1/N of it). Only matters with more than one rank.
    zero_stage_ = o.get<int64_t>("zero_stage", 0, warmup::at_least(0).at_most(2));
    if (zero_stage_ == 2)
      o.fail("zero_stage", "ZeRO-2 (reduce-scattered gradients) is not implemented; use 0 or 1");
    ddp_ = warmup::data_parallel_options(o);  // ddp_bucket_cap_mb, overlap_comm
    lora_ = warmup::lora_options(o);  // TRL's use_peft, lora_r, lora_alpha, lora_dropout, lora_target_modules
    if (!warmup::LrSchedule::known(schedule_.type))
      o.fail("lr_scheduler_type", "must be constant, constant_with_warmup, cosine or linear");
    o.finish();
  }

  void run(warmup::StageContext& ctx) override {
    warmup::Policy& policy = warmup::policy(ctx);
    warmup::Distributed& dist = warmup::distributed(ctx);
    const int64_t world = dist.world_size(), rank = dist.rank();
    bf16_ = warmup::bf16_enabled(bf16_mode_, policy.device());
    std::vector<sft::Sequence> all = load(ctx, policy);
    std::mt19937_64 split_rng{static_cast<uint64_t>(seed_)};
    std::shuffle(all.begin(), all.end(), split_rng);
    size_t n_eval = size_t(std::min<int64_t>(eval_examples_, int64_t(all.size()) / 2));
    std::vector<sft::Sequence> eval(all.begin(), all.begin() + long(n_eval)), train(all.begin() + long(n_eval), all.end());
    if (train.empty())
      throw warmup::DataError("sft: no training examples (" + std::to_string(dropped_) +
                              " dropped because their prompt alone exceeds max_length " + std::to_string(max_length_) + ")");
    if (packing_) {
      for (auto& r : sft::pack_best_fit(train, max_length_)) {
        rows_.emplace_back();
        for (size_t i : r) rows_.back().push_back(&train[i]);
      }
    } else {
      for (const auto& s : train) rows_.push_back({&s});
    }
    // A step takes per_device_train_batch_size x gradient_accumulation_steps rows on each rank (the
    // Trainer's global batch); rank r takes the r-th block of them.
    const int64_t per_rank = batch_ * accum_, per_step = per_rank * world;
    int64_t steps_per_epoch = (int64_t(rows_.size()) + per_step - 1) / per_step;
    int64_t total = warmup::total_steps("sft", epochs_, steps_per_epoch, max_steps_);
    if ((long double)total * (long double)per_step > 4e18L)  // the index of a row over all epochs is an int64
      throw warmup::ConfigError("sft: " + std::to_string(total) + " steps x " + std::to_string(per_step) +
                                " rows per step overflows the row index (at most 4e18 rows in a stage)");
    ctx.log(warmup::LogLevel::kInfo, "sft: " + std::to_string(train.size()) + " train / " + std::to_string(eval.size()) +
                                         " eval sequences, " + std::to_string(total) + " steps of " +
                                         std::to_string(per_step) + (packing_ ? " packed rows (" + std::to_string(rows_.size()) +
                                         " rows of <= " + std::to_string(max_length_) + " tokens)" : " sequences") +
                                         (world > 1 ? " over " + std::to_string(world) + " ranks" +
                                                          (zero_stage_ == 1 ? " (ZeRO-1)" : "") : ""));

    auto& module = policy.module();
    module.train();
    policy.set_activation_checkpointing(checkpointing_);
    if (lora_) {
      int64_t n = policy.enable_lora(*lora_, uint64_t(seed_));
      ctx.log(warmup::LogLevel::kInfo, std::string("sft") + ": LoRA r=" + std::to_string(lora_->r) + " on " + std::to_string(n) +
                                           " linear layers; the base weights are frozen, the output is a PEFT adapter");
    }
    std::vector<torch::Tensor> params = warmup::trainable_parameters(policy);
    torch::optim::AdamW opt(params, torch::optim::AdamWOptions(schedule_.lr).betas({beta1_, beta2_}).eps(eps_).weight_decay(weight_decay_));
    warmup::Zero1 zero(dist, params, zero_stage_ == 1);
    int64_t start = 0;
    if (ctx.resuming()) {
      nlohmann::json state;
      start = warmup::restore_checkpoint(ctx, policy, opt, &state);
      // The data order is derived from the step and the rows per step: resuming with another world
      // size must keep the global batch (per_device_train_batch_size x accumulation x ranks).
      if (start > 0 && state.contains("rows_per_step") && state["rows_per_step"].get<int64_t>() != per_step)
        throw warmup::ConfigError(
            "sft: the checkpoint at step " + std::to_string(start) + " was written with " +
            std::to_string(state["rows_per_step"].get<int64_t>()) + " rows per step (" +
            std::to_string(state.value("world_size", int64_t(1))) + " ranks); now " + std::to_string(world) + " x " +
            std::to_string(batch_) + " x " + std::to_string(accum_) + " = " + std::to_string(per_step) +
            ": resume with --set stages." + ctx.stage_name() + ".sft.per_device_train_batch_size or "
            ".gradient_accumulation_steps so that ranks x batch x accumulation is " +
            std::to_string(state["rows_per_step"].get<int64_t>()));
      zero.drop_foreign_state(opt);
    }
    // The gradients are all-reduced bucket by bucket during the backward of each step's last micro-batch.
    warmup::GradientReducer reducer = warmup::make_gradient_reducer(dist, params, ddp_);
    const nlohmann::json ckpt_state = {{"rows_per_step", per_step}, {"world_size", world}};
    auto checkpoint = [&](int64_t at) {
      zero.gather_state(opt);
      warmup::save_checkpoint(ctx, policy, opt, at, ckpt_state);
      zero.drop_foreign_state(opt);
    };

    auto t0 = std::chrono::steady_clock::now();
    const int64_t start_step = start;
    for (int64_t step = start; step < total; ++step) {
      warmup::seed_step(seed_, step);  // lora_dropout's masks: the same on resume
      double lr = schedule_.at(step, total);
      schedule_.apply(opt, lr);
      auto ts = std::chrono::steady_clock::now();
      double loss_sum = 0;
      int64_t tokens = 0;
      // The step's loss is the mean over every target token of all its micro-batches, as the
      // Trainer's num_items_in_batch makes it (transformers trainer.py, TRL's SFTTrainer).
      std::vector<std::vector<std::vector<const sft::Sequence*>>> micros;
      int64_t n_step = 0;
      for (int64_t micro = 0; micro < accum_; ++micro) {
        micros.push_back(micro_batch(step * per_step + rank * per_rank + micro * batch_));
        for (const auto& r : micros.back()) n_step += sft::count_completion_targets(r);
      }
      if (world > 1) n_step = int64_t(warmup::all_reduce_sum(dist, {double(n_step)})[0]);  // over the global batch
      for (size_t m = 0; m < micros.size(); ++m) {
        const auto& rows = micros[m];
        auto b = sft::make_packed_batch(rows, -1.0 / double(std::max<int64_t>(1, n_step)));
        torch::Tensor loss;
        {
          warmup::Autocast ac(policy.device(), bf16_);
          loss = policy.weighted_logprob_sum(b.ids, b.targets, b.weights, b.mask, nullptr);
        }
        if (m + 1 == micros.size()) reducer.prepare_for_backward();
        loss.backward();  // the gradient was computed with the forward pass; this applies it
        loss_sum += loss.item<double>();
        tokens += b.mask.gt(0).sum().item<int64_t>();
      }
      // Every rank's gradients summed (each was already divided by the global token count), the
      // loss and token counts with them, and whether any rank was asked to stop (all stop together;
      // one process looks again at the end of the step, as it always did).
      bool stop = false;
      double reduce_s = 0;
      if (world > 1) {
        auto tr = std::chrono::steady_clock::now();
        reducer.reduce();  // what backward did not hide: the wait for the buckets still in flight
        auto v = warmup::all_reduce_sum(dist, {loss_sum, double(tokens), ctx.stop_requested() ? 1.0 : 0.0});
        loss_sum = v[0], tokens = int64_t(v[1]), stop = v[2] > 0;
        reduce_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - tr).count();
      }
      double gnorm = torch::nn::utils::clip_grad_norm_(params, max_grad_norm_);
      if (!warmup::finite_step(loss_sum, gnorm)) {
        zero.gather_state(opt);
        warmup::stop_on_nonfinite(ctx, policy, opt, step, loss_sum, gnorm, true, ckpt_state);
      }
      zero.drop_foreign_grads();
      opt.step();
      zero.broadcast_params();
      reducer.zero_grad();  // in place in the gradient buckets with several ranks; dropped with one
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - ts).count();
      int64_t s1 = step + 1;
      ctx.metric("train/loss", s1, loss_sum);
      ctx.metric("train/learning_rate", s1, lr);
      ctx.metric("train/grad_norm", s1, gnorm);
      ctx.metric("train/tokens_per_s", s1, double(tokens) / std::max(secs, 1e-9));
      ctx.metric("train/epoch", s1, double(s1) / double(steps_per_epoch));
      if (world > 1) {  // rank 0's time waiting for the gradient all-reduce after backward, and its whole step's
        ctx.metric("train/allreduce_s", s1, reduce_s);
        ctx.metric("train/step_s", s1, secs);
      }
      if (world > 1 && s1 == start_step + 1) {  // AdamW's state exists after the first step: rank 0's, and the most on a rank
        auto bytes = dist.all_gather(torch::tensor({double(warmup::Zero1::state_bytes(opt))}, torch::kFloat64));
        double most = 0;
        for (auto& b : bytes) most = std::max(most, b.item<double>());
        ctx.metric("memory/optimizer_state_bytes", s1, bytes[0].item<double>());
        ctx.metric("memory/optimizer_state_bytes_max_rank", s1, most);
      }
      {
        double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        char detail[96];
        std::snprintf(detail, sizeof detail, "loss %.4f | %s", loss_sum,
                      warmup::eta_text(el, s1 - start_step, total - start_step).c_str());
        ctx.progress("step", s1, total, detail);
      }
      if (warmup::log_this_step(s1, total, logging_steps_)) {
        double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        char line[240];
        std::snprintf(line, sizeof(line), "step %lld/%lld | loss %.4f | lr %.3g | grad %.3f | %.0f tok/s | %.1fs | %s",
                      (long long)s1, (long long)total, loss_sum, lr, gnorm, double(tokens) / std::max(secs, 1e-9), el,
                      warmup::eta_text(el, s1 - start_step, total - start_step).c_str());
        ctx.log(warmup::LogLevel::kInfo, line);
      }
      if (!eval.empty() && eval_steps_ > 0 && (s1 % eval_steps_ == 0 || s1 == total)) ctx.metric("eval/loss", s1, eval_loss(policy, eval));
      if (world == 1) stop = ctx.stop_requested();
      if ((save_steps_ > 0 && s1 % save_steps_ == 0) || stop) checkpoint(s1);
      if (stop) return;
    }
    warmup::save_output_model(ctx, policy);
  }

  // `data` (unless an earlier stage writes it: {run_dir}) exists and its first record parses;
  // without `data`, each task's `split` loads.
  void validate(const warmup::StagePlan& plan, warmup::Validation& v) override {
    std::string who = "stages." + plan.stage_name + ".sft";
    if (data_.empty()) {
      if (plan.tasks.empty() || plan.teachers.empty()) v.error(who + ": sft needs `data` or a task and a teacher");
      if (assistant_only_loss_)
        v.error(who + ".assistant_only_loss: needs conversational `data`; a teacher's completions are prompt-completion text");
      for (const auto& t : plan.tasks) v.check_split(t, split_, who);
      return;
    }
    if (data_.find("{run_dir}") != std::string::npos) return;
    try {
      warmup::common::read_jsonl(warmup::common::resolve_path(data_, base_dir_), [&](nlohmann::json& j, const std::string& where, int64_t) {
        std::string format = warmup::check_sft_row(j, where);
        if (assistant_only_loss_ && (format == "prompt-completion" || format == "text"))
          throw warmup::DataError(where + ": assistant_only_loss applies to conversational rows only, as in TRL; "
                                  "this row is " + format);
        return false;  // the first record is enough
      });
    } catch (const std::exception& e) {
      v.error(who + ".data: " + e.what());
    }
  }

 private:
  // Each record tokenised as TRL does (warmup/sft_data.h: prompt-completion, text, messages,
  // conversational prompt-completion through the model's chat template).
  std::vector<sft::Sequence> load(warmup::StageContext& ctx, warmup::Policy& policy) {
    warmup::SftTokenizer tk{[&](const std::string& s) { return policy.encode(s); },
                            [&](const nlohmann::json& m, bool gen) { return policy.apply_chat_template(m, gen); },
                            policy.eos_ids(), append_eos_, {}, false};
    if (assistant_only_loss_) {
      tk.assistant_only_loss = true;
      tk.training_chat = [&](const nlohmann::json& m, bool gen) { return policy.apply_training_chat_template(m, gen); };
    }
    std::vector<warmup::SftTokens> rows;
    if (!data_.empty()) {
      std::string d = data_;  // "{run_dir}" names this run's directory (a previous stage's output)
      for (size_t at; (at = d.find("{run_dir}")) != std::string::npos;) d.replace(at, 9, ctx.run_dir().string());
      fs::path p = warmup::common::resolve_path(d, base_dir_);
      warmup::common::read_jsonl(p.string(), [&](nlohmann::json& j, const std::string& where, int64_t) {
        rows.push_back(warmup::tokenize_sft_row(j, tk, where));
        return true;
      }, "SFT data");
    } else {
      if (ctx.tasks().empty() || ctx.teachers().empty())
        throw warmup::ConfigError("stage '" + ctx.stage_name() + "': sft needs `data` or a task and a teacher");
      for (const auto& t : ctx.tasks()) {
        auto ex = t.task->examples(split_);
        ctx.dataset(t.name, split_, ex);
        // The teacher answers once, on rank 0 (an API teacher samples, bills and caches): the other
        // ranks get its completions, so every rank trains on the same rows.
        warmup::Distributed& dist = warmup::distributed(ctx);
        std::vector<std::string> texts;
        if (dist.rank() == 0)
          for (const auto& c : ctx.teachers().front().teacher->complete(ex, 1)) texts.push_back(c.at(0).text);
        if (dist.world_size() > 1)
          texts = nlohmann::json::parse(dist.broadcast_bytes(dist.rank() == 0 ? nlohmann::json(texts).dump() : "", 0))
                      .get<std::vector<std::string>>();
        for (size_t i = 0; i < ex.size(); ++i)
          rows.push_back(warmup::tokenize_sft_row({{"prompt", ex[i].prompt}, {"completion", texts.at(i)}}, tk,
                                                  t.name + "/" + ex[i].id));
      }
    }
    std::vector<sft::Sequence> out;
    int64_t truncated = 0, untrained = 0;
    for (auto& row : rows) {
      sft::Sequence s{std::move(row.prompt), std::move(row.completion), std::move(row.completion_mask)};
      int64_t len = int64_t(s.prompt.size() + s.completion.size());
      if (len > max_length_) {
        ++truncated;
        int64_t keep = max_length_ - int64_t(s.prompt.size());
        if (keep < 1) {  // the prompt alone is too long: dropped (counted as truncated)
          ++dropped_;
          continue;
        }
        s.completion.resize(size_t(keep));
        if (!s.mask.empty()) s.mask.resize(size_t(keep));
      }
      if (sft::count_completion_targets({&s}) == 0) {  // nothing left to train on (TRL drops such rows too)
        ++untrained;
        continue;
      }
      out.push_back(std::move(s));
    }
    ctx.metric("data/truncated", 0, double(truncated));
    if (untrained > 0) ctx.metric("data/untrained", 0, double(untrained));
    ctx.metric("data/sequences", 0, double(out.size()));
    return out;
  }

  // Rows [first, first + batch) of the epoch-shuffled order (each epoch its own seed).
  std::vector<std::vector<const sft::Sequence*>> micro_batch(int64_t first) {
    if (!order_) order_.emplace(int64_t(rows_.size()), uint64_t(seed_));
    std::vector<std::vector<const sft::Sequence*>> out;
    for (int64_t k = first; k < first + batch_; ++k) out.push_back(rows_[size_t((*order_)(k))]);
    return out;
  }

  double eval_loss(warmup::Policy& policy, const std::vector<sft::Sequence>& eval) {
    torch::NoGradGuard ng;
    policy.module().eval();
    double total = 0;
    int64_t tokens = 0;
    for (const auto& s : eval) {
      auto b = sft::make_batch({&s}, -1.0);
      total += policy.weighted_logprob_sum(b.ids, b.targets, b.weights, b.mask, nullptr).item<double>();
      tokens += b.completion_tokens;
    }
    policy.module().train();
    return total / double(std::max<int64_t>(1, tokens));
  }

  std::string base_dir_, data_, split_;
  warmup::LrSchedule schedule_;
  double beta1_, beta2_, eps_, weight_decay_, max_grad_norm_, epochs_;
  int64_t zero_stage_ = 0;
  warmup::DataParallelOptions ddp_;
  int64_t max_steps_, batch_, accum_, max_length_, eval_examples_, eval_steps_, save_steps_, seed_, logging_steps_ = 10;
  std::optional<warmup::LoraOptions> lora_;
  bool append_eos_, assistant_only_loss_ = false, checkpointing_, bf16_ = false, packing_;
  warmup::Bf16 bf16_mode_ = warmup::Bf16::off;
  std::vector<std::vector<const sft::Sequence*>> rows_;  // what a step draws from: packed rows or single sequences
  std::optional<warmup::EpochOrder> order_;
  int64_t dropped_ = 0;
};

}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Algorithm, Sft>("sft", "0.1.0",
                                                    "full-parameter SFT, loss on completion tokens (AdamW, schedules, resume)"))
