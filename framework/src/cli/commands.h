// Subcommands of the `warmup` executable. Each parses its own arguments (Boost.Program_options),
// prints its own --help, and returns the exit code: 0 ok, 1 failure, 2 bad input.
#pragma once

#include <string>
#include <vector>

namespace warmup::cli {

using Args = std::vector<std::string>;  // arguments after the subcommand name

int cmd_run(const Args& args);
int cmd_plugins(const Args& args);
int cmd_runs(const Args& args);
int cmd_version(const Args& args);
int cmd_tokenize(const Args& args);
int cmd_model(const Args& args);
int cmd_bench(const Args& args);
int cmd_generate(const Args& args);
int cmd_serve(const Args& args);
int cmd_eval(const Args& args);
int cmd_score(const Args& args);
int cmd_report(const Args& args);

}  // namespace warmup::cli
