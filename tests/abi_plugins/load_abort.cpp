// Test plugin: its static initialiser aborts, so loading the library kills the loading process
// with SIGABRT. The host must survive it: the library is probed in a child and rejected.
#include <cstdio>
#include <cstdlib>

#include "warmup/sdk.h"

namespace {
class Never final : public warmup::Task {
 public:
  explicit Never(const warmup::PluginInit&) {}
  std::vector<std::string> splits() const override { return {}; }
  std::vector<warmup::Example> examples(const std::string&) override { return {}; }
};
struct AbortAtLoad {
  AbortAtLoad() {
    std::fputs("load_abort: aborting in a static initialiser\n", stderr);
    std::abort();
  }
} abort_at_load;
}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Task, Never>("load_abort", "0.0.1", "test: aborts at load"))
