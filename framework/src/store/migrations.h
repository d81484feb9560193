// Numbered schema migrations, applied in order through PRAGMA user_version.
// Migration N (1-based) is kMigrations[N-1]; never edit a released one, append a new one.
#pragma once

#include <string_view>
#include <vector>

namespace warmup {
const std::vector<std::string_view>& store_migrations();
}
