// See safetensors.h.
#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <tuple>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "util/brief.h"
#include "warmup/durable_io.h"
#include "util/errors.h"

namespace warmup {
namespace fs = std::filesystem;
using nlohmann::json;

torch::ScalarType safetensors_dtype(const std::string& n) {
  static const std::map<std::string, torch::ScalarType> kMap = {
      {"F64", torch::kFloat64}, {"F32", torch::kFloat32}, {"F16", torch::kFloat16},
      {"BF16", torch::kBFloat16}, {"I64", torch::kInt64}, {"I32", torch::kInt32},
      {"I16", torch::kInt16}, {"I8", torch::kInt8}, {"U8", torch::kUInt8}, {"BOOL", torch::kBool}};
  auto it = kMap.find(n);
  if (it == kMap.end()) throw DataError("unsupported safetensors dtype '" + brief(n) + "'");
  return it->second;
}

std::string safetensors_dtype_name(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat64: return "F64";
    case torch::kFloat32: return "F32";
    case torch::kFloat16: return "F16";
    case torch::kBFloat16: return "BF16";
    case torch::kInt64: return "I64";
    case torch::kInt32: return "I32";
    case torch::kInt16: return "I16";
    case torch::kInt8: return "I8";
    case torch::kUInt8: return "U8";
    case torch::kBool: return "BOOL";
    default: throw std::runtime_error(std::string("dtype ") + c10::toString(t) + " cannot be saved as safetensors");
  }
}

uint64_t parse_size(const std::string& text) {
  size_t i = 0;
  double v = std::stod(text, &i);
  std::string unit = text.substr(i);
  unit.erase(std::remove(unit.begin(), unit.end(), ' '), unit.end());
  std::transform(unit.begin(), unit.end(), unit.begin(), ::toupper);
  double mul = unit.empty() || unit == "B" ? 1
               : unit == "KB"              ? 1e3
               : unit == "MB"              ? 1e6
               : unit == "GB"              ? 1e9
               : unit == "KIB"             ? 1024.0
               : unit == "MIB"             ? 1048576.0
               : unit == "GIB"             ? 1073741824.0
                                           : -1;
  if (mul < 0 || v <= 0) throw UsageError("bad size '" + text + "' (e.g. 5GB, 500MB, 2GiB)");
  return uint64_t(v * mul);
}

namespace {

// The header length bound of the reference implementation (huggingface/safetensors MAX_HEADER_SIZE).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// A JSON value as a non-negative integer (the reference reads shapes and offsets as usize: no
// floats, booleans or negative numbers).
uint64_t json_u64(const json& v, const std::string& what) {
  if (!v.is_number_unsigned())
    throw DataError(what + " must be a non-negative integer, got " + brief(v));
  return v.get<uint64_t>();
}

}  // namespace

