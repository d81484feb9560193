// Task interface (kind "task", interface warmup.task v1): named splits of examples.
// A task loads or generates data and renders prompts; it does not score (rewards do that).
#pragma once

#include <string>
#include <vector>

#include "types.h"

namespace warmup {

class Task {
 public:
  static constexpr const char* kKind = "task";
  static constexpr const char* kInterfaceId = "warmup.task";
  static constexpr uint32_t kInterfaceVersion = 1;

  virtual ~Task() = default;
  // Split names this task offers, e.g. {"train", "test"}.
  virtual std::vector<std::string> splits() const = 0;
  // All examples of `split` in a stable order with stable ids. Throws DataError on bad data and
  // ConfigError for an unknown split.
  virtual std::vector<Example> examples(const std::string& split) = 0;
};

}  // namespace warmup
