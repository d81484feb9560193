// The MATH rewards (entries of the `math` plugin library, see math_task.cpp):
//   math_paper:    the paper's RLVR reward: format gate -2 (exactly one </think>, <answer>,
//                  </answer> and `.+</think>\s*<answer>(.+)</answer>\s*$`), no \boxed{} in the
//                  answer span -1, Math-Verify equal to the gold +2, else -0.5.
//   math_accuracy: the paper's evaluation: Math-Verify on the whole output, 1 / 0.
// Both are thread-safe (the verifier keeps no shared mutable state) and never throw. Running out
// of the verifier's time budget (`timeout_s`, ours) is an error result (RewardStatus::kError),
// not a wrong answer (Math-Verify itself returns False there). extracted_answer: the matched text.
#include "math_rewards.h"

#include <cstdio>

#include "plugin_common/paper_format.h"

#include "math_verify.h"
#include "mv_normalize.h"
#include "mv_regex.h"

namespace mathr {
namespace {

// The verifier ran out of our budget: the cause and the knob, not a verdict on the answer.
std::string budget_error(const mv::Verdict& v, double timeout_s) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", timeout_s);
  return "Math-Verify " + v.error + " (timeout_s = " + buf + " s, ours: not a verdict on the answer; raise timeout_s)";
}

}  // namespace

MathPaper::MathPaper(const warmup::PluginInit& init) {
  warmup::Options o(init);
  format_error_ = o.get<double>("format_error", -2.0);  // format gate failed
  no_boxed_ = o.get<double>("no_boxed", -1.0);          // no \boxed{} inside <answer>
  correct_ = o.get<double>("correct", 2.0);             // Math-Verify equal to the gold
  wrong_ = o.get<double>("wrong", -0.5);                // boxed but not equal
  timeout_s_ = o.get<double>("timeout_s", 1.0, warmup::above(0).at_most(3600));         // verifier budget per call, seconds
  if (timeout_s_ <= 0) o.fail("timeout_s", "must be > 0");
  o.finish();
}

warmup::RewardResult MathPaper::score(const warmup::Example& ex, const std::string& s) const {
  warmup::RewardResult r;
  std::string span;
  if (!warmup::paper_format_gate(s, format_error_, r, span)) return r;
  if (span.find("\\boxed") == std::string::npos || !mv::last_boxed(span)) {
    r.value = no_boxed_;
    r.error = "no \\boxed{} in the answer";
    return r;
  }
  mv::Verdict v = mv::verify_answer(ex.reference, span, timeout_s_);
  if (!v.extracted.empty()) r.extracted_answer = v.extracted;
  if (v.timed_out) return r.fail_harness(budget_error(v, timeout_s_)), r;  // our budget, not the answer's fault
  r.correct = v.equal;
  r.value = v.equal ? correct_ : wrong_;
  if (!v.equal) r.error = v.error.empty() ? "answer differs from the gold" : v.error;
  return r;
}

MathAccuracy::MathAccuracy(const warmup::PluginInit& init) {
  warmup::Options o(init);
  correct_ = o.get<double>("correct", 1.0);      // Math-Verify equal to the gold
  wrong_ = o.get<double>("wrong", 0.0);          // anything else
  timeout_s_ = o.get<double>("timeout_s", 1.0, warmup::above(0).at_most(3600));  // verifier budget per call, seconds
  if (timeout_s_ <= 0) o.fail("timeout_s", "must be > 0");
  o.finish();
}

warmup::RewardResult MathAccuracy::score(const warmup::Example& ex, const std::string& s) const {
  warmup::RewardResult r;
  mv::Verdict v = mv::verify_answer(ex.reference, s, timeout_s_);
  if (!v.extracted.empty()) r.extracted_answer = v.extracted;
  if (v.timed_out) return r.fail_harness(budget_error(v, timeout_s_)), r;
  r.correct = v.equal;
  r.value = v.equal ? correct_ : wrong_;
  if (!v.equal) r.error = v.error.empty() ? "answer differs from the gold" : v.error;
  return r;
}

}  // namespace mathr
