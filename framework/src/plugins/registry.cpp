// See registry.h. Libraries are opened with Boost.DLL; accepted ones are parked in a list that is
// never destroyed, so no plugin code is unmapped while its objects may live.
#include "plugins/registry.h"

#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>

#include "util/errors.h"
#include "warmup/algorithm.h"
#include "warmup/fingerprint.h"
#include "warmup/options.h"
#include "warmup/reward.h"
#include "warmup/task.h"
#include "warmup/teacher.h"

namespace warmup {
namespace fs = std::filesystem;
namespace {

std::vector<boost::dll::shared_library>& resident_libraries() {
  static auto* libs = new std::vector<boost::dll::shared_library>();  // never freed, never unloaded
  return *libs;
}

const InterfaceSpec kInterfaces[] = {
    {Task::kKind, Task::kInterfaceId, Task::kInterfaceVersion},
    {Reward::kKind, Reward::kInterfaceId, Reward::kInterfaceVersion},
    {Algorithm::kKind, Algorithm::kInterfaceId, Algorithm::kInterfaceVersion},
    {Teacher::kKind, Teacher::kInterfaceId, Teacher::kInterfaceVersion},
};

std::map<std::string, std::string> parse_fingerprint(const std::string& fp) {
  std::map<std::string, std::string> out;
  std::istringstream in(fp);
  std::string field;
  while (std::getline(in, field, ';')) {
    size_t eq = field.find('=');
    if (eq != std::string::npos) out[field.substr(0, eq)] = field.substr(eq + 1);
  }
  return out;
}

}  // namespace

const InterfaceSpec* interface_for_kind(std::string_view kind) {
  for (const auto& i : kInterfaces)
    if (kind == i.kind) return &i;
  return nullptr;
}

std::string host_fingerprint() { return WARMUP_FINGERPRINT; }

std::string fingerprint_mismatch(const std::string& plugin, const std::string& host) {
  auto p = parse_fingerprint(plugin), h = parse_fingerprint(host);
  std::string why;
  auto differ = [&](const std::string& key) {
    why += (why.empty() ? "" : ", ") + key + " is '" + (p.count(key) ? p[key] : "?") +
           "' in the plugin but '" + h[key] + "' in the host";
  };
  for (const char* key : kFingerprintStrict)
    if (p[key] != h[key]) differ(key);
  if (p.count("torch") && p["torch"] != "none" && p["torch"] != h["torch"]) differ("torch");
  return why;
}

fs::path default_plugin_dir() {
  std::error_code ec;
  fs::path exe = boost::dll::program_location(ec);
  return (exe.parent_path() / ".." / "lib" / "warmup" / "plugins").lexically_normal();
}

std::vector<fs::path> plugin_search_path(const std::vector<fs::path>& cli_dirs,
                                         const std::vector<fs::path>& experiment_dirs) {
  std::vector<fs::path> dirs(cli_dirs.begin(), cli_dirs.end());
  if (const char* env = std::getenv("WARMUP_PLUGIN_PATH")) {
    std::istringstream in(env);
    std::string d;
    while (std::getline(in, d, ':'))
      if (!d.empty()) dirs.emplace_back(d);
  }
  dirs.insert(dirs.end(), experiment_dirs.begin(), experiment_dirs.end());
  dirs.push_back(default_plugin_dir());
  return dirs;
}

void PluginRegistry::scan(const std::vector<fs::path>& dirs) {
  std::vector<fs::path> all;
  for (const auto& dir : dirs) {
    searched_.push_back(dir);
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    std::vector<fs::path> libs;
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.path().extension() == ".so") libs.push_back(e.path());
    std::sort(libs.begin(), libs.end());
    all.insert(all.end(), libs.begin(), libs.end());
  }
  if (!plugin_probe_enabled()) {
    for (const auto& lib : all) load_library(lib);
    return;
  }
  std::vector<ProbeResult> probed = probe_libraries(all);  // in parallel; registered in order
  for (size_t i = 0; i < all.size(); ++i) add(all[i], std::move(probed[i]), nullptr);
}

