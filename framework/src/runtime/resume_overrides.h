// `warmup run --resume RUN --set KEY=VALUE`: which keys a resumed run accepts. A resumed run must
// go on computing what it started computing, so only keys that do not change that are taken:
//   - a path that no longer exists, replaced by one that does (keys that name files or folders:
//     path, data, data_dir, train, test, validation, cache, tokenizer, file, dir, *_path, *_dir,
//     *_file; not empty or {run_dir} values), e.g. a dataset moved or a typo that failed the run;
//   - [model] device, and the logging and worker counts of any stage (logging_steps,
//     log_completions_groups, reward_workers, score_workers);
//   - eval sizes (stages.S.eval.limit, .num_samples) of a stage that has not started.
#pragma once

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <toml++/toml.h>

#include "config/toml_tree.h"

namespace warmup {

// The flattened values `overrides` change in `stored` (the run's config.toml). Throws UsageError
// naming the first key refused (`who` names the run), or a ConfigError for a malformed --set.
// `base_dir` resolves relative paths; `started` are the run's stages that have begun.
std::vector<FlatValue> check_resume_overrides(const toml::table& stored, const std::vector<std::string>& overrides,
                                              const std::filesystem::path& base_dir,
                                              const std::set<std::string>& started, const std::string& who);

}  // namespace warmup