SafetensorsFile::SafetensorsFile(const fs::path& path) : path_(path) {
  std::string p = path.string();
  int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0) throw DataError(p + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw DataError(p + ": not a regular file");
  }
  size_ = size_t(st.st_size);
  if (size_ < 8) {
    ::close(fd);
    throw DataError(p + ": truncated safetensors file (" + std::to_string(size_) + " bytes, no header)");
  }
  void* m = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) throw DataError(p + ": mmap failed: " + std::strerror(errno));
  size_t sz = size_;
  map_ = std::shared_ptr<void>(m, [sz](void* q) { munmap(q, sz); });
  const auto* bytes = static_cast<const uint8_t*>(m);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > kMaxHeaderBytes)
    throw DataError(p + ": header length " + std::to_string(header_len) + " exceeds the limit of " +
                    std::to_string(kMaxHeaderBytes) + " bytes: corrupt or not safetensors");
  if (header_len > size_ - 8)
    throw DataError(p + ": header length " + std::to_string(header_len) + " exceeds the file (" +
                    std::to_string(size_) + " bytes): truncated or not safetensors");
  data_start_ = 8 + header_len;
  json h;
  try {
    h = json::parse(reinterpret_cast<const char*>(bytes + 8), reinterpret_cast<const char*>(bytes + 8 + header_len));
  } catch (const json::parse_error& e) {
    throw DataError(p + ": header is not valid JSON: " + e.what());
  }
  if (!h.is_object()) throw DataError(p + ": header is not a JSON object");
  const uint64_t data_size = size_ - data_start_;
  struct Range {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Range> ranges;
  for (const auto& [name, v] : h.items()) {
    if (name == "__metadata__") {
      if (v.is_null()) continue;  // as the reference: an absent map
      if (!v.is_object()) throw DataError(p + ": __metadata__ must be an object of strings, got " + v.type_name());
      for (const auto& [k, mv] : v.items()) {
        if (!mv.is_string())
          throw DataError(p + ": __metadata__ '" + brief(k) + "' must be a string, got " + mv.type_name());
        metadata_[k] = mv.get<std::string>();
      }
      continue;
    }
    try {
      if (!v.is_object()) throw DataError(std::string("entry must be an object, got ") + v.type_name());
      for (const char* k : {"dtype", "shape", "data_offsets"})
        if (!v.contains(k)) throw DataError(std::string("no \"") + k + "\"");
      if (!v["dtype"].is_string()) throw DataError("dtype must be a string, got " + brief(v["dtype"]));
      TensorInfo t;
      t.name = name;
      t.dtype_name = v["dtype"].get<std::string>();
      t.dtype = safetensors_dtype(t.dtype_name);
      const json& shape = v["shape"];
      if (!shape.is_array()) throw DataError("shape must be an array, got " + brief(shape));
      // Overflow-checked element and byte counts: a shape like [2^62, 4] must not wrap to 0 bytes.
      uint64_t numel = 1;
      for (size_t i = 0; i < shape.size(); ++i) {
        uint64_t d = json_u64(shape[i], "shape[" + std::to_string(i) + "]");
        if (__builtin_mul_overflow(numel, d, &numel) || numel > uint64_t(INT64_MAX))
          throw DataError("shape " + brief(shape) + " has more than 2^63 elements (overflow)");
        t.shape.push_back(int64_t(d));
      }
      uint64_t want = 0;
      if (__builtin_mul_overflow(numel, uint64_t(c10::elementSize(t.dtype)), &want))
        throw DataError(t.dtype_name + " shape " + brief(shape) + " needs more than 2^64 bytes (overflow)");
      const json& off = v["data_offsets"];
      if (!off.is_array() || off.size() != 2)
        throw DataError("data_offsets must be [begin, end], got " + brief(off));
      uint64_t b = json_u64(off[0], "data_offsets[0]"), e = json_u64(off[1], "data_offsets[1]");
      if (b > e) throw DataError("data_offsets " + brief(off) + " end before they begin");
      if (e > data_size)
        throw DataError("data ends at byte " + std::to_string(e) + " but the file has " + std::to_string(data_size) +
                        " data bytes (truncated?)");
      if (e - b != want)
        throw DataError("data_offsets span " + std::to_string(e - b) + " bytes but " + t.dtype_name + " shape " +
                        brief(shape) + " needs " + std::to_string(want));
      t.begin = size_t(b), t.end = size_t(e);
      auto [it, fresh] = tensors_.emplace(name, std::move(t));
      ranges.push_back({b, e, &it->first});
    } catch (const DataError& e) {
      throw DataError(p + ": tensor '" + brief(name) + "': " + e.what());
    } catch (const json::exception& e) {
      throw DataError(p + ": tensor '" + name + "': malformed entry: " + e.what());
    }
  }
  // As the reference implementation: sorted by offsets, the tensors tile the data section exactly
  // (no gap, no overlap, nothing after the last one).
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
  uint64_t at = 0;
  for (const Range& r : ranges) {
    if (r.begin < at)
      throw DataError(p + ": tensor '" + brief(*r.name) + "' overlaps the previous tensor at data byte " +
                      std::to_string(r.begin));
    if (r.begin > at)
      throw DataError(p + ": tensor '" + brief(*r.name) + "' starts at data byte " + std::to_string(r.begin) +
                      " but the previous tensor ends at " + std::to_string(at) + " (a gap)");
    at = r.end;
  }
  if (at != data_size)
    throw DataError(p + ": the tensors cover " + std::to_string(at) + " data bytes but the file has " +
                    std::to_string(data_size) + " (trailing bytes)");
}

SafetensorsFile::~SafetensorsFile() = default;

torch::Tensor SafetensorsFile::tensor(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw DataError(path_.string() + ": no tensor '" + name + "'");
  const TensorInfo& t = it->second;
  auto* base = static_cast<uint8_t*>(map_.get()) + data_start_ + t.begin;
  auto opts = torch::TensorOptions().dtype(t.dtype);
  if (reinterpret_cast<uintptr_t>(base) % c10::elementSize(t.dtype) != 0) {
    torch::Tensor out = torch::empty(t.shape, opts);
    std::memcpy(out.data_ptr(), base, t.end - t.begin);
    return out;
  }
  std::shared_ptr<void> keep = map_;
  return torch::from_blob(base, t.shape, [keep](void*) mutable { keep.reset(); }, opts);
}

