// he_check: judges candidate code against a HumanEval(+) problem with two processes per check,
// each in its own sandbox: the candidate's (harness/he_candidate.py: runs the code, answers calls
// with plain data) and a trusted checker (harness/he_checker.py, one long-lived process per worker
// slot: holds the tests and the expected outputs, calls the candidate, decides). The host relays
// lines between them, enforces the per-call and wall-clock limits and the output caps, and takes
// the verdict only from the checker. Variants:
//   "plus_originfmt", "base": HumanEval's check(candidate) runs in the checker with `candidate` a
//                             proxy for the candidate's function (pass = it completes);
//   "plus": EvalPlus's base and plus inputs, outputs compared in the checker with the canonical
//           solution's (computed once per task, the same way, and cached), floats within atol.
#pragma once

#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "sandbox.h"

namespace he {

// What a task's Example::reference holds (a JSON object; see README.md).
struct Problem {
  std::string task_id, entry_point, variant;
  std::string prompt;     // the problem's prompt (helpers the tests use: poly, encode_cyclic...)
  std::string test;       // plus_originfmt / base: the check(candidate) code
  std::string canonical;  // plus: prompt + canonical solution
  std::string base_input, plus_input;  // plus: JSON text of the lists of argument lists
  int64_t n_base = 0, n_plus = 0;      // plus: how many inputs each
  double atol = 0.0;
};
// Throws std::runtime_error on a reference that is not one of ours.
Problem parse_reference(const std::string& reference);

struct Verdict {
  std::string status;  // "pass" | "fail" | "timeout" | "error" (the sandbox, the checker or the canonical failed)
  int64_t base_passed = 0, base_total = 0, plus_passed = 0, plus_total = 0;  // plus variant only
  std::string reason;     // why not "pass": the exception, the limit hit, the signal
  std::string isolation;  // the candidate's sandbox (SandboxResult::isolation)
  bool pass() const { return status == "pass"; }
  double fraction() const;  // plus: inputs passed / inputs; others: 1 or 0
};

class Checker {
 public:
  // `config` sandboxes both processes; `result_bytes` caps one answer line of the candidate.
  // `warm_pool`: candidates start from a per-slot zygote (harness/he_zygote.py) in fresh
  // namespaces instead of a new bubblewrap sandbox each (cold start where namespaces are refused).
  Checker(SandboxConfig config, int workers, double input_timeout_s, int64_t result_bytes = int64_t(64) << 20,
          bool warm_pool = true);
  ~Checker();
  // `fast`: stop at the first failing input (plus variant). Never throws on bad code.
  Verdict check(const Problem& p, const std::string& code, bool fast);

 private:
  struct Slot;
  struct Expected {
    std::string encoded, error;  // he_wire-encoded [base outputs, plus outputs]
  };
  Expected expected(const Problem& p);
  // One job: a candidate running `code`, the slot's checker running `job` (+ `extra` line).
  // wall_s: the candidate's wall clock (kept by the checker; the job carries it too).
  Verdict relay(const Problem& p, const std::string& code, double wall_s, const std::string& job, const std::string& extra,
                std::string* expected_out);

  // The slot's zygote, started if needed; null when the pool is off or refused (then `pool_why_`).
  Spawned* zygote(Slot& slot);
  // Turns the pool off for good (the first reason is kept and printed once); returns null.
  Spawned* refuse_pool(const std::string& why);

  SandboxConfig config_;
  double input_timeout_s_;
  bool warm_pool_;
  std::string pool_why_;  // why the warm pool is not used (set once, under mu_)
  int64_t result_bytes_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<int> free_;
  int first_slot_;  // reserve_slots: the checker of slot i is first_slot_ + 2i + 1, its candidates + 2i
  std::map<std::string, std::shared_future<Expected>> expected_;  // by task_id and inputs
};

}  // namespace he
