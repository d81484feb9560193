// Test plugin: provides "good_task" again; the second library in search order must be rejected.
#include "warmup/sdk.h"

namespace {
class Dup final : public warmup::Task {
 public:
  explicit Dup(const warmup::PluginInit&) {}
  std::vector<std::string> splits() const override { return {}; }
  std::vector<warmup::Example> examples(const std::string&) override { return {}; }
};
}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Task, Dup>("good_task", "9.9.9", "duplicate of good_task"))
