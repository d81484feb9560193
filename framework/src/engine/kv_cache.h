// Block-allocated KV cache with prefix caching (vLLM's KVCacheManager / BlockPool, v1).
//
// Per layer one pool of `num_blocks * block_size` slots; a sequence owns a block table, so memory
// follows the tokens actually cached. Blocks are reference counted: the n samples of one prompt
// share the prompt's full blocks (the last, partial block is copied on fork), and with prefix
// caching any request shares the full blocks of any earlier one whose tokens and prefix are equal.
//
// Prefix caching: a full block is keyed by hash(parent block's key, its block_size tokens), so a key
// names the whole prefix up to the block's end; a lookup also compares the stored tokens and parent
// key (a false hit needs a 64-bit collision of the parent key). A cached block whose reference count
// drops to 0 stays findable and is evicted least recently freed first, after the never-cached free
// blocks are used up.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

#include "model/config.h"

namespace warmup {

// Key of a full block: FNV-1a-style mix of the parent's key and the block's tokens (parent 0 for
// the first block). Deterministic across runs and processes.
uint64_t block_key(uint64_t parent, const int32_t* tokens, int64_t count);

class BlockPool {
 public:
  BlockPool(const ModelConfig& c, int64_t num_blocks, int64_t block_size, torch::ScalarType dtype,
            torch::Device device, bool prefix_caching = true);
  // Blocks that fit in `megabytes` for this model (at least 1).
  static int64_t blocks_for_budget(const ModelConfig& c, int64_t block_size, torch::ScalarType dtype, double megabytes);
  static double bytes_per_block(const ModelConfig& c, int64_t block_size, torch::ScalarType dtype);

  // A block with refcount 1 for new content: a never-cached free block, else the least recently
  // freed cached one (its key is forgotten); -1 when every block is in use.
  int64_t allocate();
  void retain(int64_t block);
  void release(int64_t block);
  int64_t free_blocks() const { return int64_t(free_.size() + evictable_.size()); }
  int64_t num_blocks() const { return int64_t(refs_.size()); }
  int64_t used_blocks() const { return num_blocks() - free_blocks(); }
  int64_t block_size() const { return block_size_; }
  bool prefix_caching() const { return prefix_caching_; }
  // Copies the first `count` slots of block `from` into block `to`, in every layer.
  void copy_slots(int64_t from, int64_t to, int64_t count);

  // Prefix cache. The block cached under `key` holding `tokens` (block_size of them) after a prefix
  // keyed `parent`, retained for the caller; -1 on a miss (or with prefix caching off).
  int64_t lookup(uint64_t key, uint64_t parent, const int32_t* tokens);
  // Makes the full block `block` findable under `key` (no-op if that key is already cached).
  void publish(int64_t block, uint64_t key, uint64_t parent, const int32_t* tokens);

  // Frees the cache tensors (no block may be in use); they are allocated again by reallocate().
  void release_memory();
  void reallocate();
  bool allocated() const { return !k.empty(); }

  std::vector<torch::Tensor> k, v;  // per layer (num_blocks * block_size, Hkv, D)

 private:
  void forget(int64_t block);  // drops its prefix-cache entry

  struct Cached {
    uint64_t key = 0, parent = 0;
    std::vector<int32_t> tokens;  // empty: not cached
    std::list<int64_t>::iterator lru;
    bool evictable = false;
  };
  ModelConfig config_;
  torch::ScalarType dtype_;
  torch::Device device_;
  int64_t block_size_;
  bool prefix_caching_;
  std::vector<int32_t> refs_;
  std::vector<int64_t> free_;
  std::list<int64_t> evictable_;  // cached blocks with refcount 0, least recently freed first
  std::vector<Cached> cached_;
  std::unordered_map<uint64_t, int64_t> by_key_;
};

}  // namespace warmup
