// Test plugin: its static initialiser never returns (sleeps forever, ignoring SIGTERM and SIGINT).
#include <signal.h>
#include <unistd.h>

#include "warmup/sdk.h"

namespace {
class Never final : public warmup::Task {
 public:
  explicit Never(const warmup::PluginInit&) {}
  std::vector<std::string> splits() const override { return {}; }
  std::vector<warmup::Example> examples(const std::string&) override { return {}; }
};
struct HangAtLoad {
  HangAtLoad() {
    ::signal(SIGTERM, SIG_IGN);
    ::signal(SIGINT, SIG_IGN);
    for (;;) ::sleep(1000);
  }
} hang_at_load;
}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Task, Never>("load_hang", "0.0.1", "test: hangs at load"))
