// See registry.h. Libraries are opened with Boost.DLL; accepted ones are parked in a list that is
// never destroyed, so no plugin code is unmapped while its objects may live.
#include "plugins/registry.h"

#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>

#include <algorithm>
#include <cstdlib>
#include <map>
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

std::string safe(const char* s) { return s ? s : ""; }

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
  for (const auto& dir : dirs) {
    searched_.push_back(dir);
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    std::vector<fs::path> libs;
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.path().extension() == ".so") libs.push_back(e.path());
    std::sort(libs.begin(), libs.end());
    for (const auto& lib : libs) load_library(lib);
  }
}

void PluginRegistry::load_library(const fs::path& path) {
  auto fail = [&](std::string entry, std::string reason) {
    failures_.push_back({path, std::move(entry), std::move(reason)});
  };
  boost::dll::shared_library lib;
  try {
    lib.load(path, boost::dll::load_mode::rtld_lazy | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    const char* err = nullptr;
    std::string msg = e.what();
    (void)err;
    return fail("", "cannot load: " + msg);
  }
  if (!lib.has(WARMUP_ENTRY_SYMBOL)) {
    for (int major = 0; major < 100; ++major) {
      std::string other = "warmup_plugin_manifest_v" + std::to_string(major);
      if (major != WARMUP_ABI_MAJOR && lib.has(other))
        return fail("", "built for plugin ABI " + std::to_string(major) + " (exports " + other +
                            "), host has ABI " + std::to_string(WARMUP_ABI_MAJOR));
    }
    return fail("", std::string("missing symbol ") + WARMUP_ENTRY_SYMBOL + ": not a warmup plugin");
  }
  const warmup_plugin_manifest* m = nullptr;
  try {
    m = lib.get<const warmup_plugin_manifest*()>(WARMUP_ENTRY_SYMBOL)();
  } catch (const std::exception& e) {
    return fail("", std::string("manifest function threw: ") + e.what());
  }
  if (!m) return fail("", "manifest function returned null");
  if (m->abi_major != WARMUP_ABI_MAJOR)
    return fail("", "manifest says plugin ABI " + std::to_string(m->abi_major) + ", host has ABI " +
                        std::to_string(WARMUP_ABI_MAJOR));
  if (m->abi_minor > WARMUP_ABI_MINOR)
    return fail("", "needs plugin ABI " + std::to_string(m->abi_major) + "." +
                        std::to_string(m->abi_minor) + ", host provides " +
                        std::to_string(WARMUP_ABI_MAJOR) + "." + std::to_string(WARMUP_ABI_MINOR));
  std::string fp = safe(m->fingerprint);
  if (std::string why = fingerprint_mismatch(fp, host_fingerprint()); !why.empty())
    return fail("", "build fingerprint mismatch: " + why);

  size_t accepted = 0;
  for (size_t i = 0; i < m->entry_count; ++i) {
    const warmup_plugin_entry& e = m->entries[i];
    std::string kind = safe(e.kind), name = safe(e.name), label = kind + "/" + name;
    const InterfaceSpec* spec = interface_for_kind(kind);
    if (!spec) {
      fail(label, "unknown plugin kind '" + kind + "'");
      continue;
    }
    if (name.empty() || !e.create || !e.destroy) {
      fail(label, "entry has no name or no create/destroy function");
      continue;
    }
    if (safe(e.interface_id) != spec->id || e.interface_version != spec->version) {
      fail(label, "implements " + safe(e.interface_id) + "@" + std::to_string(e.interface_version) +
                      ", host requires " + spec->id + "@" + std::to_string(spec->version));
      continue;
    }
    if (const PluginEntryInfo* dup = find(kind, name)) {
      fail(label, "duplicate " + kind + " '" + name + "': already provided by " + dup->library.string());
      continue;
    }
    entries_.push_back({kind, name, safe(e.interface_id), safe(e.plugin_version),
                        safe(e.description), e.interface_version, path, fp, e.create, e.destroy});
    ++accepted;
  }
  if (accepted > 0) resident_libraries().push_back(std::move(lib));
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
  size_t related = 0;
  for (const auto& f : failures_)
    if (f.entry.empty() || f.entry == std::string(kind) + "/" + name) ++related;
  if (related) msg += " (" + std::to_string(related) + " librar" + (related == 1 ? "y" : "ies") +
                      " failed to load; see `warmup plugins`)";
  throw PluginError(msg);
}

void* PluginRegistry::create_raw(const PluginEntryInfo& e, const PluginInit& init,
                                 const std::string& where) const {
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
