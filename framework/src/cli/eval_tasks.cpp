// See eval_tasks.h.
#include "cli/eval_tasks.h"

#include <cctype>
#include <cstdlib>
#include <sstream>

#include "util/errors.h"

namespace warmup::cli {
namespace fs = std::filesystem;
namespace {

// Tables recursively, everything else replaced.
void merge_into(toml::table& dst, const toml::table& src) {
  for (const auto& [k, v] : src) {
    if (const toml::table* sub = v.as_table(); sub && dst.contains(k) && dst[k].is_table())
      merge_into(*dst[k].as_table(), *sub);
    else
      dst.insert_or_assign(k, v);
  }
}

std::string data_file(const fs::path& data, const std::string& rel, const std::string& spec, bool is_dir) {
  fs::path p = fs::absolute(data / rel).lexically_normal();
  if (is_dir ? !fs::is_directory(p) : !fs::is_regular_file(p))
    throw UsageError("task '" + spec + "': " + p.string() + " not found (--data " + data.string() +
                     " should hold math/, humaneval/, mmlu_pro/, kk/ as in shared/data)");
  return p.string();
}

std::string instance_name(const std::string& s) {
  std::string out;
  for (char c : s) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-') ? c : '_';
  return out;
}

}  // namespace

std::string known_paper_tasks() { return "math500, humaneval_plus, mmlu_pro[:CATEGORY], kk"; }

bool is_paper_task(const std::string& spec) {
  std::string name = spec.substr(0, spec.find(':'));
  for (const char* k : {"math500", "math", "humaneval_plus", "mmlu_pro", "kk", "knights_knaves"})
    if (name == k) return true;
  return false;
}

PaperTask paper_task(const std::string& spec, const fs::path& data, bool need_data, const std::string& python) {
  size_t colon = spec.find(':');
  std::string name = spec.substr(0, colon), arg = colon == std::string::npos ? "" : spec.substr(colon + 1);
  if (!is_paper_task(spec))
    throw UsageError("unknown task '" + spec + "' (known: " + known_paper_tasks() + ")");
  if (!arg.empty() && name != "mmlu_pro")
    throw UsageError("task '" + spec + "': only mmlu_pro takes a ':CATEGORY'");
  if (colon != std::string::npos && arg.empty()) throw UsageError("task '" + spec + "': empty category");
  if (data.empty() && need_data)
    throw UsageError("task '" + spec + "' needs its data: pass --data DIR (laid out as shared/data) or set $WARMUP_DATA");
  bool with_data = !data.empty();
  PaperTask t;
  t.spec = spec;
  if (name == "math500" || name == "math") {
    t.instance = "math500", t.plugin = "math";
    if (with_data) t.options.insert("test", data_file(data, "math/math500_test.jsonl", spec, false));
    t.options.insert("prompt", "eval");
    t.reward = "math_accuracy";
    t.group_by = {"subject", "level"};
  } else if (name == "humaneval_plus") {
    t.instance = "humaneval_plus", t.plugin = "humaneval_plus";
    if (with_data) t.options.insert("data_dir", data_file(data, "humaneval", spec, true));
    t.options.insert("prompt", "eval");
    t.reward = "humaneval_paper";
    t.reward_options.insert("code_block", "last");
    t.reward_options.insert("format_gate", false);
    if (!python.empty()) t.reward_options.insert("interpreter", python);
  } else if (name == "mmlu_pro") {
    t.instance = arg.empty() ? "mmlu_pro" : instance_name("mmlu_pro_" + arg), t.plugin = "mmlu_pro";
    if (with_data) t.options.insert("data_dir", data_file(data, "mmlu_pro", spec, true));
    if (!arg.empty()) t.options.insert("categories", toml::array{arg});
    t.options.insert("eval_prompt", "eval");
    t.options.insert("test_split", "rest");
    t.reward = "mmlu_pro_accuracy";
    t.group_by = {"category"};
  } else {  // kk
    t.instance = "kk", t.plugin = "knights_knaves";
    if (with_data) t.options.insert("data_dir", data_file(data, "kk", spec, true));
    t.options.insert("prompt", "paper");
    t.reward = "kk_paper";
    t.group_by = {"n_people"};
  }
  return t;
}

std::string default_data_dir() {
  const char* d = std::getenv("WARMUP_DATA");
  return d ? d : "";
}

void apply_option(toml::table& t, const std::string& assignment, const std::string& flag) {
  size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw UsageError(flag + " " + assignment + ": expected key=value");
  std::string key = assignment.substr(0, eq), value = assignment.substr(eq + 1);
  toml::table parsed;
  try {
    parsed = toml::parse(key + " = " + value);
  } catch (const toml::parse_error&) {
    std::ostringstream quoted;
    quoted << toml::value<std::string>(value);  // not a TOML literal: the text as a string
    try {
      parsed = toml::parse(key + " = " + quoted.str());
    } catch (const toml::parse_error& e) {
      throw UsageError(flag + " " + assignment + ": " + std::string(e.description()));
    }
  }
  merge_into(t, parsed);
}

}  // namespace warmup::cli
