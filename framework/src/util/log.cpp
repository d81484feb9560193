#include "util/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace warmup {

void init_logging(bool verbose, bool quiet) {
  auto logger = spdlog::stderr_color_mt("warmup");
  logger->set_pattern("%H:%M:%S %^%-5l%$ %v");
  logger->set_level(quiet ? spdlog::level::warn : verbose ? spdlog::level::debug : spdlog::level::info);
  spdlog::set_default_logger(logger);
}

void log_line(LogLevel level, std::string_view who, std::string_view message) {
  auto lvl = level == LogLevel::kDebug  ? spdlog::level::debug
             : level == LogLevel::kInfo ? spdlog::level::info
             : level == LogLevel::kWarn ? spdlog::level::warn
                                        : spdlog::level::err;
  if (who.empty()) spdlog::log(lvl, "{}", message);
  else spdlog::log(lvl, "[{}] {}", who, message);
}

}  // namespace warmup
