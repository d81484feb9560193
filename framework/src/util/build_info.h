// What this binary is: version, git commit, compiler, C++ ABI, torch version, CUDA.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace warmup {

struct BuildInfo {
  std::string version;        // project version, e.g. "0.1.0"
  std::string git_commit;     // short hash with "-dirty" when the tree had changes at build time
  std::string compiler;       // "GCC 12.2.0"
  std::string cxx_abi;        // "libstdc++ (_GLIBCXX_USE_CXX11_ABI=1)"
  std::string torch_version;  // "2.11.0"
  bool cuda_compiled = false; // built against CUDA
  std::string fingerprint;    // plugin build fingerprint (see warmup/fingerprint.h)
  std::string plugin_abi;     // "1.0"
};

const BuildInfo& build_info();
bool cuda_available();        // a CUDA device is usable right now
std::string device_summary(); // "cpu (2 threads)" or "cuda: NVIDIA H100 ..."
nlohmann::json build_info_json();

}  // namespace warmup