SafetensorsCheckpoint::SafetensorsCheckpoint(const fs::path& dir) : dir_(dir) {
  fs::path index = dir / "model.safetensors.index.json";
  std::vector<fs::path> files;
  std::map<std::string, std::string> weight_map;
  if (fs::exists(index)) {
    std::ifstream in(index);
    if (!in) throw DataError(index.string() + ": cannot read");
    json j;
    try {
      j = json::parse(in);
    } catch (const json::parse_error& e) {
      throw DataError(index.string() + ": not valid JSON: " + e.what());
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      throw DataError(index.string() + ": no weight_map object");
    for (const auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string())
        throw DataError(index.string() + ": weight_map '" + brief(name) + "' must be a shard file name (a string), got " +
                        brief(file));
      std::string shard = file.get<std::string>();
      // A shard is a file in the checkpoint directory, not a path elsewhere.
      fs::path rel(shard);
      bool escapes = shard.empty() || shard == "." || shard == ".." || rel.is_absolute() || rel.filename() != rel;
      if (escapes)
        throw DataError(index.string() + ": weight_map '" + brief(name) + "': shard '" + brief(shard) +
                        "' is not a file name in the checkpoint directory");
      weight_map[name] = shard;
      if (std::find(files.begin(), files.end(), dir / shard) == files.end()) files.push_back(dir / shard);
    }
    for (const auto& f : files)
      if (!fs::exists(f)) throw DataError(index.string() + ": shard " + f.filename().string() + " is missing");
  } else if (fs::exists(dir / "model.safetensors")) {
    files.push_back(dir / "model.safetensors");
  } else {
    throw DataError(dir.string() + ": no model.safetensors or model.safetensors.index.json");
  }
  for (const auto& f : files) {
    files_.push_back(std::make_unique<SafetensorsFile>(f));
    for (const auto& [name, info] : files_.back()->tensors()) {
      if (!weight_map.empty() && weight_map.count(name) && dir / weight_map[name] != f) continue;
      where_[name] = files_.back().get();
    }
  }
  for (const auto& [name, file] : weight_map)
    if (!where_.count(name))
      throw DataError(index.string() + ": tensor '" + brief(name) + "' is not in its shard " + brief(file));
}

const TensorInfo& SafetensorsCheckpoint::info(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw DataError(dir_.string() + ": checkpoint has no tensor '" + name + "'");
  return it->second->tensors().at(name);
}

torch::Tensor SafetensorsCheckpoint::tensor(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw DataError(dir_.string() + ": checkpoint has no tensor '" + name + "'");
  return it->second->tensor(name);
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [n, f] : where_) out.push_back(n);
  return out;
}

void write_safetensors_file(const fs::path& file, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                            const std::map<std::string, std::string>& metadata) {
  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  size_t offset = 0;
  std::vector<torch::Tensor> cpu;
  for (const auto& [name, t0] : tensors) {
    torch::Tensor t = t0.detach().to(torch::kCPU).contiguous();
    size_t bytes = size_t(t.numel()) * t.element_size();
    h[name] = {{"dtype", safetensors_dtype_name(t.scalar_type())}, {"shape", t.sizes().vec()},
               {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    cpu.push_back(t);
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');  // data section 8-byte aligned
  // Streamed (tensors are not copied into one buffer); every write checked, fsynced, then renamed
  // and the folder fsynced, as durable::write_file_durable.
  fs::path tmp = file;
  tmp += ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw durable::io_error(tmp, "cannot write", errno);
  bool fault = durable::fault_injected(file);
  int err = 0;
  auto put = [&](const void* p, size_t n) {
    if (!err && std::fwrite(p, 1, n, f) != n) err = errno ? errno : EIO;
  };
  uint64_t n = header.size();
  char len[8];
  for (int i = 0; i < 8; ++i) len[i] = char((n >> (8 * i)) & 0xFF);
  put(len, 8);
  put(header.data(), header.size());
  if (fault) err = ENOSPC;
  for (const auto& t : cpu) put(t.data_ptr(), size_t(t.numel()) * t.element_size());
  if (!err && std::fflush(f) != 0) err = errno ? errno : EIO;
  if (!err && ::fsync(fileno(f)) != 0) err = errno;
  if (std::fclose(f) != 0 && !err) err = errno ? errno : EIO;
  if (err) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw durable::io_error(file, "write failed (disk full?)", err);
  }
  fs::rename(tmp, file);
  durable::fsync_path(file.parent_path());
}

std::vector<fs::path> save_safetensors(const fs::path& dir, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                                       uint64_t shard_bytes, const std::map<std::string, std::string>& metadata) {
  fs::create_directories(dir);
  std::vector<std::vector<std::pair<std::string, torch::Tensor>>> shards(1);
  uint64_t cur = 0, total = 0;
  for (const auto& nt : tensors) {
    uint64_t b = uint64_t(nt.second.numel()) * nt.second.element_size();
    if (cur > 0 && cur + b > shard_bytes) shards.emplace_back(), cur = 0;
    shards.back().push_back(nt);
    cur += b, total += b;
  }
  std::vector<fs::path> written;
  fs::remove(dir / "model.safetensors.index.json");
  if (shards.size() == 1) {
    write_safetensors_file(dir / "model.safetensors", shards[0], metadata);
    written.push_back(dir / "model.safetensors");
    return written;
  }
  fs::remove(dir / "model.safetensors");
  json weight_map = json::object();
  char name[64];
  for (size_t i = 0; i < shards.size(); ++i) {
    std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    write_safetensors_file(dir / name, shards[i], metadata);
    written.push_back(dir / name);
    for (const auto& [n, t] : shards[i]) weight_map[n] = name;
  }
  json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  durable::write_file_durable(dir / "model.safetensors.index.json", index.dump(2) + "\n");
  written.push_back(dir / "model.safetensors.index.json");
  return written;
}

}  // namespace warmup
