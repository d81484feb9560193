// Test plugin: built with the old libstdc++ string ABI (as the fingerprint says): must be refused.
#define WARMUP_FINGERPRINT "sdk=1;stdlib=libstdc++;cxx11abi=0;json=3.11.2;torch=none;compiler=gcc-4"
#include "warmup/sdk.h"

namespace {
class T final : public warmup::Task {
 public:
  explicit T(const warmup::PluginInit&) {}
  std::vector<std::string> splits() const override { return {}; }
  std::vector<warmup::Example> examples(const std::string&) override { return {}; }
};
}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Task, T>("old_abi_task", "0.0.1", "fingerprint mismatch"))
