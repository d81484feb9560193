// safetensors reader and writer (https://github.com/huggingface/safetensors format): an 8-byte
// little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, then the data.
// Files are memory-mapped (MAP_PRIVATE: writes to a zero-copy tensor never reach the file);
// sharded checkpoints are read through model.safetensors.index.json.
//
// Validation at open, as the reference implementation (huggingface/safetensors) does it: the header
// length at most 100000000 and inside the file, a JSON object of typed entries (non-negative integer
// shapes and [begin, end] offsets, known dtypes, string metadata), overflow-checked element and
// byte counts equal to each tensor's span, and the spans, sorted, tiling the data section exactly
// (no gap, no overlap, no trailing bytes). Every error names the file and the tensor.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace warmup {

struct TensorInfo {
  std::string name;
  torch::ScalarType dtype;
  std::string dtype_name;      // as in the file: "F32", "BF16", "F16", ...
  std::vector<int64_t> shape;
  size_t begin = 0, end = 0;   // byte range within the data section
};

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // A CPU tensor viewing the mapped bytes (zero-copy; keeps the mapping alive). If the bytes are
  // not aligned for the dtype, a copy instead.
  torch::Tensor tensor(const std::string& name) const;

 private:
  std::filesystem::path path_;
  std::shared_ptr<void> map_;  // munmap on last release
  size_t size_ = 0;
  size_t data_start_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A checkpoint directory: model.safetensors, or shards listed by model.safetensors.index.json.
class SafetensorsCheckpoint {
 public:
  explicit SafetensorsCheckpoint(const std::filesystem::path& dir);
  bool contains(const std::string& name) const { return where_.count(name) > 0; }
  const TensorInfo& info(const std::string& name) const;
  torch::Tensor tensor(const std::string& name) const;
  std::vector<std::string> names() const;
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> where_;
};

// Writes `tensors` (in the given order) as one file, or as shards of at most `shard_bytes` plus
// model.safetensors.index.json when they do not fit in one. Returns the files written.
std::vector<std::filesystem::path> save_safetensors(
    const std::filesystem::path& dir, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
    uint64_t shard_bytes, const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// Single file (for tests and tools).
void write_safetensors_file(const std::filesystem::path& file,
                            const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                            const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// "F32" <-> torch dtype; throws for unsupported names.
torch::ScalarType safetensors_dtype(const std::string& name);
std::string safetensors_dtype_name(torch::ScalarType t);
// "5GB", "500MB", "1.5GiB", "123" -> bytes (decimal units as transformers, binary with "i").
uint64_t parse_size(const std::string& text);

}  // namespace warmup
