// Block-allocated KV cache: per layer, one pool of `num_blocks * block_size` slots; a sequence
// owns a list of blocks, so memory follows the tokens actually generated. Blocks are reference
// counted: the n samples of one prompt share the prompt's full blocks (the last, partial block is
// copied on fork).
#pragma once

#include <torch/torch.h>

#include <vector>

#include "model/config.h"

namespace warmup {

class BlockPool {
 public:
  BlockPool(const ModelConfig& c, int64_t num_blocks, int64_t block_size, torch::ScalarType dtype,
            torch::Device device);
  // Blocks that fit in `megabytes` for this model (at least 1).
  static int64_t blocks_for_budget(const ModelConfig& c, int64_t block_size, torch::ScalarType dtype, double megabytes);

  int64_t allocate();  // a fresh block with refcount 1, or -1 when none is free
  void retain(int64_t block) { ++refs_[size_t(block)]; }
  void release(int64_t block);
  int64_t free_blocks() const { return int64_t(free_.size()); }
  int64_t num_blocks() const { return int64_t(refs_.size()); }
  int64_t block_size() const { return block_size_; }
  // Copies the first `count` slots of block `from` into block `to`, in every layer.
  void copy_slots(int64_t from, int64_t to, int64_t count);

  std::vector<torch::Tensor> k, v;  // per layer (num_blocks * block_size, Hkv, D)

 private:
  int64_t block_size_;
  std::vector<int32_t> refs_;
  std::vector<int64_t> free_;
};

// A sequence's view of the cache.
struct SeqBlocks {
  std::vector<int64_t> blocks;
  int64_t slot(int64_t pos, int64_t block_size) const {
    return blocks[size_t(pos / block_size)] * block_size + pos % block_size;
  }
  // Grows to hold `tokens` positions; false (nothing changed) when the pool is exhausted.
  bool reserve(BlockPool& pool, int64_t tokens);
  void release(BlockPool& pool);
  // A copy for another sample of the same prefix holding `length` positions.
  SeqBlocks fork(BlockPool& pool, int64_t length) const;  // empty blocks when the pool is exhausted
};

}  // namespace warmup
