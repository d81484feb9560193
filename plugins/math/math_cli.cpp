// warmup-math: the verifier as a command (`warmup math verify --in pairs.jsonl`), for benchmarks
// and spot checks. Reads JSONL lines {"gold", "pred"} with optional Math-Verify test fields
// (match_types, float_rounding, strict, allow_set_relation_comp, harness), verifies every pair
// `--repeat` times and prints one JSON object with the timing; `--out FILE` writes the verdicts.
#include <chrono>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "math_verify.h"

namespace {

struct Case {
  std::string gold, pred;
  mv::ParseOptions go, po;
  mv::CompareOptions cmp;
};

Case read_case(const nlohmann::json& j) {
  Case c{j.at("gold").get<std::string>(), j.at("pred").get<std::string>(), {}, {}, {}};
  if (j.value("harness", std::string("default")) == "compare_strings") {
    mv::ParseOptions o{false, false, 0};
    for (const auto& t : j.at("match_types")) (t == "latex" ? o.latex : o.expr) = true;
    c.go = c.po = o;
  }
  if (j.contains("float_rounding") && j["float_rounding"].is_number()) c.cmp.float_rounding = j["float_rounding"];
  if (j.contains("strict") && j["strict"].is_boolean()) c.cmp.strict = j["strict"];
  if (j.contains("allow_set_relation_comp") && j["allow_set_relation_comp"].is_boolean())
    c.cmp.allow_set_relation_comp = j["allow_set_relation_comp"];
  return c;
}

int usage() {
  std::cerr << "usage: warmup math verify --in PAIRS.jsonl [--repeat N] [--budget SECONDS] [--out VERDICTS.jsonl]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) != "verify") return usage();
  std::string in, out;
  int repeat = 1;
  double budget = 1.0;
  bool debug = false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--debug") { debug = true; continue; }
    if (i + 1 >= argc) return usage();
    if (a == "--in") in = argv[++i];
    else if (a == "--out") out = argv[++i];
    else if (a == "--repeat") repeat = std::stoi(argv[++i]);
    else if (a == "--budget") budget = std::stod(argv[++i]);
    else return usage();
  }
  std::ifstream f(in);
  if (!f) {
    std::cerr << "warmup math: cannot read " << in << "\n";
    return 2;
  }
  std::vector<Case> cases;
  std::string line;
  for (int ln = 1; std::getline(f, line); ++ln) {
    if (line.empty()) continue;
    try {
      cases.push_back(read_case(nlohmann::json::parse(line)));
    } catch (const std::exception& e) {
      std::cerr << in << ":" << ln << ": " << e.what() << "\n";
      return 2;
    }
  }
  if (debug)  // the parsed trees of both sides, one line per pair, on stderr
    for (size_t i = 0; i < cases.size(); ++i) {
      auto g = mv::parse(cases[i].gold, cases[i].go), p = mv::parse(cases[i].pred, cases[i].po);
      std::cerr << i << ": " << (g.expr ? mv::to_string(g.expr) : "-") << " [" << g.text << "] | "
                << (p.expr ? mv::to_string(p.expr) : "-") << " [" << p.text << "]\n";
    }
  std::vector<mv::Verdict> verdicts(cases.size());
  double max_call = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < repeat; ++r)
    for (size_t i = 0; i < cases.size(); ++i) {
      auto s = std::chrono::steady_clock::now();
      verdicts[i] = mv::verify_text(cases[i].gold, cases[i].pred, cases[i].go, cases[i].po, cases[i].cmp, budget);
      max_call = std::max(max_call, std::chrono::duration<double>(std::chrono::steady_clock::now() - s).count());
    }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  size_t equal = 0, timeouts = 0;
  for (const auto& v : verdicts) {
    equal += v.equal;
    timeouts += v.timed_out;
  }
  if (!out.empty()) {
    std::ofstream o(out);
    for (const auto& v : verdicts) o << nlohmann::json{{"equal", v.equal}, {"timed_out", v.timed_out}, {"error", v.error}}.dump() << "\n";
  }
  double n = double(cases.size()) * repeat;
  std::cout << nlohmann::json{{"pairs", cases.size()}, {"repeat", repeat}, {"seconds", secs},
                              {"answers_per_s", secs > 0 ? n / secs : 0.0}, {"max_call_s", max_call},
                              {"equal", equal}, {"timeouts", timeouts}}.dump() << "\n";
  return 0;
}
