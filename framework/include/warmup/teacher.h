// Teacher interface (kind "teacher", interface warmup.teacher v1): produces completions for
// prompts (an OpenAI-compatible endpoint, an offline solver, ...). Filtering and storage of the
// results are the calling algorithm's business.
#pragma once

#include <string>
#include <vector>

#include "types.h"

namespace warmup {

class Teacher {
 public:
  static constexpr const char* kKind = "teacher";
  static constexpr const char* kInterfaceId = "warmup.teacher";
  static constexpr uint32_t kInterfaceVersion = 1;

  virtual ~Teacher() = default;
  // `n` completions for each example, in input order: result[i].size() == n.
  virtual std::vector<std::vector<Completion>> complete(const std::vector<Example>& examples,
                                                        int n) = 0;
};

}  // namespace warmup
