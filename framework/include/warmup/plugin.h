// Defines a plugin library's manifest. In one .cpp of the plugin:
//
//   WARMUP_PLUGIN(warmup::entry<warmup::Reward, ExactMatch>("exact_match", "0.1.0", "..."))
//
// Several entries may be listed, separated by commas. `Impl` must be constructible from
// `const warmup::PluginInit&`; exceptions from the constructor become the create error.
#pragma once

#include <cstring>
#include <exception>

#include "abi.h"
#include "fingerprint.h"
#include "host.h"

namespace warmup {
namespace detail {

inline void copy_error(char* dst, size_t n, const char* msg) {
  if (!dst || n == 0) return;
  std::strncpy(dst, msg, n - 1);
  dst[n - 1] = '\0';
}

template <class Interface, class Impl>
void* create(const void* init, char* error, size_t error_size) noexcept {
  try {
    Interface* obj = new Impl(*static_cast<const PluginInit*>(init));
    return static_cast<void*>(obj);
  } catch (const std::exception& e) {
    copy_error(error, error_size, e.what());
  } catch (...) {
    copy_error(error, error_size, "unknown exception");
  }
  return nullptr;
}

template <class Interface>
void destroy(void* object) noexcept {
  delete static_cast<Interface*>(object);
}

}  // namespace detail

template <class Interface, class Impl>
constexpr warmup_plugin_entry entry(const char* name, const char* plugin_version,
                                    const char* description) {
  static_assert(std::is_base_of_v<Interface, Impl>, "Impl must implement Interface");
  return warmup_plugin_entry{Interface::kKind,
                             name,
                             Interface::kInterfaceId,
                             Interface::kInterfaceVersion,
                             plugin_version,
                             description,
                             &detail::create<Interface, Impl>,
                             &detail::destroy<Interface>};
}

}  // namespace warmup

#define WARMUP_PLUGIN(...)                                                                  \
  extern "C" __attribute__((visibility("default"))) const warmup_plugin_manifest*          \
  WARMUP_ENTRY_FUNCTION(void) {                                                             \
    static const warmup_plugin_entry entries[] = {__VA_ARGS__};                             \
    static const warmup_plugin_manifest manifest = {WARMUP_ABI_MAJOR, WARMUP_ABI_MINOR,     \
                                                    WARMUP_FINGERPRINT,                     \
                                                    sizeof(entries) / sizeof(entries[0]),   \
                                                    entries};                               \
    return &manifest;                                                                       \
  }
