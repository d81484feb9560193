// he_check: executes candidate code against a HumanEval(+) problem in the sandbox pool and
// returns a verdict. Variants: "plus_originfmt" and "base" run code + test + check(entry_point)
// in one process (pass = it completes); "plus" compares outputs on EvalPlus's base and plus
// inputs with the outputs of the canonical solution (computed once per task in the sandbox,
// cached), floats within atol, as EvalPlus does.
#pragma once

#include <future>
#include <map>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "sandbox.h"

namespace he {

// What a task's Example::reference holds (a JSON object; see README.md).
struct Problem {
  std::string task_id, entry_point, variant;
  std::string test;       // plus_originfmt / base: the check(candidate) code
  std::string canonical;  // plus: prompt + canonical solution
  std::string base_input, plus_input;  // plus: JSON text of the lists of argument lists
  int64_t n_base = 0, n_plus = 0;      // plus: how many inputs each
  double atol = 0.0;
};
// Throws std::runtime_error on a reference that is not one of ours.
Problem parse_reference(const std::string& reference);

struct Verdict {
  std::string status;  // "pass" | "fail" | "timeout" | "error" (the sandbox or the canonical failed)
  int64_t base_passed = 0, base_total = 0, plus_passed = 0, plus_total = 0;  // plus variant only
  std::string reason;     // why not "pass": the exception, the limit hit, the signal
  std::string isolation;  // the sandbox's containment (SandboxResult::isolation)
  bool pass() const { return status == "pass"; }
  double fraction() const;  // plus: inputs passed / inputs; others: 1 or 0
};

class Checker {
 public:
  Checker(SandboxConfig config, int workers, double input_timeout_s);
  // `fast`: stop at the first failing input (plus variant). Never throws on bad code.
  Verdict check(const Problem& p, const std::string& code, bool fast);

 private:
  struct Expected {
    std::string pickle, error;
  };
  Expected expected(const Problem& p);
  Verdict run(const SandboxJob& job, const std::string& nonce, nlohmann::json& line);

  SandboxPool pool_;
  double input_timeout_s_;
  std::mutex mu_;
  std::map<std::string, std::shared_future<Expected>> expected_;  // by task_id
};

}  // namespace he
