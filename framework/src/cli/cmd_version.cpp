// `warmup version`: version, git commit and build fingerprint.
#include "cli/options_util.h"
#include "util/build_info.h"

namespace warmup::cli {

int cmd_version(const Args& args) {
  po::options_description opts("options");
  opts.add_options()("json", "machine-readable output");
  po::variables_map vm;
  if (!parse(args, "usage: warmup version [--json]", opts, vm)) return 0;
  if (vm.count("json")) {
    std::cout << build_info_json().dump(2) << "\n";
    return 0;
  }
  const BuildInfo& b = build_info();
  std::cout << "warmup " << b.version << " (git " << b.git_commit << ")\n"
            << "compiler:    " << b.compiler << "\n"
            << "C++ ABI:     " << b.cxx_abi << "\n"
            << "torch:       " << b.torch_version << "\n"
            << "CUDA:        " << (b.cuda_compiled ? "compiled in" : "off") << ", device "
            << (cuda_available() ? "available" : "not available") << "\n"
            << "plugin ABI:  " << b.plugin_abi << "\n"
            << "fingerprint: " << b.fingerprint << "\n";
  return 0;
}

}  // namespace warmup::cli
