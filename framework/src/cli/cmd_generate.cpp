// `warmup generate`: completions for a JSONL file of prompts, written as JSONL, with a progress
// bar. Prompt lines: {"prompt": "..."} (raw text), {"messages": [{"role", "content"}...]}
// (ChatML), or {"prompt_token_ids": [...]}; an optional "id" is echoed.
#include <chrono>
#include <cstdio>
#include <fstream>

#include "cli/engine_setup.h"
#include "util/errors.h"
#include "util/process.h"
#include "warmup/jsonl.h"

namespace warmup::cli {

int cmd_generate(const Args& args) {
  po::options_description opts("options");
  std::vector<std::string> stops;
  add_engine_options(opts);
  opts.add_options()
      ("prompts,p", po::value<std::string>()->required(), "JSONL file of prompts")
      ("out,o", po::value<std::string>()->required(), "JSONL file for the completions")
      ("n", po::value<int>()->default_value(1), "completions per prompt")
      ("temperature", po::value<double>()->default_value(1.0), "0 = greedy")
      ("top-p", po::value<double>()->default_value(1.0), "nucleus sampling mass")
      ("top-k", po::value<int64_t>()->default_value(0), "0 = off")
      ("min-p", po::value<double>()->default_value(0.0), "0 = off")
      ("repetition-penalty", po::value<double>()->default_value(1.0), "1 = off")
      ("max-new-tokens", po::value<int64_t>()->default_value(256), "completion cap in tokens")
      ("seed", po::value<uint64_t>()->default_value(0), "sampling seed (prompt i uses seed + 1000 * i)")
      ("stop", po::value<std::vector<std::string>>(&stops)->composing(), "stop string (repeatable)")
      ("include-stop", "keep the stop string in the text")
      ("ignore-eos", "do not stop at EOS")
      ("logprobs", "write per-token log-probs");
  po::variables_map vm;
  if (!parse(args, "usage: warmup generate --model DIR --prompts FILE.jsonl --out FILE.jsonl [--n N] "
                   "[--temperature T] [--top-p P] [--max-new-tokens N] (defaults below)",
             opts, vm))
    return 0;
  auto engine = make_engine(vm);
  const Tokenizer& tok = engine->tokenizer();
  SamplingParams sp;
  sp.n = vm["n"].as<int>();
  sp.temperature = vm["temperature"].as<double>();
  sp.top_p = vm["top-p"].as<double>();
  sp.top_k = vm["top-k"].as<int64_t>();
  sp.min_p = vm["min-p"].as<double>();
  sp.repetition_penalty = vm["repetition-penalty"].as<double>();
  sp.max_new_tokens = vm["max-new-tokens"].as<int64_t>();
  sp.stop = stops;
  sp.include_stop_str_in_output = vm.count("include-stop") > 0;
  sp.ignore_eos = vm.count("ignore-eos") > 0;
  sp.logprobs = vm.count("logprobs") > 0;
  if (std::string e = sp.validate(); !e.empty()) throw UsageError("warmup generate: " + e);

  std::string path = vm["prompts"].as<std::string>();
  std::ifstream in(path);
  if (!in) throw UsageError(path + ": cannot read");
  std::vector<GenerationRequest> reqs;
  std::vector<nlohmann::json> echo;
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
      GenerationRequest r;
      r.id = j.contains("id") ? (j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump()) : std::to_string(n);
      std::string where = path + ":" + std::to_string(n);
      if (j.contains("prompt_token_ids")) {
        r.prompt_ids = json_field<std::vector<int32_t>>(j, "prompt_token_ids", where);
      } else if (j.contains("messages")) {
        std::vector<ChatMessage> msgs;
        auto ms = json_field<std::vector<nlohmann::json>>(j, "messages", where);
        for (size_t i = 0; i < ms.size(); ++i) {
          std::string at = where + ": messages[" + std::to_string(i) + "]";
          msgs.push_back({json_field<std::string>(ms[i], "role", at), json_field<std::string>(ms[i], "content", at)});
        }
        r.prompt_ids = tok.encode(render_chatml(msgs));
      } else if (j.contains("prompt")) {
        r.prompt_ids = tok.encode(json_field<std::string>(j, "prompt", where));
      } else {
        throw UsageError("no \"prompt\", \"messages\" or \"prompt_token_ids\"");
      }
      r.params = sp;
      r.params.seed = vm["seed"].as<uint64_t>() + 1000 * uint64_t(reqs.size());
      reqs.push_back(std::move(r));
      echo.push_back(j);
    } catch (const DataError&) {
      throw;  // already names the place and the field
    } catch (const std::exception& e) {
      throw DataError(path + ":" + std::to_string(n) + ": " + e.what());
    }
  }
  int64_t total = int64_t(reqs.size()) * sp.n;
  auto t0 = std::chrono::steady_clock::now();
  auto last_print = t0;
  auto progress = [&](const EngineStats& s) {
    auto now = std::chrono::steady_clock::now();
    if (now - last_print < std::chrono::milliseconds(500)) return;
    last_print = now;
    double secs = std::chrono::duration<double>(now - t0).count();
    double rate = double(s.generated_tokens) / std::max(secs, 1e-9);
    double frac = double(s.generated_tokens) / double(std::max<int64_t>(1, total * sp.max_new_tokens));
    double step_ms = s.steps ? 1000.0 * s.host_seconds / double(s.steps) : 0;
    std::fprintf(stderr,
                 "\rgenerate: %lld running, %lld waiting | KV %.0f%% | prefix hits %.0f%% | %lld preempted | "
                 "%lld tokens | %.1f tok/s | host %.1f ms/step | %s elapsed, ETA <= %s   ",
                 (long long)s.running, (long long)s.waiting, 100 * s.kv_cache_usage(), 100 * s.prefix_cache_hit_rate(),
                 (long long)s.preemptions, (long long)s.generated_tokens, rate, step_ms, format_duration(secs).c_str(),
                 format_duration(frac > 0 ? secs / frac - secs : 0).c_str());
  };
  auto results = engine->generate(std::move(reqs), progress);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EngineStats st = engine->stats();
  std::fprintf(stderr, "\rgenerate: %lld completions, %lld prompt + %lld generated tokens in %s (%.1f tok/s)%60s\n",
               (long long)total, (long long)st.prompt_tokens, (long long)st.generated_tokens,
               format_duration(secs).c_str(), double(st.generated_tokens) / std::max(secs, 1e-9), "");
  std::fprintf(stderr,
               "generate: %lld steps | forward %.2f s, sampling %.2f s, host %.2f s | prefix-cache hits %.1f%% of "
               "%lld prompt tokens | %lld preemptions\n",
               (long long)st.steps, st.forward_seconds, st.sample_seconds, st.host_seconds,
               100 * st.prefix_cache_hit_rate(), (long long)st.prefix_cache_queries, (long long)st.preemptions);
  std::ofstream out(vm["out"].as<std::string>());
  if (!out) throw UsageError(vm["out"].as<std::string>() + ": cannot write");
  int errors = 0;
  for (size_t i = 0; i < results.size(); ++i) {
    const auto& r = results[i];
    nlohmann::json o = {{"id", r.id}, {"prompt_tokens", r.prompt_tokens}};
    if (echo[i].contains("prompt")) o["prompt"] = echo[i]["prompt"];
    if (!r.error.empty()) {
      o["error"] = r.error;
      ++errors;
    }
    o["completions"] = nlohmann::json::array();
    for (const auto& s : r.samples) {
      nlohmann::json c = {{"text", s.text}, {"token_ids", s.token_ids}, {"finish_reason", s.finish_reason}};
      if (sp.logprobs) c["logprobs"] = s.logprobs;
      o["completions"].push_back(c);
    }
    out << o.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  }
  if (errors) std::fprintf(stderr, "generate: %d prompts rejected (see \"error\" in the output)\n", errors);
  return errors ? 1 : 0;
}

}  // namespace warmup::cli
