// The C entry point every plugin library exports, and the manifest it returns.
//
// This is the only part of a library the host reads before deciding to trust it: the symbol name
// carries the ABI major (a library built for another major simply lacks the symbol), the manifest
// carries the ABI minor and the build fingerprint, and each entry names its kind, interface and
// version. The objects behind `create` are C++ (see task.h, reward.h, algorithm.h, teacher.h) and
// are only used once all of that matched exactly. Deliberately C: no C++ types cross here.
#pragma once

#include <stddef.h>
#include <stdint.h>

#define WARMUP_ABI_MAJOR 1
// 1: PluginInit::base_dir; 2: StageContext::service; 3: Policy RL methods;
// 4: RewardResult::status (infrastructure errors) and ::extracted_answer. Rewards of plugins
//    built with minor <= 3 still load: the host reads their results with the minor-3 layout
//    (LegacyRewardAdapter in reward.h).
// 5: Policy::last_generation_stats (appended virtual with a default: older plugins never call it).
//    Deprecated from 5 on, to be removed in a later minor: Policy::generate (use generate_ids) and
//    Policy::token_logprobs (use token_logprobs_at); nothing in the tree calls them.
// 6: Algorithm::validate (appended virtual; the host calls it only on plugins built with minor >= 6
//    and, for older ones, checks each task's eval split itself where the task offers it),
//    StagePlan, Validation, StageContext::progress, Policy::apply_chat_template.
// 7: Policy::apply_training_chat_template and ChatTokens (assistant_only_loss), and
//    Policy::last_sampling_logprobs (importance sampling against the sampler); appended virtuals.
// 8: Policy::enable_lora and LoraOptions (LoRA adapters, PEFT's format); appended virtual.
// 9: the "distributed" service (warmup/distributed.h: ranks and collectives of a multi-process
//    run). Algorithms built before it are refused in runs of more than one process.
// 10: Distributed::all_reduce_async and Work (appended virtual with a default), GradientReducer
//    (the gradient all-reduce overlapped with backward, warmup/distributed.h).
#define WARMUP_ABI_MINOR 10

#define WARMUP_DETAIL_CAT2(a, b) a##b
#define WARMUP_DETAIL_CAT(a, b) WARMUP_DETAIL_CAT2(a, b)
#define WARMUP_DETAIL_STR2(x) #x
#define WARMUP_DETAIL_STR(x) WARMUP_DETAIL_STR2(x)

// `warmup_plugin_manifest_v1` for ABI major 1.
#define WARMUP_ENTRY_FUNCTION WARMUP_DETAIL_CAT(warmup_plugin_manifest_v, WARMUP_ABI_MAJOR)
#define WARMUP_ENTRY_SYMBOL "warmup_plugin_manifest_v" WARMUP_DETAIL_STR(WARMUP_ABI_MAJOR)

#ifdef __cplusplus
extern "C" {
#endif

// Creates one object of the entry's interface. `init` points to a `const warmup::PluginInit`.
// Returns null and writes a NUL-terminated reason into `error` on failure; never throws.
typedef void* (*warmup_create_fn)(const void* init, char* error, size_t error_size);
// Destroys an object returned by the matching create.
typedef void (*warmup_destroy_fn)(void* object);

typedef struct warmup_plugin_entry {
  const char* kind;            // "task" | "reward" | "algorithm" | "teacher"
  const char* name;            // registry name, unique per kind, e.g. "exact_match"
  const char* interface_id;    // e.g. "warmup.reward"
  uint32_t interface_version;  // must equal the host's version of that interface
  const char* plugin_version;  // the plugin's own version, e.g. "0.1.0"
  const char* description;     // one line for `warmup plugins`
  warmup_create_fn create;
  warmup_destroy_fn destroy;
} warmup_plugin_entry;

typedef struct warmup_plugin_manifest {
  uint32_t abi_major;       // WARMUP_ABI_MAJOR the library was built with
  uint32_t abi_minor;       // must be <= the host's minor
  const char* fingerprint;  // build fingerprint, see fingerprint.h
  size_t entry_count;
  const warmup_plugin_entry* entries;
} warmup_plugin_manifest;

typedef const warmup_plugin_manifest* (*warmup_manifest_fn)(void);

#ifdef __cplusplus
}
#endif
