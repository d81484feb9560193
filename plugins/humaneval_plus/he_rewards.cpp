// he_rewards: option parsing and scoring of humaneval_paper and humaneval_pass_fraction.
#include "he_rewards.h"

#include "he_extract.h"

#include <cstdio>

namespace he {

CodeReward::CodeReward(warmup::Options& o, bool gate_default) {
  SandboxConfig c;
  c.mode = o.get<std::string>("sandbox", "bwrap");     // bwrap (bubblewrap) | unsafe-local (no bubblewrap: weaker)
  c.bwrap = o.get<std::string>("bwrap", "bwrap");      // the bubblewrap executable
  c.interpreter = o.get<std::string>("interpreter", "/usr/bin/python3");  // needs numpy for plus/plus_originfmt
  c.wall_s = o.get<double>("timeout_s", 30.0);         // wall-clock limit per sample, s (paper: 30)
  c.cpu_s = o.get<double>("cpu_s", 30.0);              // CPU-time limit per sample, s
  c.memory_mb = o.get<int64_t>("memory_mb", 2048);     // memory of the whole sample (and each process), MiB
  c.file_size_mb = o.get<int64_t>("file_size_mb", 16); // largest file the program may write, MiB
  c.tmpfs_mb = o.get<int64_t>("tmpfs_mb", 64);         // bwrap: size of each private tmpfs (/tmp, /var/tmp, /dev/shm), MiB
  c.open_files = o.get<int64_t>("open_files", 64);     // open file descriptors
  c.processes = o.get<int64_t>("processes", 32);       // processes + threads (RLIMIT_NPROC)
  c.output_bytes = o.get<int64_t>("output_bytes", 65536);  // captured stderr, bytes
  c.namespaces = o.get<bool>("namespaces", true);      // unsafe-local: PID/net/mount namespaces when permitted
  c.uid_base = o.get<int64_t>("uid_base", 0);          // as root: uid of slot 0 (0 = auto)
  c.tmp_root = o.get<std::string>("tmp_dir", "/tmp");  // unsafe-local: where per-sample directories are made
  int64_t workers = o.get<int64_t>("workers", 2);      // concurrent sandboxes
  double input_timeout = o.get<double>("input_timeout_s", 4.0);  // plus variant: per input, s
  int64_t result_mb = o.get<int64_t>("result_mb", 64);  // largest answer of one call, MiB
  bool warm_pool = o.get<bool>("warm_pool", true);  // bwrap: programs forked from a warm zygote in fresh namespaces
  format_gate_ = o.get<bool>("format_gate", gate_default);       // apply the paper's format gate
  std::string block = o.get<std::string>("code_block", "first");  // first (paper RL) | last (paper eval)
  if (c.mode != "bwrap" && c.mode != "unsafe-local") o.fail("sandbox", "must be bwrap or unsafe-local");
  if (block != "first" && block != "last") o.fail("code_block", "must be first or last");
  auto num = [](double x) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.15g", x);
    return std::string(buf);
  };
  auto bounded = [&](const char* key, double v, double lo, double hi) {
    if (!(v >= lo && v <= hi))
      o.fail(key, "must be in [" + num(lo) + ", " + num(hi) + "]");
  };
  bounded("workers", double(workers), 1, 256);
  bounded("timeout_s", c.wall_s, 0.1, 86400);
  bounded("cpu_s", c.cpu_s, 1, 86400);
  bounded("input_timeout_s", input_timeout, 0.01, 3600);
  bounded("memory_mb", double(c.memory_mb), 64, 1 << 20);
  bounded("file_size_mb", double(c.file_size_mb), 1, 1 << 20);
  bounded("tmpfs_mb", double(c.tmpfs_mb), 1, 1 << 20);
  bounded("open_files", double(c.open_files), 16, 1 << 20);
  bounded("processes", double(c.processes), 1, 1 << 16);
  bounded("output_bytes", double(c.output_bytes), 0, double(int64_t(1) << 30));
  bounded("result_mb", double(result_mb), 1, 1 << 14);
  bounded("uid_base", double(c.uid_base), -1, double(int64_t(1) << 31) - 65536);
  if (resolve_program(c.interpreter).empty()) o.fail("interpreter", "is not an executable: " + c.interpreter);
  if (c.mode == "bwrap") {
    try {
      c.ro_paths = interpreter_paths(c.interpreter);
    } catch (const std::exception& e) {
      o.fail("interpreter", e.what());
    }
  }
  // One trivial program through the sandbox, importing what the checks need (numpy: the plus
  // variant's output comparison), as the checks will run: a machine or an interpreter that cannot
  // run them fails here, once, not as a wrong answer per sample.
  SandboxConfig probe = c;
  probe.wall_s = std::max(probe.wall_s, 10.0);
  SandboxJob job;
  job.files = {{"probe.py",
                "try:\n    import numpy\nexcept ImportError as e:\n"
                "    why = [l for l in str(e).splitlines() if l.strip()]\n"
                "    print('missing', e.name or 'numpy')\n    print(why[-1][:300] if why else '')\n"
                "    raise SystemExit(0)\nprint('ok')\n"}};
  job.args = {"probe.py"};
  SandboxResult r = run_sandboxed(probe, job, reserve_slots(1));
  if (!r.error.empty()) o.fail("sandbox", r.error);
  if (r.exited_ok() && r.out.rfind("missing ", 0) == 0) {
    size_t nl = r.out.find('\n');
    std::string module = r.out.substr(8, nl == std::string::npos ? std::string::npos : nl - 8);
    std::string why = nl == std::string::npos ? "" : r.out.substr(nl + 1);
    while (!why.empty() && (why.back() == '\n' || why.back() == '\r')) why.pop_back();
    o.fail("interpreter", c.interpreter + " cannot import " + module + " in the sandbox" +
                              (why.empty() ? "" : " (" + why + ")") +
                              "; the HumanEval+ checks need it: install it for that interpreter (Debian: "
                              "`apt install python3-" + module + "` for /usr/bin/python3; scripts/setup.sh does) "
                              "or set interpreter = a Python that has it (warmup score/eval: --python)");
  }
  if (!r.exited_ok() || r.out != "ok\n")
    o.fail(c.mode == "bwrap" ? "sandbox" : "interpreter",
           "a trivial program does not run in the sandbox (" + r.describe() + "): " + r.err.substr(0, 300));
  first_block_ = block == "first";
  checker_ = std::make_unique<Checker>(c, int(workers), input_timeout, result_mb << 20, warm_pool);
}

Verdict CodeReward::judge(const warmup::Example& ex, const std::string& completion, bool fast,
                          std::string& format_why, std::optional<std::string>& code) const {
  std::string answer;
  if (format_gate_) {
    if (!format_ok(completion, answer, format_why)) return Verdict{"fail", 0, 0, 0, 0, "format", ""};
  } else {
    answer = answer_span(completion);
  }
  code = extract_code(answer, first_block_);
  Problem p;
  try {
    p = parse_reference(ex.reference);
  } catch (const std::exception& e) {
    return Verdict{"error", 0, 0, 0, 0, std::string("bad reference (not a humaneval_plus example?): ") + e.what(), ""};
  }
  return checker_->check(p, *code, fast);
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
  Verdict v = judge(ex, completion, true, format_why, r.extracted_answer);
  // "error": the sandbox, the checker or the canonical solution failed, not the candidate.
  if (v.status == "error") return r.fail_harness(v.reason), r;
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
  Verdict v = judge(ex, completion, false, format_why, r.extracted_answer);
  if (v.status == "error") return r.fail_harness(v.reason), r;
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
