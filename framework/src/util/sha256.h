// SHA-256 (FIPS 180-4) for digests of datasets, configs, artifacts and plugin libraries.
// Streaming; not constant-time (nothing secret is hashed here).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace warmup {

class Sha256 {
 public:
  Sha256();
  Sha256& update(const void* data, size_t size);
  Sha256& update(std::string_view s) { return update(s.data(), s.size()); }
  std::array<uint8_t, 32> digest();  // finalises; the object must not be updated afterwards
  std::string hex();

 private:
  void block(const uint8_t* p);
  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buf_{};
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

std::string sha256_hex(std::string_view data);
// Hash of a regular file, or of a directory (sorted relative paths + file contents).
std::string sha256_path(const std::filesystem::path& path);

}  // namespace warmup
