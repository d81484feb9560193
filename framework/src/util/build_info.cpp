#include "util/build_info.h"

#include <torch/cuda.h>
#include <torch/version.h>
#include <ATen/Parallel.h>

#include "plugins/registry.h"
#include "warmup/abi.h"
#include "warmup_git_info.h"  // generated: WARMUP_GIT_COMMIT

#ifndef WARMUP_VERSION
#define WARMUP_VERSION "0.0.0"
#endif

namespace warmup {

const BuildInfo& build_info() {
  static const BuildInfo info = [] {
    BuildInfo b;
    b.version = WARMUP_VERSION;
    b.git_commit = WARMUP_GIT_COMMIT;
#if defined(__clang__)
    b.compiler = "Clang " __clang_version__;
#elif defined(__GNUC__)
    b.compiler = "GCC " __VERSION__;
#endif
#if defined(_GLIBCXX_USE_CXX11_ABI)
    b.cxx_abi = "libstdc++ (_GLIBCXX_USE_CXX11_ABI=" + std::to_string(_GLIBCXX_USE_CXX11_ABI) + ")";
#else
    b.cxx_abi = "unknown";
#endif
    b.torch_version = TORCH_VERSION;
    b.cuda_compiled = WARMUP_WITH_CUDA;
    b.fingerprint = host_fingerprint();
    b.plugin_abi = std::to_string(WARMUP_ABI_MAJOR) + "." + std::to_string(WARMUP_ABI_MINOR);
    return b;
  }();
  return info;
}

bool cuda_available() { return torch::cuda::is_available(); }

std::string device_summary() {
  if (cuda_available()) return "cuda (" + std::to_string(torch::cuda::device_count()) + " devices)";
  return "cpu (" + std::to_string(at::get_num_threads()) + " threads)";
}

nlohmann::json build_info_json() {
  const BuildInfo& b = build_info();
  return {{"version", b.version},          {"git_commit", b.git_commit},
          {"compiler", b.compiler},        {"cxx_abi", b.cxx_abi},
          {"torch_version", b.torch_version}, {"cuda_compiled", b.cuda_compiled},
          {"cuda_available", cuda_available()}, {"plugin_abi", b.plugin_abi},
          {"fingerprint", b.fingerprint}};
}

}  // namespace warmup
