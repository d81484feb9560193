// Paths in plugin options: relative ones are relative to the experiment file's folder
// (PluginInit::base_dir), as every in-tree plugin reads `data_dir`, `test`, `cache`, `data`.
#pragma once

#include <filesystem>
#include <string>

namespace warmup::common {

// `path` against `base_dir` when it is relative and base_dir is set; otherwise as given (also
// when empty). Lexically normalised; the file need not exist.
inline std::string resolve_path(const std::string& path, const std::string& base_dir) {
  namespace fs = std::filesystem;
  if (path.empty() || base_dir.empty() || fs::path(path).is_absolute()) return path;
  return (fs::path(base_dir) / path).lexically_normal().string();
}

}  // namespace warmup::common
