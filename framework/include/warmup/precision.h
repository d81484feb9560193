// The `bf16` option of training algorithms: true, false or "auto". "auto" turns bf16 autocast on
// where it pays off: on CUDA, and on CPUs that multiply bf16 natively (AMX or AVX512-BF16, e.g.
// Sapphire Rapids: 1.37x faster SFT steps for the quickstart's model); elsewhere a CPU emulates
// bf16 and fp32 is faster. Header-only.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

#include "model.h"
#include "options.h"

namespace warmup {

enum class Bf16 { off, on, automatic };

// Whether this CPU has native bf16 arithmetic (Linux: the amx_bf16 or avx512_bf16 flag).
inline bool cpu_has_native_bf16() {
  static const bool has = [] {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("flags", 0) != 0) continue;
      std::istringstream flags(line.substr(line.find(':') + 1));
      for (std::string f; flags >> f;)
        if (f == "amx_bf16" || f == "avx512_bf16") return true;
      return false;
    }
    return false;
  }();
  return has;
}

// Reads `key` as a boolean or the string "auto"; ConfigError at its place otherwise.
inline Bf16 bf16_option(Options& o, std::string_view key = "bf16") {
  try {
    return o.get<bool>(key, false) ? Bf16::on : Bf16::off;
  } catch (const ConfigError&) {
    if (o.get<std::string>(key, "") != "auto") o.fail(key, "must be true, false or \"auto\"");
    return Bf16::automatic;
  }
}

inline bool bf16_enabled(Bf16 mode, const torch::Device& device) {
  if (mode != Bf16::automatic) return mode == Bf16::on;
  return device.is_cuda() || (device.is_cpu() && cpu_has_native_bf16());
}

}  // namespace warmup
