// Host-side exception types. Each message is one line a user can act on, starting with the place
// (file:line:col, a store path, a library path) where that is known.
#pragma once

#include <stdexcept>

#include "warmup/types.h"  // ConfigError, DataError, PluginError (shared with plugins)

namespace warmup {

struct UsageError : std::runtime_error {  // bad command line
  using std::runtime_error::runtime_error;
};
struct StoreError : std::runtime_error {  // SQLite store cannot be opened / written
  using std::runtime_error::runtime_error;
};

}  // namespace warmup
