// Test plugin: built "for ABI 2": exports warmup_plugin_manifest_v2 and not the v1 symbol.
#include "warmup/abi.h"

extern "C" __attribute__((visibility("default"))) const warmup_plugin_manifest* warmup_plugin_manifest_v2(void) {
  static const warmup_plugin_manifest m = {2, 0, "sdk=2", 0, nullptr};
  return &m;
}
