#include "util/log.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace warmup {
namespace {

std::mutex g_bar_mu;
std::string g_bar;  // the bar as drawn; empty when none is shown
bool g_bar_enabled = false;
std::chrono::steady_clock::time_point g_bar_start, g_bar_drawn;

void clear_bar_locked() {
  if (g_bar.empty()) return;
  std::fputs("\r\x1b[K", stderr);
}

void draw_bar_locked() {
  if (g_bar.empty()) return;
  std::fputs(g_bar.c_str(), stderr);
  std::fflush(stderr);
}

int terminal_width() {
  winsize w{};
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &w) == 0 && w.ws_col > 20) return w.ws_col;
  return 80;
}

}  // namespace

bool progress_bar_enabled() { return g_bar_enabled; }

void progress_clear() {
  if (!g_bar_enabled) return;
  std::lock_guard<std::mutex> lock(g_bar_mu);
  clear_bar_locked();
  g_bar.clear();
  std::fflush(stderr);
}

void log_progress(std::string_view who, std::string_view label, int64_t done, int64_t total, std::string_view detail) {
  if (!g_bar_enabled || total <= 0) return;
  std::lock_guard<std::mutex> lock(g_bar_mu);
  auto now = std::chrono::steady_clock::now();
  if (g_bar.empty()) g_bar_start = now;
  if (done >= total) {
    clear_bar_locked();
    g_bar.clear();
    return;
  }
  if (!g_bar.empty() && now - g_bar_drawn < std::chrono::milliseconds(100)) return;  // at most 10 redraws/s
  g_bar_drawn = now;
  double frac = std::min(1.0, std::max(0.0, double(done) / double(total)));
  std::string head = "[" + std::string(who) + "] " + std::string(label) + " ";
  char counts[64];
  std::snprintf(counts, sizeof counts, " %3d%% %lld/%lld ", int(frac * 100), (long long)done, (long long)total);
  std::string tail = std::string(counts) + std::string(detail);
  int width = terminal_width() - 1;
  if (int(head.size() + tail.size()) + 12 > width) {  // keep it on one line: \r\x1b[K clears one row only
    head = head.substr(0, size_t(std::max(0, width / 3)));
    tail = tail.substr(0, size_t(std::max(0, width - int(head.size()) - 12)));
  }
  int bar = std::max(10, std::min(40, width - int(head.size() + tail.size()) - 2));
  int full = int(frac * bar);
  std::string line = head + "|";
  for (int i = 0; i < bar; ++i) line += i < full ? "\u2588" : " ";  // a full block per done cell
  line += "|" + tail;
  clear_bar_locked();
  g_bar = "\r" + line;
  draw_bar_locked();
}

void init_logging(bool verbose, bool quiet) {
  auto logger = spdlog::stderr_color_mt("warmup");
  logger->set_pattern("%H:%M:%S %^%-5l%$ %v");
  logger->set_level(quiet ? spdlog::level::warn : verbose ? spdlog::level::debug : spdlog::level::info);
  spdlog::set_default_logger(logger);
  const char* term = std::getenv("TERM");
  g_bar_enabled = !quiet && isatty(STDERR_FILENO) && !std::getenv("CI") && !(term && std::strcmp(term, "dumb") == 0);
}

namespace {
int g_rank = -1;  // set_log_rank: -1 = one process
}

void set_log_rank(int rank, int world_size) {
  g_rank = world_size > 1 ? rank : -1;
  if (g_rank < 0) return;
  std::string pattern = "%H:%M:%S %^%-5l%$ [rank " + std::to_string(rank) + "] %v";
  spdlog::default_logger()->set_pattern(pattern);
  if (rank > 0) g_bar_enabled = false;  // one progress bar: rank 0's
}

void log_line(LogLevel level, std::string_view who, std::string_view message) {
  if (g_rank > 0 && level == LogLevel::kInfo && !who.empty()) level = LogLevel::kDebug;  // the stages' lines: rank 0's
  auto lvl = level == LogLevel::kDebug  ? spdlog::level::debug
             : level == LogLevel::kInfo ? spdlog::level::info
             : level == LogLevel::kWarn ? spdlog::level::warn
                                        : spdlog::level::err;
  std::unique_lock<std::mutex> lock(g_bar_mu, std::defer_lock);
  if (g_bar_enabled) lock.lock(), clear_bar_locked();
  if (who.empty()) spdlog::log(lvl, "{}", message);
  else spdlog::log(lvl, "[{}] {}", who, message);
  if (g_bar_enabled) draw_bar_locked();
}

}  // namespace warmup
