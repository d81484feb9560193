// Plugin discovery and creation: scans directories for shared libraries, checks each library's
// manifest (entry symbol for the ABI major, ABI minor, build fingerprint, interface id and exact
// version per entry, duplicate names) and records every rejection with its reason.
//
// With probing enabled (enable_plugin_probe, done by the warmup executable) manifests are read in
// child processes (see probe.h): a library that crashes, hangs or reports an absurd manifest there
// is rejected and never loaded into the host, and accepted libraries are only loaded into the host
// when one of their plugins is first created. Without it (the unit tests) libraries are loaded at
// once. Loaded libraries stay loaded until the process exits.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "plugins/probe.h"
#include "warmup/abi.h"
#include "warmup/host.h"
#include "warmup/reward.h"

namespace warmup {

struct PluginEntryInfo {
  std::string kind, name, interface_id, plugin_version, description;
  uint32_t interface_version = 0;
  std::filesystem::path library;
  std::string fingerprint;
  size_t index = 0;        // position in the library's manifest
  size_t entry_count = 0;  // entries in that manifest
  // Set once the library is loaded into the host (at scan without probing, else at first create).
  mutable warmup_create_fn create = nullptr;
  mutable warmup_destroy_fn destroy = nullptr;
  uint32_t abi_minor = WARMUP_ABI_MINOR;  // the manifest's
};

// Every library the scan found and whether it was rejected as a whole (its entries may still be
// rejected one by one: see failures()).
struct LibraryStatus {
  std::filesystem::path library;
  bool rejected = false;   // its manifest could not be read, or was refused
  std::string reason;      // when rejected
  std::string probe;       // "probed", "cached" or "in-process"
  double probe_seconds = 0;
};

struct LoadFailure {
  std::filesystem::path library;
  std::string entry;   // "kind/name" when one entry was rejected; empty for the whole library
  std::string reason;
};

template <class I>
using PluginPtr = std::unique_ptr<I, std::function<void(I*)>>;

// Interface id and version the host expects for a kind; nullptr for an unknown kind.
struct InterfaceSpec {
  const char* kind;
  const char* id;
  uint32_t version;
};
const InterfaceSpec* interface_for_kind(std::string_view kind);

// Directories in search order: --plugin-dir, $WARMUP_PLUGIN_PATH, [plugins] paths, default.
std::vector<std::filesystem::path> plugin_search_path(
    const std::vector<std::filesystem::path>& cli_dirs,
    const std::vector<std::filesystem::path>& experiment_dirs);
std::filesystem::path default_plugin_dir();  // <exe dir>/../lib/warmup/plugins

// Compares a plugin's fingerprint with the host's; empty when compatible, else the reason.
std::string fingerprint_mismatch(const std::string& plugin, const std::string& host);
std::string host_fingerprint();

class PluginRegistry {
 public:
  // Scans each directory (non-recursive, *.so, sorted by name); earlier directories win.
  void scan(const std::vector<std::filesystem::path>& dirs);
  // Checks and registers one library; failures are recorded, never thrown.
  void load_library(const std::filesystem::path& path);

  const PluginEntryInfo* find(std::string_view kind, std::string_view name) const;
  std::vector<std::string> names(std::string_view kind) const;
  const std::vector<PluginEntryInfo>& entries() const { return entries_; }
  const std::vector<LoadFailure>& failures() const { return failures_; }
  const std::vector<LibraryStatus>& libraries() const { return libraries_; }
  const std::vector<std::filesystem::path>& searched() const { return searched_; }

  // Creates an object; throws PluginError (unknown plugin, create failed) with `where` as place.
  template <class I>
  PluginPtr<I> create(const std::string& name, const PluginInit& init, const std::string& where) const {
    const PluginEntryInfo& e = require(I::kKind, name, where);
    void* obj = create_raw(e, init, where);
    warmup_destroy_fn destroy = e.destroy;
    if constexpr (std::is_same_v<I, Reward>)  // minor < 4: results of the old layout (see reward.h)
      if (e.abi_minor < 4) return PluginPtr<I>(new LegacyRewardAdapter(obj, destroy), [](I* p) { delete p; });
    return PluginPtr<I>(static_cast<I*>(obj), [destroy](I* p) { destroy(static_cast<void*>(p)); });
  }
  const PluginEntryInfo& require(std::string_view kind, const std::string& name,
                                 const std::string& where) const;

 private:
  void* create_raw(const PluginEntryInfo& e, const PluginInit& init, const std::string& where) const;
  void load_into_host(const PluginEntryInfo& e, const std::string& where) const;
  // Registers a library from its manifest data; `lib` is the library when already loaded.
  void add(const std::filesystem::path& path, ProbeResult r, boost::dll::shared_library* lib);
  std::vector<PluginEntryInfo> entries_;
  std::vector<LoadFailure> failures_;
  std::vector<LibraryStatus> libraries_;
  std::vector<std::filesystem::path> searched_;
};

}  // namespace warmup
