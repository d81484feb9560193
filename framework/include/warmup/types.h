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

// Whether a reward could judge the completion at all (ABI minor 4).
//   kScored: `value` and `correct` are the verdict on the completion (a wrong answer included).
//   kError:  the verifier itself failed (its interpreter lacks a module, the sandbox did not
//            start, a time budget of our own ran out, the reference is unusable): not the
//            completion's fault. `value` and `correct` mean nothing, `error` says why. Hosts never
//            count such a completion as wrong: it is an error (`correct` null), counted apart,
//            and left out of RL advantages.
enum class RewardStatus : int32_t { kScored = 0, kError = 1 };

// What a reward says about one completion. Bad model output is a low value plus `error`,
// never an exception. The last two fields are ABI minor 4: the host reads them only from
// plugins built with minor >= 4 (older plugins' results are converted, see reward.h).
struct RewardResult {
  double value = 0.0;                     // the reward itself
  std::map<std::string, double> breakdown;  // named parts (format, answer, ...)
  std::optional<bool> correct;            // task correctness where the reward knows it
  std::string error;                      // why the output was penalised / not parseable
  RewardStatus status = RewardStatus::kScored;
  // What the reward took as the answer (the letter, the boxed expression, the code it ran, the
  // parsed assignment), as OpenAI simple-evals' `extracted_answer`; none when nothing was found.
  std::optional<std::string> extracted_answer;

  bool errored() const { return status == RewardStatus::kError; }
  // Marks the result as an infrastructure error: no value, no correctness, `why`.
  RewardResult& fail_harness(std::string why) {
    status = RewardStatus::kError, value = 0.0, correct.reset(), error = std::move(why);
    return *this;
  }
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

// A conversation rendered with a chat template and tokenised (ABI minor 7): transformers'
// apply_chat_template(..., tokenize=True, return_dict=True, return_assistant_tokens_mask=True).
struct ChatTokens {
  std::vector<int32_t> input_ids;       // the rendered text, no special tokens added
  std::vector<uint8_t> assistant_masks;  // input_ids.size(): 1 on tokens inside {% generation %} blocks
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

// Thrown by the host (and warmup/testing.h) when a plugin cannot be had: unknown kind/name, a
// library that cannot be loaded, a create that failed (the plugin's own message follows).
struct PluginError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace warmup
