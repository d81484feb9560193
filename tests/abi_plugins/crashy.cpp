// Test plugin: a task whose constructor throws a plain exception (not a ConfigError), and a
// reward whose create function throws through the C boundary without the SDK's wrapper.
#include <stdexcept>

#include "warmup/sdk.h"

namespace {
class Crashy final : public warmup::Task {
 public:
  explicit Crashy(const warmup::PluginInit&) { throw std::runtime_error("boom: cannot open the data"); }
  std::vector<std::string> splits() const override { return {}; }
  std::vector<warmup::Example> examples(const std::string&) override { return {}; }
};
void* raw_throw(const void*, char*, size_t) { throw std::logic_error("raw create threw"); }
void raw_destroy(void*) {}
}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Task, Crashy>("crashy", "0.0.1", "throws in create"),
              warmup_plugin_entry{"reward", "raw_thrower", "warmup.reward", 1, "0.0.1", "create throws", &raw_throw, &raw_destroy})
