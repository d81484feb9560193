// Reading a plugin library's manifest without trusting the library.
//
// Loading a shared library runs its static initialisers, which may abort, segfault, call exit or
// never return; its manifest may claim any number of entries. So the host first loads each library
// it has not seen before in a child process (the warmup executable itself, hidden subcommand
// `__probe-plugin`, started with posix_spawn), with a timeout, and reads the manifest back as plain
// data. A library whose probe dies, hangs, exits without a manifest or reports an absurd manifest is
// rejected and never loaded into the host. Results are cached by path, mtime, size and SHA-256 in a
// JSON file ($WARMUP_PLUGIN_PROBE_CACHE, else $XDG_CACHE_HOME/warmup/plugin-probe.json, else
// ~/.cache/warmup/plugin-probe.json). $WARMUP_PLUGIN_PROBE_TIMEOUT sets the timeout (seconds,
// default 10).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <boost/dll/shared_library.hpp>

namespace warmup {

// Sanity bounds on what a manifest may contain.
inline constexpr size_t kMaxManifestEntries = 4096;
inline constexpr size_t kMaxNameBytes = 128;          // kind, name, interface id, version
inline constexpr size_t kMaxDescriptionBytes = 1024;
inline constexpr size_t kMaxFingerprintBytes = 4096;

struct ProbedEntry {
  std::string kind, name, interface_id, plugin_version, description;
  uint32_t interface_version = 0;
  bool has_functions = false;  // create and destroy are both non-null
};

// A manifest as plain data, or why the library has none.
struct ProbeResult {
  bool ok = false;
  std::string reason;  // when !ok: "killed by signal 11 (SIGSEGV) while loading", ...
  uint32_t abi_major = 0, abi_minor = 0;
  std::string fingerprint;
  std::vector<ProbedEntry> entries;
  // How this result was obtained: "probed" (child process), "cached" or "in-process".
  std::string source;
  double seconds = 0;  // wall time of the probe (0 when cached)
};

// Loads the library into this process and copies its manifest, enforcing the bounds above. Used by
// the probe child, and by hosts without a probe executable (the unit tests). When `keep` is given
// and the manifest was read, the loaded library is moved there.
ProbeResult inspect_library(const std::filesystem::path& path, boost::dll::shared_library* keep = nullptr);

// Host side: the manifests of `libs`, in order, from the cache or from child probes run in
// parallel. Requires enable_plugin_probe().
std::vector<ProbeResult> probe_libraries(const std::vector<std::filesystem::path>& libs);

// Turns probing on for this process: `exe` is an executable that handles
// `EXE __probe-plugin LIBRARY OUTFILE PARENT_PID` by calling plugin_probe_main.
void enable_plugin_probe(const std::filesystem::path& exe);
bool plugin_probe_enabled();
// The hidden subcommand; `args` are the arguments after `__probe-plugin`. Never returns normally:
// writes the result to OUTFILE and _exits, skipping the library's static destructors.
[[noreturn]] void plugin_probe_main(const std::vector<std::string>& args);

// Settings, from the environment (throws UsageError for a malformed timeout).
double plugin_probe_timeout();
std::optional<std::filesystem::path> plugin_probe_cache_file();

// "SIGSEGV" for 11; "signal 42" when unnamed.
std::string signal_name(int sig);

}  // namespace warmup
