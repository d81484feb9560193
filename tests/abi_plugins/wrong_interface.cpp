// Test plugin: a task entry declaring interface warmup.task@99; plus one valid reward entry, which
// must still load.
#include "warmup/sdk.h"

namespace {
class R final : public warmup::Reward {
 public:
  explicit R(const warmup::PluginInit&) {}
  warmup::RewardResult score(const warmup::Example&, const std::string&) const override { return {}; }
};
void* never(const void*, char*, size_t) { return nullptr; }
void never_destroy(void*) {}
}  // namespace

WARMUP_PLUGIN(warmup_plugin_entry{"task", "future_task", "warmup.task", 99, "0.0.1", "from the future", &never, &never_destroy},
              warmup::entry<warmup::Reward, R>("iface_ok_reward", "0.0.1", "valid entry next to a bad one"))
