// Test plugin: its static initialiser writes through a null pointer (SIGSEGV at load).
#include "warmup/sdk.h"

namespace {
class Never final : public warmup::Task {
 public:
  explicit Never(const warmup::PluginInit&) {}
  std::vector<std::string> splits() const override { return {}; }
  std::vector<warmup::Example> examples(const std::string&) override { return {}; }
};
int* volatile null_pointer = nullptr;  // volatile: the compiler cannot see it is null
struct SegfaultAtLoad {
  SegfaultAtLoad() { *null_pointer = 42; }
} segfault_at_load;
}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Task, Never>("load_segv", "0.0.1", "test: segfaults at load"))
