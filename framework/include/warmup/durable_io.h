// Durable file writes shared by the SDK (checkpoints in training.h) and the host's model writers:
// a file is written to `<path>.tmp`, every write checked, flushed and fsynced, renamed over `path`,
// and its directory fsynced, so after write_file_durable returns the bytes are on disk under their
// name, and after a failure (disk full, I/O error) the old file, if any, is untouched and the error
// names the file. Also a small SHA-256 for checkpoint manifests (the SDK links nothing of the host).
//
// Fault injection for tests: WARMUP_FAULT_WRITE="<substring>:<n>" makes the n-th (1-based, per
// process and per library) durable write whose path contains <substring> fail as ENOSPC after
// writing half of its bytes.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>

namespace warmup {
namespace durable {

// True when this write of `path` is the one WARMUP_FAULT_WRITE asks to fail.
inline bool fault_injected(const std::filesystem::path& path) {
  static std::atomic<long> count{0};
  const char* spec = std::getenv("WARMUP_FAULT_WRITE");
  if (!spec || !*spec) return false;
  std::string s(spec);
  long nth = 1;
  if (auto c = s.rfind(':'); c != std::string::npos) {
    nth = std::strtol(s.c_str() + c + 1, nullptr, 10);
    s.resize(c);
  }
  if (s.empty() || path.string().find(s) == std::string::npos) return false;
  return ++count == nth;
}

inline std::runtime_error io_error(const std::filesystem::path& path, const std::string& what, int err) {
  return std::runtime_error(path.string() + ": " + what + ": " + std::strerror(err));
}

// fsync of a file or directory by path (a directory's entries: renames and creations in it).
inline void fsync_path(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw io_error(path, "cannot open to sync", errno);
  int rc = ::fsync(fd), err = errno;
  ::close(fd);
  if (rc != 0 && err != EINVAL) throw io_error(path, "fsync failed", err);  // EINVAL: fs without sync
}

inline void write_file_durable(const std::filesystem::path& path, std::string_view data) {
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw io_error(tmp, "cannot write", errno);
  bool fault = fault_injected(path);
  size_t n = fault ? data.size() / 2 : data.size();
  int err = 0;
  if (std::fwrite(data.data(), 1, n, f) != n) err = errno ? errno : EIO;
  if (!err && fault) err = ENOSPC;
  if (!err && std::fflush(f) != 0) err = errno ? errno : EIO;
  if (!err && ::fsync(fileno(f)) != 0) err = errno;
  if (std::fclose(f) != 0 && !err) err = errno ? errno : EIO;
  if (err) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    throw io_error(path, "write failed (" + std::to_string(data.size()) + " bytes)", err);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw io_error(path, "rename from " + tmp.filename().string() + " failed", ec.value());
  fsync_path(path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path());
}

// SHA-256 (FIPS 180-4), streaming.
class Sha256 {
 public:
  Sha256() { reset(); }
  void reset() {
    h_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    len_ = 0;
    used_ = 0;
  }
  Sha256& update(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    len_ += n;
    while (n > 0) {
      size_t k = std::min(n, size_t(64) - used_);
      std::memcpy(buf_.data() + used_, p, k);
      used_ += k, p += k, n -= k;
      if (used_ == 64) block(buf_.data()), used_ = 0;
    }
    return *this;
  }
  std::string hex() {
    uint64_t bits = len_ * 8;
    unsigned char pad = 0x80;
    update(&pad, 1);
    unsigned char zero = 0;
    while (used_ != 56) update(&zero, 1);
    unsigned char l[8];
    for (int i = 0; i < 8; ++i) l[i] = static_cast<unsigned char>(bits >> (56 - 8 * i));
    update(l, 8);
    static const char* d = "0123456789abcdef";
    std::string out;
    for (uint32_t v : h_)
      for (int i = 7; i >= 0; --i) out += d[(v >> (4 * i)) & 0xF];
    return out;
  }

 private:
  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
  void block(const unsigned char* p) {
    static constexpr uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = uint32_t(p[4 * i]) << 24 | uint32_t(p[4 * i + 1]) << 16 | uint32_t(p[4 * i + 2]) << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; ++i) {
      uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int i = 0; i < 64; ++i) {
      uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h_[0] += a, h_[1] += b, h_[2] += c, h_[3] += d, h_[4] += e, h_[5] += f, h_[6] += g, h_[7] += h;
  }
  std::array<uint32_t, 8> h_;
  std::array<unsigned char, 64> buf_;
  uint64_t len_;
  size_t used_;
};

// SHA-256 of a file's bytes, with its size; throws naming the file when it cannot be read.
inline std::string sha256_file(const std::filesystem::path& path, uint64_t* size = nullptr) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw io_error(path, "cannot read", errno);
  Sha256 h;
  std::array<char, 1 << 16> buf;
  uint64_t total = 0;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) h.update(buf.data(), n), total += n;
  bool bad = std::ferror(f);
  std::fclose(f);
  if (bad) throw io_error(path, "read failed", EIO);
  if (size) *size = total;
  return h.hex();
}

}  // namespace durable
}  // namespace warmup
