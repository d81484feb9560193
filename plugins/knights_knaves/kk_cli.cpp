// warmup-knights_knaves (linked as warmup-kk): the `warmup knights_knaves` / `warmup kk` subcommand (found next to `warmup` and run by it).
//   warmup kk generate --people 3-7 --count N --seed S (--out FILE.jsonl | --out-dir DIR [--split train])
// writes puzzles in the dataset's schema; --out-dir writes <n>ppl_<split>.jsonl files that the
// knights_knaves task reads with data_dir = DIR.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include "kk_generate.h"

namespace {

int usage(int code) {
  (code ? std::cerr : std::cout)
      << "usage: warmup kk generate --people 3-7 --count N --seed S (--out FILE.jsonl | --out-dir DIR [--split train]) [--cot STYLE]\n"
         "  --people A-B|N   sizes (2 to 20 people: the solver enumerates all 2^n cases)\n  --count N        puzzles per size\n"
         "  --seed S         random seed (same seed, same puzzles)\n"
         "  --cot STYLE      cot_* fields: backtracking (the dataset's, default), truth_table or truth_vectors\n";
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> a(argv + 1, argv + argc);
  if (a.empty() || a[0] == "--help" || a[0] == "-h") return usage(a.empty() ? 2 : 0);
  if (a[0] != "generate") {
    std::cerr << "error: warmup kk: unknown action '" << a[0] << "'\n";
    return usage(2);
  }
  int lo = 3, hi = 7;
  long long count = 100;
  unsigned long long seed = 0;
  std::string out, out_dir, split = "train", cot = "backtracking";
  try {
    for (size_t i = 1; i < a.size(); ++i) {
      auto value = [&]() -> std::string {
        if (i + 1 >= a.size()) throw std::invalid_argument(a[i] + " needs a value");
        return a[++i];
      };
      if (a[i] == "--people") {
        std::string v = value();
        size_t dash = v.find('-');
        lo = std::stoi(v.substr(0, dash));
        hi = dash == std::string::npos ? lo : std::stoi(v.substr(dash + 1));
      } else if (a[i] == "--count") count = std::stoll(value());
      else if (a[i] == "--seed") seed = std::stoull(value());
      else if (a[i] == "--out") out = value();
      else if (a[i] == "--out-dir") out_dir = value();
      else if (a[i] == "--split") split = value();
      else if (a[i] == "--cot") cot = value();
      else if (a[i] == "--help" || a[i] == "-h") return usage(0);
      else throw std::invalid_argument("unknown option " + a[i]);
    }
    if (!kk::is_cot_style(cot)) throw std::invalid_argument("--cot must be " + std::string(kk::kCotStyles));
    if (out.empty() == out_dir.empty()) throw std::invalid_argument("give exactly one of --out and --out-dir");
    if (lo < 2 || hi > 20 || lo > hi || count < 0)
      throw std::invalid_argument("--people must be within 2-20 (the solver enumerates all 2^n cases) and --count >= 0");
    std::ofstream single;
    if (!out.empty()) {
      single.open(out);
      if (!single) throw std::runtime_error(out + ": cannot write");
    } else {
      std::filesystem::create_directories(out_dir);
    }
    for (int n = lo; n <= hi; ++n) {
      kk::Generator gen(seed, n);
      std::ofstream per;
      if (!out_dir.empty()) {
        std::string path = out_dir + "/" + std::to_string(n) + "ppl_" + split + ".jsonl";
        per.open(path);
        if (!per) throw std::runtime_error(path + ": cannot write");
      }
      std::ostream& os = out.empty() ? per : single;
      for (long long i = 0; i < count; ++i) {
        nlohmann::ordered_json rec = gen.next(i);
        if (cot != "backtracking") {
          auto c = kk::chain_of_thought(cot, kk::parse_statements(rec["statements"].get<std::string>()),
                                     rec["names"].get<std::vector<std::string>>());
          rec["cot_head"] = c.head;
          rec["cot_repeat_steps"] = c.steps;
          rec["cot_foot"] = c.foot;
        }
        os << rec.dump() << "\n";
      }
      std::cerr << "kk: " << count << " puzzles with " << n << " people\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "error: warmup kk generate: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