void PluginRegistry::load_library(const fs::path& path) {
  if (plugin_probe_enabled()) {
    add(path, std::move(probe_libraries({path}).at(0)), nullptr);
    return;
  }
  boost::dll::shared_library lib;
  ProbeResult r = inspect_library(path, &lib);
  add(path, std::move(r), &lib);
}

void PluginRegistry::add(const fs::path& path, ProbeResult r, boost::dll::shared_library* lib) {
  LibraryStatus& status = libraries_.emplace_back();
  status.library = path;
  status.probe = r.source;
  status.probe_seconds = r.seconds;
  auto reject = [&](std::string reason) {
    status.rejected = true;
    status.reason = reason;
    failures_.push_back({path, "", std::move(reason)});
  };
  auto fail = [&](std::string entry, std::string reason) {
    failures_.push_back({path, std::move(entry), std::move(reason)});
  };
  if (!r.ok) return reject(r.reason);
  if (r.abi_major != WARMUP_ABI_MAJOR)
    return reject("manifest says plugin ABI " + std::to_string(r.abi_major) + ", host has ABI " +
                  std::to_string(WARMUP_ABI_MAJOR));
  if (r.abi_minor > WARMUP_ABI_MINOR)
    return reject("needs plugin ABI " + std::to_string(r.abi_major) + "." + std::to_string(r.abi_minor) +
                  ", host provides " + std::to_string(WARMUP_ABI_MAJOR) + "." + std::to_string(WARMUP_ABI_MINOR));
  if (std::string why = fingerprint_mismatch(r.fingerprint, host_fingerprint()); !why.empty())
    return reject("build fingerprint mismatch: " + why);

  const warmup_plugin_manifest* m = nullptr;
  if (lib) m = lib->get<const warmup_plugin_manifest*()>(WARMUP_ENTRY_SYMBOL)();
  size_t accepted = 0;
  for (size_t i = 0; i < r.entries.size(); ++i) {
    const ProbedEntry& e = r.entries[i];
    std::string label = e.kind + "/" + e.name;
    const InterfaceSpec* spec = interface_for_kind(e.kind);
    if (!spec) {
      fail(label, "unknown plugin kind '" + e.kind + "'");
      continue;
    }
    if (e.name.empty() || !e.has_functions) {
      fail(label, "entry has no name or no create/destroy function");
      continue;
    }
    if (e.interface_id != spec->id || e.interface_version != spec->version) {
      fail(label, "implements " + e.interface_id + "@" + std::to_string(e.interface_version) +
                      ", host requires " + spec->id + "@" + std::to_string(spec->version));
      continue;
    }
    if (const PluginEntryInfo* dup = find(e.kind, e.name)) {
      fail(label, "duplicate " + e.kind + " '" + e.name + "': already provided by " + dup->library.string());
      continue;
    }
    PluginEntryInfo info{e.kind, e.name, e.interface_id, e.plugin_version, e.description,
                         e.interface_version, path, r.fingerprint, i, r.entries.size()};
    info.abi_minor = r.abi_minor;
    if (m) {
      info.create = m->entries[i].create;
      info.destroy = m->entries[i].destroy;
    }
    entries_.push_back(std::move(info));
    ++accepted;
  }
  if (lib && accepted > 0) resident_libraries().push_back(std::move(*lib));
}

