// Save-as-you-go for evaluate: the completions and scores of each finished chunk of examples are
// appended to `<checkpoint_dir>/progress-<task>.jsonl` (one line per example, fsynced per chunk),
// so a stage stopped by SIGINT/SIGTERM or killed resumes at the first unfinished example and ends
// with the same samples and metrics as an uninterrupted run (chunks keep their boundaries and the
// engine seeds prompt i with seed + 1000 * i wherever it sits in a chunk).
//
// First line: {"header": {...}}: what the lines were made from (the split's digest, the sample
// count, the chunk size...); a resume whose header differs is refused (the data or the settings
// changed since the stage started).
// Then per example: {"id": example id, "items": [{"c": {"text", "finish_reason", "tokens"},
//        "s": {"total", "parts": {...}, "correct": bool|null, "error", "errored", "extracted_answer"}}...]}
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "warmup/reward.h"
#include "warmup/types.h"

namespace evalp {

struct Done {
  std::vector<warmup::Completion> completions;
  std::vector<warmup::Score> scores;
};

class Progress {
 public:
  // Opens the task's progress file. `resuming` = false starts over (an old file is replaced by
  // one holding `header`). Otherwise reads the finished examples: the longest prefix of `ids`
  // whose lines are intact, cut back to a multiple of `chunk` unless it is all of them (a line cut
  // by a kill, a chunk written in part, and anything after are dropped from the file). Throws
  // warmup::DataError naming the file when its header differs from `header`, or file:line when a
  // line names another example than the split has there.
  Progress(std::filesystem::path file, const std::vector<std::string>& ids, const nlohmann::json& header,
           size_t chunk, bool resuming);

  // The examples finished by earlier attempts: 0 .. done().size()-1 (append does not add to it).
  const std::vector<Done>& done() const { return done_; }
  // Appends examples [first, first + outs.size()) with their scores (example-major) and fsyncs. Throws (naming the file) when the write fails.
  void append(size_t first, const std::vector<std::string>& ids, const std::vector<std::vector<warmup::Completion>>& outs,
              const std::vector<warmup::Score>& scores);

 private:
  void write(const std::string& text);  // appended and fsynced
  std::filesystem::path file_;
  std::vector<Done> done_;
};

}  // namespace evalp
