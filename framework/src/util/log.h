// Host logging on spdlog (stderr; stdout is kept for command output such as --dry-run TOML or
// exports). Plugins reach it through warmup::Host::log, never through spdlog directly.
#pragma once

#include <string_view>

#include "warmup/types.h"

namespace warmup {

void init_logging(bool verbose, bool quiet);
void log_line(LogLevel level, std::string_view who, std::string_view message);
inline void log_info(std::string_view msg) { log_line(LogLevel::kInfo, "", msg); }
inline void log_warn(std::string_view msg) { log_line(LogLevel::kWarn, "", msg); }

}  // namespace warmup
