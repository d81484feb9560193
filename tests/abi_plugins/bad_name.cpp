// Test plugin: loads cleanly, but an entry's name is a path with a newline, not a plugin name.
#include "warmup/sdk.h"

namespace {
class Never final : public warmup::Task {
 public:
  explicit Never(const warmup::PluginInit&) {}
  std::vector<std::string> splits() const override { return {}; }
  std::vector<warmup::Example> examples(const std::string&) override { return {}; }
};
}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Task, Never>("../evil\nname", "0.0.1", "test: bad name"))
