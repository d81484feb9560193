#include "engine/kv_cache.h"

#include <stdexcept>

namespace warmup {

BlockPool::BlockPool(const ModelConfig& c, int64_t num_blocks, int64_t block_size, torch::ScalarType dtype,
                     torch::Device device)
    : block_size_(block_size), refs_(size_t(num_blocks), 0) {
  auto opts = torch::TensorOptions().dtype(dtype).device(device);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    k.push_back(torch::zeros({num_blocks * block_size, c.num_key_value_heads, c.head_dim}, opts));
    v.push_back(torch::zeros({num_blocks * block_size, c.num_key_value_heads, c.head_dim}, opts));
  }
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

int64_t BlockPool::blocks_for_budget(const ModelConfig& c, int64_t block_size, torch::ScalarType dtype, double mb) {
  double per_block = 2.0 * double(c.num_hidden_layers * c.num_key_value_heads * c.head_dim * block_size) *
                     double(c10::elementSize(dtype));
  return std::max<int64_t>(1, int64_t(mb * 1024 * 1024 / per_block));
}

int64_t BlockPool::allocate() {
  if (free_.empty()) return -1;
  int64_t b = free_.back();
  free_.pop_back();
  refs_[size_t(b)] = 1;
  return b;
}

void BlockPool::release(int64_t block) {
  if (refs_[size_t(block)] <= 0) throw std::logic_error("KV block released twice");
  if (--refs_[size_t(block)] == 0) free_.push_back(block);
}

void BlockPool::copy_slots(int64_t from, int64_t to, int64_t count) {
  for (size_t l = 0; l < k.size(); ++l) {
    k[l].narrow(0, to * block_size_, count).copy_(k[l].narrow(0, from * block_size_, count));
    v[l].narrow(0, to * block_size_, count).copy_(v[l].narrow(0, from * block_size_, count));
  }
}

bool SeqBlocks::reserve(BlockPool& pool, int64_t tokens) {
  std::vector<int64_t> added;
  while (int64_t(blocks.size() + added.size()) * pool.block_size() < tokens) {
    int64_t b = pool.allocate();
    if (b < 0) {
      for (int64_t x : added) pool.release(x);
      return false;
    }
    added.push_back(b);
  }
  blocks.insert(blocks.end(), added.begin(), added.end());
  return true;
}

void SeqBlocks::release(BlockPool& pool) {
  for (int64_t b : blocks) pool.release(b);
  blocks.clear();
}

SeqBlocks SeqBlocks::fork(BlockPool& pool, int64_t length) const {
  SeqBlocks child;
  int64_t bs = pool.block_size();
  int64_t full = length / bs, partial = length % bs;
  if (partial > 0) {
    int64_t fresh = pool.allocate();
    if (fresh < 0) return child;
    pool.copy_slots(blocks[size_t(full)], fresh, partial);
    for (int64_t i = 0; i < full; ++i) pool.retain(blocks[size_t(i)]), child.blocks.push_back(blocks[size_t(i)]);
    child.blocks.push_back(fresh);
  } else {
    for (int64_t i = 0; i < full; ++i) pool.retain(blocks[size_t(i)]), child.blocks.push_back(blocks[size_t(i)]);
  }
  return child;
}

}  // namespace warmup
