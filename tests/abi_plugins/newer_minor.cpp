// Test plugin: the right entry symbol but a manifest asking for a newer ABI minor than the host's.
#include "warmup/fingerprint.h"

extern "C" __attribute__((visibility("default"))) const warmup_plugin_manifest* WARMUP_ENTRY_FUNCTION(void) {
  static const warmup_plugin_manifest m = {WARMUP_ABI_MAJOR, WARMUP_ABI_MINOR + 7, WARMUP_FINGERPRINT, 0, nullptr};
  return &m;
}
