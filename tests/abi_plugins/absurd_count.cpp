// Test plugin: loads cleanly, but its manifest claims 2^31 entries while its table holds one.
// Reading them would walk far past the table.
#include "warmup/sdk.h"

namespace {
class Never final : public warmup::Task {
 public:
  explicit Never(const warmup::PluginInit&) {}
  std::vector<std::string> splits() const override { return {}; }
  std::vector<warmup::Example> examples(const std::string&) override { return {}; }
};
}  // namespace

extern "C" __attribute__((visibility("default"))) const warmup_plugin_manifest* WARMUP_ENTRY_FUNCTION(void) {
  static const warmup_plugin_entry entries[] = {
      warmup::entry<warmup::Task, Never>("absurd_count", "0.0.1", "test: claims 2^31 entries")};
  static const warmup_plugin_manifest manifest = {WARMUP_ABI_MAJOR, WARMUP_ABI_MINOR, WARMUP_FINGERPRINT,
                                                  size_t(1) << 31, entries};
  return &manifest;
}
