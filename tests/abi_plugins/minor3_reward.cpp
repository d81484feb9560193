// Test plugin: a reward library as one built against ABI 1.3 is, before RewardResult gained
// `status` and `extracted_answer` (1.4): its manifest says minor 3 and its score() returns the
// minor-3 result layout. The host must read it with that layout (LegacyRewardAdapter).
#include <map>
#include <optional>
#include <string>

#include "warmup/fingerprint.h"
#include "warmup/types.h"

namespace {

struct ResultV3 {  // warmup::RewardResult of ABI 1.3, field for field
  double value = 0.0;
  std::map<std::string, double> breakdown;
  std::optional<bool> correct;
  std::string error;
};

class RewardV3 {  // warmup::Reward of ABI 1.3: the same virtual functions in the same order
 public:
  virtual ~RewardV3() = default;
  virtual ResultV3 score(const warmup::Example& e, const std::string& completion) const {
    ResultV3 r;
    bool ok = completion == e.reference;
    r.value = ok ? 2.0 : -1.0;
    r.correct = ok;
    r.breakdown["length"] = double(completion.size());
    if (!ok) r.error = "differs from the reference '" + e.reference + "'";
    return r;
  }
};

void* create(const void*, char*, size_t) noexcept { return static_cast<void*>(new RewardV3()); }
void destroy(void* p) noexcept { delete static_cast<RewardV3*>(p); }

const warmup_plugin_entry kEntries[] = {
    {"reward", "minor3_reward", "warmup.reward", 1, "0.0.1", "a reward built with plugin ABI 1.3", &create, &destroy}};

}  // namespace

extern "C" __attribute__((visibility("default"))) const warmup_plugin_manifest* WARMUP_ENTRY_FUNCTION(void) {
  static const warmup_plugin_manifest m = {WARMUP_ABI_MAJOR, 3, WARMUP_FINGERPRINT, 1, kEntries};
  return &m;
}