// Loads a probed library into the host on first use and takes the entry's functions from it,
// after checking that the manifest still is the one the probe read.
void PluginRegistry::load_into_host(const PluginEntryInfo& e, const std::string& where) const {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  if (e.create && e.destroy) return;
  auto fail = [&](const std::string& why) {
    throw PluginError(where + ": " + e.kind + " '" + e.name + "' (" + e.library.string() +
                      "): cannot load into the host: " + why);
  };
  boost::dll::shared_library lib;
  try {
    lib.load(e.library, boost::dll::load_mode::rtld_lazy | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& ex) {
    fail(ex.what());
  }
  if (!lib.has(WARMUP_ENTRY_SYMBOL)) fail(std::string("missing symbol ") + WARMUP_ENTRY_SYMBOL);
  const warmup_plugin_manifest* m = lib.get<const warmup_plugin_manifest*()>(WARMUP_ENTRY_SYMBOL)();
  if (!m || m->abi_major != WARMUP_ABI_MAJOR || m->entry_count != e.entry_count || !m->entries)
    fail("the library changed since it was probed");
  const warmup_plugin_entry& x = m->entries[e.index];
  if (!x.kind || !x.name || e.kind != std::string_view(x.kind, strnlen(x.kind, kMaxNameBytes + 1)) ||
      e.name != std::string_view(x.name, strnlen(x.name, kMaxNameBytes + 1)) || !x.create || !x.destroy)
    fail("the library changed since it was probed");
  // Every entry of the same library shares the loaded copy.
  for (const auto& other : entries_)
    if (other.library == e.library && !other.create && other.index < m->entry_count) {
      other.create = m->entries[other.index].create;
      other.destroy = m->entries[other.index].destroy;
    }
  e.create = x.create;
  e.destroy = x.destroy;
  resident_libraries().push_back(std::move(lib));
}

const PluginEntryInfo* PluginRegistry::find(std::string_view kind, std::string_view name) const {
  for (const auto& e : entries_)
    if (e.kind == kind && e.name == name) return &e;
  return nullptr;
}

std::vector<std::string> PluginRegistry::names(std::string_view kind) const {
  std::vector<std::string> out;
  for (const auto& e : entries_)
    if (e.kind == kind) out.push_back(e.name);
  return out;
}

const PluginEntryInfo& PluginRegistry::require(std::string_view kind, const std::string& name,
                                               const std::string& where) const {
  if (const PluginEntryInfo* e = find(kind, name)) return *e;
  std::set<std::string> known;
  for (const auto& n : names(kind)) known.insert(n);
  std::string msg = where + ": unknown " + std::string(kind) + " plugin '" + name + "'" +
                    detail::suggest(name, known);
  std::string avail;
  for (const auto& n : known) avail += (avail.empty() ? "" : ", ") + n;
  msg += "; available: " + (avail.empty() ? std::string("none") : avail);
  // A rejected library might have provided it: name them, with their reasons.
  std::vector<const LoadFailure*> related;
  for (const auto& f : failures_)
    if (f.entry.empty() || f.entry == std::string(kind) + "/" + name) related.push_back(&f);
  std::stable_partition(related.begin(), related.end(), [&](const LoadFailure* f) {  // likeliest first
    return f->library.filename().string().find(name) != std::string::npos;
  });
  if (!related.empty()) {
    msg += "; " + std::to_string(related.size()) + " librar" + (related.size() == 1 ? "y was" : "ies were") +
           " rejected:";
    for (size_t i = 0; i < related.size() && i < 5; ++i)
      msg += std::string(i ? ";" : "") + " " + related[i]->library.string() +
             (related[i]->entry.empty() ? "" : " [" + related[i]->entry + "]") + ": " + related[i]->reason;
    if (related.size() > 5) msg += "; and " + std::to_string(related.size() - 5) + " more";
    msg += " (see `warmup plugins`)";
  }
  throw PluginError(msg);
}

void* PluginRegistry::create_raw(const PluginEntryInfo& e, const PluginInit& init,
                                 const std::string& where) const {
  if (!e.create || !e.destroy) load_into_host(e, where);
  char err[4096] = {0};
  void* obj = nullptr;
  try {
    obj = e.create(&init, err, sizeof(err));
  } catch (const std::exception& ex) {
    std::snprintf(err, sizeof(err), "%s", ex.what());
  } catch (...) {
    std::snprintf(err, sizeof(err), "unknown exception");
  }
  if (obj) return obj;
  std::string reason = err[0] ? err : "create returned null";
  // Config errors from the SDK already start with the file position.
  std::string file = where.substr(0, where.find(':'));
  if (!file.empty() && reason.rfind(file + ":", 0) == 0)
    throw PluginError(reason);
  throw PluginError(where + ": " + e.kind + " '" + e.name + "' (" + e.library.filename().string() +
                    ") failed in create: " + reason);
}

}  // namespace warmup
