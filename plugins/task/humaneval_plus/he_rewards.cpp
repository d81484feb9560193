// he_rewards: option parsing and scoring of humaneval_paper and humaneval_pass_fraction.
#include "he_rewards.h"

#include "he_extract.h"

namespace he {

CodeReward::CodeReward(warmup::Options& o, bool gate_default) {
  SandboxConfig c;
  c.interpreter = o.get<std::string>("interpreter", "/usr/bin/python3");  // needs numpy for plus/plus_originfmt
  c.wall_s = o.get<double>("timeout_s", 30.0);         // wall-clock limit per sample, s (paper: 30)
  c.cpu_s = o.get<double>("cpu_s", 30.0);              // CPU-time limit per sample, s
  c.memory_mb = o.get<int64_t>("memory_mb", 2048);     // address-space limit, MiB
  c.file_size_mb = o.get<int64_t>("file_size_mb", 16); // largest file the program may write, MiB
  c.open_files = o.get<int64_t>("open_files", 64);     // open file descriptors
  c.processes = o.get<int64_t>("processes", 32);       // processes + threads (RLIMIT_NPROC)
  c.output_bytes = o.get<int64_t>("output_bytes", 65536);  // captured stdout/stderr each, bytes
  c.namespaces = o.get<bool>("namespaces", true);      // PID/net/mount namespaces when permitted
  c.uid_base = o.get<int64_t>("uid_base", 0);          // as root: uid of slot 0 (0 = auto, -1 = stay root)
  c.tmp_root = o.get<std::string>("tmp_dir", "/tmp");  // where per-sample directories are made
  int64_t workers = o.get<int64_t>("workers", 2);      // concurrent sandboxes
  double input_timeout = o.get<double>("input_timeout_s", 4.0);  // plus variant: per input, s
  format_gate_ = o.get<bool>("format_gate", gate_default);       // apply the paper's format gate
  std::string block = o.get<std::string>("code_block", "first");  // first (paper RL) | last (paper eval)
  if (block != "first" && block != "last") o.fail("code_block", "must be first or last");
  if (workers < 1) o.fail("workers", "must be >= 1");
  if (c.wall_s <= 0 || c.cpu_s <= 0) o.fail("timeout_s", "and cpu_s must be > 0");
  if (resolve_program(c.interpreter).empty()) o.fail("interpreter", "is not an executable: " + c.interpreter);
  first_block_ = block == "first";
  checker_ = std::make_unique<Checker>(c, int(workers), input_timeout);
}

Verdict CodeReward::judge(const warmup::Example& ex, const std::string& completion, bool fast,
                          std::string& format_why) const {
  std::string answer;
  if (format_gate_) {
    if (!format_ok(completion, answer, format_why)) return Verdict{"fail", 0, 0, 0, 0, "format", ""};
  } else {
    answer = answer_span(completion);
  }
  Problem p;
  try {
    p = parse_reference(ex.reference);
  } catch (const std::exception& e) {
    return Verdict{"error", 0, 0, 0, 0, std::string("bad reference (not a humaneval_plus example?): ") + e.what(), ""};
  }
  return checker_->check(p, extract_code(answer, first_block_), fast);
}

PaperReward::PaperReward(const warmup::PluginInit& init) : PaperReward(warmup::Options(init)) {}

PaperReward::PaperReward(warmup::Options&& o) : CodeReward(o, true) {
  correct_ = o.get<double>("correct", 2.0);         // the code passes every test
  wrong_ = o.get<double>("wrong", -1.0);            // it fails, times out or does not run
  format_error_ = o.get<double>("format_error", -2.0);  // the format gate failed
  o.finish();
}

warmup::RewardResult PaperReward::score(const warmup::Example& ex, const std::string& completion) const {
  warmup::RewardResult r;
  std::string format_why;
  Verdict v = judge(ex, completion, true, format_why);
  r.correct = v.pass();
  r.breakdown["format"] = format_why.empty() ? 1.0 : 0.0;
  if (!format_why.empty()) {
    r.value = format_error_;
    r.error = format_why;
    return r;
  }
  r.value = v.pass() ? correct_ : wrong_;
  r.breakdown["pass"] = v.pass() ? 1.0 : 0.0;
  if (v.base_total) r.breakdown["base_pass"] = v.base_passed == v.base_total ? 1.0 : 0.0;
  if (!v.pass()) r.error = v.status + ": " + v.reason + (v.isolation.empty() ? "" : " [" + v.isolation + "]");
  return r;
}

PassFraction::PassFraction(const warmup::PluginInit& init) : PassFraction(warmup::Options(init)) {}

PassFraction::PassFraction(warmup::Options&& o) : CodeReward(o, false) { o.finish(); }

warmup::RewardResult PassFraction::score(const warmup::Example& ex, const std::string& completion) const {
  warmup::RewardResult r;
  std::string format_why;
  Verdict v = judge(ex, completion, false, format_why);
  r.correct = v.pass();
  if (!format_why.empty()) {
    r.error = format_why;
    return r;
  }
  r.value = v.fraction();
  if (v.base_total) r.breakdown["base"] = double(v.base_passed) / double(v.base_total);
  if (v.plus_total) r.breakdown["plus"] = double(v.plus_passed) / double(v.plus_total);
  if (!v.pass()) r.error = v.status + ": " + v.reason + (v.isolation.empty() ? "" : " [" + v.isolation + "]");
  return r;
}

}  // namespace he
