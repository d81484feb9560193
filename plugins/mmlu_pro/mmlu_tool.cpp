// warmup-mmlu_pro (`warmup mmlu_pro ...`): test and benchmark helper (not a plugin, not installed).
//   warmup-mmlu_pro extract --in FILE [--chain official|paper] [--plain] [--field generated_text]
//       one JSON line per input row: {"question_id", "pred", "tier"} ("pred" null when none)
//   warmup-mmlu_pro bench --in FILE [--chain ...] [--repeat N]
//       reads the rows once, times the extraction only; prints one JSON object
//   warmup-mmlu_pro prompts --data-dir DIR [--k 5]
//       the official 5-shot prompt of every test row: {"question_id", "prompt"} per line
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>

#include <nlohmann/json.hpp>

#include "mmlu_data.h"
#include "mmlu_extract.h"
#include "warmup/jsonl.h"

namespace {

std::map<std::string, std::string> parse_args(int argc, char** argv) {
  std::map<std::string, std::string> a;
  for (int i = 2; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "--plain") a["plain"] = "1";
    else if (k.rfind("--", 0) == 0 && i + 1 < argc) a[k.substr(2)] = argv[++i];
    else throw std::runtime_error("bad argument: " + k);
  }
  return a;
}

std::vector<std::pair<int64_t, std::string>> read_rows(const std::string& path, const std::string& field) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot read");
  std::vector<std::pair<int64_t, std::string>> rows;
  std::string line;
  for (size_t ln = 1; std::getline(in, line); ++ln) {
    if (line.empty()) continue;
    std::string where = path + ":" + std::to_string(ln);
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) throw warmup::DataError(where + ": not valid JSON");
    rows.emplace_back(warmup::json_field_or<int64_t>(j, "question_id", -1, where), warmup::json_field<std::string>(j, field, where));
  }
  return rows;
}

int run(int argc, char** argv) {
  if (argc < 2) throw std::runtime_error("usage: warmup-mmlu_pro extract|bench|prompts ...");
  std::string cmd = argv[1];
  auto a = parse_args(argc, argv);
  auto get = [&](const std::string& k, const std::string& d) { return a.count(k) ? a[k] : d; };
  mmlu::Chain chain = get("chain", "official") == "paper" ? mmlu::Chain::kPaper : mmlu::Chain::kOfficial;
  bool paren = !a.count("plain");
  if (cmd == "extract" || cmd == "bench") {
    auto rows = read_rows(get("in", ""), get("field", "generated_text"));
    if (cmd == "extract") {
      for (const auto& [id, text] : rows) {
        mmlu::Extraction x = mmlu::extract(chain, text, paren);
        nlohmann::json o = {{"question_id", id}, {"tier", x.tier}};
        o["pred"] = x.letter ? nlohmann::json(std::string(1, x.letter)) : nlohmann::json(nullptr);
        std::cout << o.dump() << "\n";
      }
      return 0;
    }
    int repeat = std::stoi(get("repeat", "5"));
    size_t found = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < repeat; ++r)
      for (const auto& row : rows) found += mmlu::extract(chain, row.second, paren).letter != 0;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    nlohmann::json o = {{"rows", rows.size()}, {"repeat", repeat}, {"seconds", s},
                        {"extractions_per_s", double(rows.size()) * repeat / s}, {"found", found / repeat}};
    std::cout << o.dump() << "\n";
    return 0;
  }
  if (cmd == "prompts") {
    std::string dir = get("data-dir", ".");
    auto test = mmlu::load_questions(dir + "/test.jsonl");
    auto val = mmlu::load_questions(dir + "/validation.jsonl");
    int64_t k = std::stoll(get("k", "5"));
    for (const auto& q : test) {
      std::string p = mmlu::five_shot(mmlu::kOfficialHeader, val, q, k);
      std::cout << nlohmann::json{{"question_id", q.question_id}, {"prompt", p}}.dump() << "\n";
    }
    return 0;
  }
  throw std::runtime_error("unknown command " + cmd);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "warmup-mmlu_pro: " << e.what() << "\n";
    return 2;
  }
}
