// Plain data shared by the SDK interfaces: examples, reward results, completions, samples.
// No behaviour lives here; see task.h, reward.h, algorithm.h, teacher.h for the interfaces.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace warmup {

// One item of a task split. `id` is stable across runs and machines (same data -> same ids).
struct Example {
  std::string id;         // e.g. "arithmetic/test/17"
  std::string prompt;     // fully rendered prompt text given to a model or teacher
  std::string reference;  // gold answer, in whatever form the task's rewards expect
  nlohmann::json metadata = nlohmann::json::object();  // task-specific (level, n_people, ...)
};

// What a reward says about one completion. Bad model output is a low value plus `error`,
// never an exception.
struct RewardResult {
  double value = 0.0;                     // the reward itself
  std::map<std::string, double> breakdown;  // named parts (format, answer, ...)
  std::optional<bool> correct;            // task correctness where the reward knows it
  std::string error;                      // why the output was penalised / not parseable
};

// A completion from a model or teacher.
struct Completion {
  std::string text;
  std::string finish_reason = "stop";  // "stop" | "length" | "error"
  int64_t tokens = -1;                 // completion length in tokens, -1 if unknown
};

// One sampled completion as recorded in the run store.
struct SampleRecord {
  std::string task;
  std::string example_id;
  int64_t step = 0;
  std::string prompt;
  std::string completion;
  int64_t completion_tokens = -1;
  std::string finish_reason;
  double reward = 0.0;                    // weighted total over the stage's rewards
  std::map<std::string, double> rewards;  // per reward instance (and its breakdown as name/part)
  std::optional<bool> correct;
  double advantage = 0.0;                 // RL algorithms; 0 elsewhere
};

enum class LogLevel { kDebug, kInfo, kWarn, kError };

// Thrown by plugins (and the SDK's Options) for invalid configuration. The message starts with
// the place in the experiment file, "file:line:col: ...".
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Thrown for unreadable or malformed data files; the message names the file and line.
struct DataError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace warmup
