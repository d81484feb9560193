// Host logging on spdlog (stderr; stdout is kept for command output such as --dry-run TOML or
// exports). Plugins reach it through warmup::Host::log, never through spdlog directly.
#pragma once

#include <cstdint>
#include <string_view>

#include "warmup/types.h"

namespace warmup {

void init_logging(bool verbose, bool quiet);
// In a multi-process run: every line carries "[rank N]"; other ranks' stage lines at info level
// become debug (shown with -v), so the log reads as one process's; their warnings and errors stay.
void set_log_rank(int rank, int world_size);
void log_line(LogLevel level, std::string_view who, std::string_view message);
inline void log_info(std::string_view msg) { log_line(LogLevel::kInfo, "", msg); }
inline void log_warn(std::string_view msg) { log_line(LogLevel::kWarn, "", msg); }

// A progress bar on the last line of stderr, redrawn in place: only when stderr is a terminal
// (not a pipe or file), $CI is unset, $TERM is not "dumb" and the level shows info lines; else
// nothing (the plugins' log lines at logging_steps carry the same numbers). Log lines printed
// meanwhile clear the bar and it is drawn again below them. `done` == `total` removes it.
void log_progress(std::string_view who, std::string_view label, int64_t done, int64_t total, std::string_view detail);
bool progress_bar_enabled();
// Removes the bar, if one is shown (a stage that ended, failed or was stopped; before an error).
void progress_clear();

}  // namespace warmup
