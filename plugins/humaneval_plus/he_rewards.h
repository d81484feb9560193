// he_rewards: the rewards of the humaneval_plus task. Both extract code from the completion,
// run it through a Checker (sandbox pool) and never throw on bad model output.
//   humaneval_paper:         format gate -2, then pass +2 / fail -1 (the paper's reward).
// A verdict the harness could not reach (sandbox, checker or canonical solution failed) is a
// RewardStatus::kError result, never a fail; the constructor checks that the interpreter runs in
// the sandbox and imports numpy, and refuses to start otherwise.
//   humaneval_pass_fraction: the fraction of tests passed (plus variant: of base+plus inputs;
//                            other variants: 1 or 0); 0 when the format gate (off by default) fails.
#pragma once

#include <memory>
#include <optional>

#include "he_check.h"
#include "warmup/sdk.h"

namespace he {

// Options shared by both rewards (sandbox, extraction), read in the constructor.
class CodeReward : public warmup::Reward {
 protected:
  CodeReward(warmup::Options& o, bool gate_default);
  // The verdict for a completion; `format_why` is set (and nothing runs) when the gate fails;
  // `code` is the code that ran. Status "error" is the harness's failure, never the candidate's.
  Verdict judge(const warmup::Example& ex, const std::string& completion, bool fast, std::string& format_why,
                std::optional<std::string>& code) const;

 private:
  bool format_gate_, first_block_;
  std::unique_ptr<Checker> checker_;
};

class PaperReward final : public CodeReward {
 public:
  explicit PaperReward(const warmup::PluginInit& init);
  warmup::RewardResult score(const warmup::Example& ex, const std::string& completion) const override;

 private:
  PaperReward(warmup::Options&& o);
  double correct_, wrong_, format_error_;
};

class PassFraction final : public CodeReward {
 public:
  explicit PassFraction(const warmup::PluginInit& init);
  warmup::RewardResult score(const warmup::Example& ex, const std::string& completion) const override;

 private:
  PassFraction(warmup::Options&& o);
};

}  // namespace he
