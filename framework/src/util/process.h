// Process and time helpers: host name, pid liveness (with start time, so a recycled pid is not
// mistaken for the original), wall-clock formatting.
#pragma once

#include <cstdint>
#include <string>

namespace warmup {

std::string host_name();
// Start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat); -1 if gone.
int64_t process_start_ticks(int64_t pid);
// True when `pid` runs on this machine and, if start_ticks >= 0, started at that time.
bool process_alive(int64_t pid, int64_t start_ticks);
double unix_now();                        // seconds since the epoch
std::string format_time(double unix_s);   // "2026-11-26 09:47:52" local time
std::string format_duration(double seconds);  // "1h02m", "3m05s", "4.2s"

}  // namespace warmup
