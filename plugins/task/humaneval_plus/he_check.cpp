// he_check: sandbox jobs for the three variants and their verdicts (see he_check.h).
#include "he_check.h"

#include <random>

#include "he_prompts.h"  // generated: kHarnessPy

namespace he {
namespace {

std::string nonce() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[64];
  snprintf(buf, sizeof buf, "@@verdict-%016llx%016llx@@", (unsigned long long)rng(), (unsigned long long)rng());
  return buf;
}

std::string last_line(const std::string& s) {
  size_t e = s.find_last_not_of("\n \t");
  if (e == std::string::npos) return "";
  size_t b = s.rfind('\n', e);
  return s.substr(b == std::string::npos ? 0 : b + 1, e + 1 - (b == std::string::npos ? 0 : b + 1));
}

SandboxJob job(const nlohmann::json& config, const std::string& nonce) {
  SandboxJob j;
  j.files = {{"main.py", kHarnessPy}, {"config.json", config.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)}};
  j.args = {"main.py"};
  j.env = {{"WARMUP_SANDBOX_NONCE", nonce}};
  return j;
}

}  // namespace

Problem parse_reference(const std::string& reference) {
  auto j = nlohmann::json::parse(reference);
  Problem p;
  p.task_id = j.at("task_id").get<std::string>();
  p.entry_point = j.at("entry_point").get<std::string>();
  p.variant = j.at("variant").get<std::string>();
  if (p.variant == "plus") {
    p.canonical = j.at("canonical").get<std::string>();
    p.base_input = j.at("base_input").get<std::string>(), p.plus_input = j.at("plus_input").get<std::string>();
    p.n_base = j.at("n_base").get<int64_t>(), p.n_plus = j.at("n_plus").get<int64_t>();
    p.atol = j.at("atol").get<double>();
  } else if (p.variant == "plus_originfmt" || p.variant == "base") {
    p.test = j.at("test").get<std::string>();
  } else {
    throw std::runtime_error("unknown variant '" + p.variant + "'");
  }
  return p;
}

double Verdict::fraction() const {
  int64_t total = base_total + plus_total;
  if (total == 0 || status == "error") return pass() ? 1.0 : 0.0;
  return double(base_passed + plus_passed) / double(total);
}

Checker::Checker(SandboxConfig config, int workers, double input_timeout_s)
    : pool_(std::move(config), workers), input_timeout_s_(input_timeout_s) {}

// Runs a job; `line` gets the harness's verdict object (null if the program never wrote one).
Verdict Checker::run(const SandboxJob& j, const std::string& n, nlohmann::json& line) {
  SandboxResult r = pool_.run(j);
  Verdict v;
  v.isolation = r.isolation;
  line = nullptr;
  for (size_t at = r.out.find(n); at != std::string::npos && line.is_null(); at = r.out.find(n, at + 1)) {
    size_t e = r.out.find('\n', at);
    line = nlohmann::json::parse(r.out.substr(at + n.size(), e == std::string::npos ? e : e - at - n.size()), nullptr, false);
    if (line.is_discarded()) line = nullptr;
  }
  if (!r.error.empty()) v.status = "error", v.reason = r.describe();
  else if (r.timed_out) v.status = "timeout", v.reason = r.describe();
  else if (line.is_null() || !r.exited_ok()) {
    v.status = "fail";
    std::string tail = last_line(r.err);
    v.reason = "no verdict (" + r.describe() + ")" + (tail.empty() ? "" : ": " + tail.substr(0, 300));
  }
  return v;
}

Checker::Expected Checker::expected(const Problem& p) {
  std::promise<Expected> promise;
  std::shared_future<Expected> fut;
  {
    std::lock_guard lock(mu_);
    auto it = expected_.find(p.task_id);
    if (it != expected_.end()) fut = it->second;
    else expected_[p.task_id] = promise.get_future().share();
  }
  if (fut.valid()) return fut.get();
  std::string n = nonce();
  nlohmann::json cfg = {{"mode", "expected"}, {"code", p.canonical}, {"entry_point", p.entry_point},
                        {"base_json", p.base_input}, {"plus_json", p.plus_input}, {"input_timeout_s", 60.0}};
  SandboxJob j = job(cfg, n);
  j.collect = {"expected.pkl"};
  j.file_size_mb = 512;  // some outputs are large (HumanEval/15: long strings)
  SandboxResult r = pool_.run(j);  // not through run(): we need the collected file
  Expected e;
  if (r.out.find(n + "{\"expected\"") != std::string::npos && r.collected.count("expected.pkl"))
    e.pickle = r.collected["expected.pkl"];
  else
    e.error = "canonical solution of " + p.task_id + " failed: " + r.describe() + " " + last_line(r.out + "\n" + r.err).substr(0, 300);
  promise.set_value(e);
  return e;
}

Verdict Checker::check(const Problem& p, const std::string& code, bool fast) {
  std::string n = nonce();
  nlohmann::json line;
  if (p.variant != "plus") {
    nlohmann::json cfg = {{"mode", "check"}, {"code", code}, {"test", p.test}, {"entry_point", p.entry_point}};
    Verdict v = run(job(cfg, n), n, line);
    if (v.status.empty()) {
      bool ok = line.value("pass", false);
      v.status = ok ? "pass" : "fail";
      if (!ok) v.reason = line.value("error", std::string("failed"));
    }
    return v;
  }
  Expected e = expected(p);
  if (!e.error.empty()) return Verdict{"error", 0, 0, 0, 0, e.error, ""};
  nlohmann::json cfg = {{"mode", "compare"}, {"code", code}, {"entry_point", p.entry_point}, {"atol", p.atol},
                        {"base_json", p.base_input}, {"plus_json", p.plus_input}, {"fast", fast},
                        {"input_timeout_s", input_timeout_s_}};
  SandboxJob j = job(cfg, n);
  j.files.push_back({"expected.pkl", e.pickle});
  Verdict v = run(j, n, line);
  v.base_total = p.n_base, v.plus_total = p.n_plus;
  if (!line.is_null() && line.contains("base")) {
    v.base_passed = line["base"][0].get<int64_t>(), v.plus_passed = line["plus"][0].get<int64_t>();
  }
  if (v.status.empty()) {
    bool ok = !line.contains("load_error") && !line.contains("error") && v.base_passed == v.base_total &&
              v.plus_passed == v.plus_total;
    v.status = ok ? "pass" : "fail";
    if (!ok) v.reason = line.contains("load_error") ? "load: " + line["load_error"].get<std::string>()
                        : line.contains("error") ? line["error"].get<std::string>()
                        : line["first_failure"].is_string() ? line["first_failure"].get<std::string>() : "failed";
  }
  return v;
}

}  // namespace he
