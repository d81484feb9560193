// Test plugin: its static initialiser calls exit(0): the loading process ends "successfully"
// before it can report any manifest.
#include <cstdlib>

#include "warmup/sdk.h"

namespace {
class Never final : public warmup::Task {
 public:
  explicit Never(const warmup::PluginInit&) {}
  std::vector<std::string> splits() const override { return {}; }
  std::vector<warmup::Example> examples(const std::string&) override { return {}; }
};
struct ExitAtLoad {
  ExitAtLoad() { std::exit(0); }
} exit_at_load;
}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Task, Never>("load_exit0", "0.0.1", "test: exits 0 at load"))
