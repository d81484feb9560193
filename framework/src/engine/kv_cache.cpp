#include "engine/kv_cache.h"

#include <cstring>
#include <stdexcept>

namespace warmup {

uint64_t block_key(uint64_t parent, const int32_t* tokens, int64_t count) {
  uint64_t h = 1469598103934665603ull ^ (parent * 0x9E3779B97F4A7C15ull);
  for (int64_t i = 0; i < count; ++i) {
    h ^= uint64_t(uint32_t(tokens[i]));
    h *= 1099511628211ull;
    h ^= h >> 29;
  }
  h ^= uint64_t(count) * 0xBF58476D1CE4E5B9ull;
  return h ^ (h >> 31);
}

BlockPool::BlockPool(const ModelConfig& c, int64_t num_blocks, int64_t block_size, torch::ScalarType dtype,
                     torch::Device device, bool prefix_caching)
    : config_(c), dtype_(dtype), device_(device), block_size_(block_size), prefix_caching_(prefix_caching),
      refs_(size_t(num_blocks), 0), cached_(size_t(num_blocks)) {
  reallocate();
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

double BlockPool::bytes_per_block(const ModelConfig& c, int64_t block_size, torch::ScalarType dtype) {
  return 2.0 * double(c.num_hidden_layers * c.num_key_value_heads * c.head_dim * block_size) *
         double(c10::elementSize(dtype));
}

int64_t BlockPool::blocks_for_budget(const ModelConfig& c, int64_t block_size, torch::ScalarType dtype, double mb) {
  return std::max<int64_t>(1, int64_t(mb * 1024 * 1024 / bytes_per_block(c, block_size, dtype)));
}

void BlockPool::reallocate() {
  if (allocated()) return;
  // Slots are written before they are read (a sequence attends to its own cached positions only):
  // no need to zero them.
  auto opts = torch::TensorOptions().dtype(dtype_).device(device_);
  int64_t slots = num_blocks() * block_size_;
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    k.push_back(torch::empty({slots, config_.num_key_value_heads, config_.head_dim}, opts));
    v.push_back(torch::empty({slots, config_.num_key_value_heads, config_.head_dim}, opts));
  }
}

void BlockPool::release_memory() {
  if (used_blocks() > 0) throw std::logic_error("KV cache released while blocks are in use");
  // The contents go: so does every prefix-cache entry.
  for (int64_t b : evictable_) {
    cached_[size_t(b)].evictable = false;
    forget(b);
    free_.push_back(b);
  }
  evictable_.clear();
  k.clear();
  v.clear();
}

int64_t BlockPool::allocate() {
  int64_t b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (!evictable_.empty()) {
    b = evictable_.front();
    evictable_.pop_front();
    cached_[size_t(b)].evictable = false;
    forget(b);
  } else {
    return -1;
  }
  refs_[size_t(b)] = 1;
  return b;
}

void BlockPool::retain(int64_t block) {
  Cached& c = cached_[size_t(block)];
  if (c.evictable) {  // a cached block in use again
    evictable_.erase(c.lru);
    c.evictable = false;
  }
  ++refs_[size_t(block)];
}

void BlockPool::release(int64_t block) {
  if (refs_[size_t(block)] <= 0) throw std::logic_error("KV block released twice");
  if (--refs_[size_t(block)] > 0) return;
  Cached& c = cached_[size_t(block)];
  if (!c.tokens.empty()) {
    c.lru = evictable_.insert(evictable_.end(), block);
    c.evictable = true;
  } else {
    free_.push_back(block);
  }
}

void BlockPool::forget(int64_t block) {
  Cached& c = cached_[size_t(block)];
  if (c.tokens.empty()) return;
  auto it = by_key_.find(c.key);
  if (it != by_key_.end() && it->second == block) by_key_.erase(it);
  c.tokens.clear();
}

int64_t BlockPool::lookup(uint64_t key, uint64_t parent, const int32_t* tokens) {
  if (!prefix_caching_) return -1;
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return -1;
  int64_t b = it->second;
  const Cached& c = cached_[size_t(b)];
  if (c.parent != parent || std::memcmp(c.tokens.data(), tokens, size_t(block_size_) * sizeof(int32_t)) != 0)
    return -1;
  retain(b);
  return b;
}

void BlockPool::publish(int64_t block, uint64_t key, uint64_t parent, const int32_t* tokens) {
  if (!prefix_caching_ || by_key_.count(key)) return;
  Cached& c = cached_[size_t(block)];
  if (!c.tokens.empty()) return;  // already published under its key
  c.key = key, c.parent = parent;
  c.tokens.assign(tokens, tokens + block_size_);
  by_key_.emplace(key, block);
}

void BlockPool::copy_slots(int64_t from, int64_t to, int64_t count) {
  for (size_t l = 0; l < k.size(); ++l) {
    k[l].narrow(0, to * block_size_, count).copy_(k[l].narrow(0, from * block_size_, count));
    v[l].narrow(0, to * block_size_, count).copy_(v[l].narrow(0, from * block_size_, count));
  }
}

}  // namespace warmup
