// See probe.h. The child writes its result as JSON to a file named by the host and _exits; the host
// polls its children (several at once), kills a child's process group at the timeout, and turns
// a death, an exit without a result, or an unreadable result into a rejection reason.
#include "plugins/probe.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "plugins/registry.h"
#include "util/errors.h"
#include "util/log.h"
#include "util/sha256.h"
#include "warmup/abi.h"

extern char** environ;

namespace warmup {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::optional<fs::path>& probe_exe() {
  static std::optional<fs::path> exe;
  return exe;
}

// A string from the manifest, read at most `max` + 1 bytes far.
bool bounded(const char* s, size_t max, const std::string& what, std::string& out, std::string& why) {
  out.clear();
  if (!s) return true;
  size_t n = strnlen(s, max + 1);
  if (n > max) {
    why = "manifest " + what + " is longer than " + std::to_string(max) + " bytes";
    return false;
  }
  out.assign(s, n);
  return true;
}

// For messages: printable ASCII only, at most 64 characters.
std::string shown(const std::string& s) {
  std::string out;
  for (char c : s.substr(0, 64)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return s.size() > 64 ? out + "..." : out;
}

bool name_like(const std::string& s, bool allow_plus = false) {
  return std::all_of(s.begin(), s.end(), [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-' || (allow_plus && c == '+');
  });
}

json to_json(const ProbeResult& r) {
  if (!r.ok) return {{"ok", false}, {"reason", r.reason}};
  json entries = json::array();
  for (const auto& e : r.entries)
    entries.push_back({{"kind", e.kind}, {"name", e.name}, {"interface_id", e.interface_id},
                       {"interface_version", e.interface_version}, {"plugin_version", e.plugin_version},
                       {"description", e.description}, {"has_functions", e.has_functions}});
  return {{"ok", true}, {"abi_major", r.abi_major}, {"abi_minor", r.abi_minor},
          {"fingerprint", r.fingerprint}, {"entries", entries}};
}

// Throws on anything malformed (json's own exceptions, or std::runtime_error).
ProbeResult from_json(const json& j) {
  ProbeResult r;
  r.ok = j.at("ok").get<bool>();
  if (!r.ok) {
    r.reason = j.at("reason").get<std::string>();
    return r;
  }
  r.abi_major = j.at("abi_major").get<uint32_t>();
  r.abi_minor = j.at("abi_minor").get<uint32_t>();
  r.fingerprint = j.at("fingerprint").get<std::string>();
  const json& entries = j.at("entries");
  if (!entries.is_array() || entries.size() > kMaxManifestEntries) throw std::runtime_error("bad entries");
  for (const auto& e : entries)
    r.entries.push_back({e.at("kind").get<std::string>(), e.at("name").get<std::string>(),
                         e.at("interface_id").get<std::string>(), e.at("plugin_version").get<std::string>(),
                         e.at("description").get<std::string>(), e.at("interface_version").get<uint32_t>(),
                         e.at("has_functions").get<bool>()});
  return r;
}

std::string dump(const json& j, int indent = -1) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The last non-empty line of a child's stderr, printable, at most 200 characters.
std::string stderr_tail(const fs::path& p) {
  std::string text = read_file(p);
  if (text.size() > 8192) text = text.substr(text.size() - 8192);
  std::istringstream in(text);
  std::string line, last;
  while (std::getline(in, line))
    if (line.find_first_not_of(" \t\r") != std::string::npos) last = line;
  std::string out;
  for (char c : last) out += (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) ? c : ' ';
  if (out.size() > 200) out = out.substr(0, 200) + "...";
  return out;
}

std::string format_seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", s);
  return buf;
}

// --- the cache ---------------------------------------------------------------------------------

struct FileKey {
  std::string path;  // absolute, normalised
  int64_t mtime_ns = 0, size = 0;
  uint64_t dev = 0, ino = 0;
  int64_t ctime_ns = 0;
  std::string sha256;
  std::string error;  // when the file cannot be read
};

// Stats `lib`; the SHA-256 is taken from `known` (a cache record) when the file's identity and
// change time (which no write or utime leaves alone) match the record's, else computed: so a warm
// start stats each library instead of reading it.
FileKey file_key(const fs::path& lib, const nlohmann::json& libraries) {
  FileKey k;
  std::error_code ec;
  fs::path abs = fs::absolute(lib, ec);
  k.path = (ec ? lib : abs).lexically_normal().string();
  struct stat st{};
  if (::stat(lib.c_str(), &st) != 0) {
    k.error = std::string("cannot stat: ") + std::strerror(errno);
    return k;
  }
  k.mtime_ns = int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  k.ctime_ns = int64_t(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
  k.size = st.st_size;
  k.dev = st.st_dev;
  k.ino = st.st_ino;
  try {
    auto it = libraries.find(k.path);
    if (it != libraries.end() && it->value("ctime_ns", int64_t(-1)) == k.ctime_ns &&
        it->value("ino", uint64_t(0)) == k.ino && it->value("dev", uint64_t(0)) == k.dev &&
        it->value("mtime_ns", int64_t(-1)) == k.mtime_ns && it->value("size", int64_t(-1)) == k.size) {
      k.sha256 = it->value("sha256", std::string());
      if (k.sha256.size() == 64) return k;
    }
  } catch (const std::exception&) {  // a malformed record: hash the file
  }
  try {
    k.sha256 = sha256_path(lib);
  } catch (const std::exception& e) {
    k.error = std::string("cannot read: ") + e.what();
  }
  return k;
}

std::string host_identity() {
  return host_fingerprint() + ";abi=" + std::to_string(WARMUP_ABI_MAJOR) + "." + std::to_string(WARMUP_ABI_MINOR);
}

json load_cache(const std::optional<fs::path>& file) {
  json empty = {{"version", 1}, {"libraries", json::object()}};
  if (!file) return empty;
  std::error_code ec;
  if (!fs::exists(*file, ec)) return empty;
  try {
    json j = json::parse(read_file(*file));
    if (j.is_object() && j.value("version", 0) == 1 && j.contains("libraries") && j["libraries"].is_object())
      return j;
  } catch (const std::exception&) {
  }
  log_line(LogLevel::kWarn, "", "plugin probe cache " + file->string() + " is unreadable; starting a new one");
  return empty;
}

// The cached result for `k`, if the record matches it exactly and still holds for `timeout`.
std::optional<ProbeResult> cached(const json& cache, const FileKey& k, double timeout) {
  auto it = cache["libraries"].find(k.path);
  if (it == cache["libraries"].end()) return std::nullopt;
  try {
    const json& rec = *it;
    if (rec.at("mtime_ns").get<int64_t>() != k.mtime_ns || rec.at("size").get<int64_t>() != k.size ||
        rec.at("sha256").get<std::string>() != k.sha256 || rec.at("host").get<std::string>() != host_identity())
      return std::nullopt;
    // A timeout is only final for timeouts no longer than the one that expired.
    if (rec.contains("timed_out_after") && timeout > rec["timed_out_after"].get<double>()) return std::nullopt;
    ProbeResult r = from_json(rec.at("result"));
    r.source = "cached";
    return r;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

void save_cache(const fs::path& file, const json& updates) {
  try {
    std::error_code ec;
    fs::create_directories(file.parent_path(), ec);
    json cache = load_cache(file);  // again: another process may have added records meanwhile
    json& libs = cache["libraries"];
    for (auto it = updates.begin(); it != updates.end(); ++it) libs[it.key()] = it.value();
    for (auto it = libs.begin(); it != libs.end();) {  // forget libraries that are gone
      if (!fs::exists(it.key(), ec)) it = libs.erase(it);
      else ++it;
    }
    fs::path tmp = file;
    tmp += ".tmp." + std::to_string(::getpid());
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out << dump(cache, 1) << "\n";
      if (!out.flush()) throw std::runtime_error("cannot write " + tmp.string());
    }
    fs::rename(tmp, file);
  } catch (const std::exception& e) {
    log_line(LogLevel::kDebug, "", std::string("plugin probe cache not written: ") + e.what());
  }
}

// --- child processes ---------------------------------------------------------------------------

struct Child {
  size_t index;
  pid_t pid = -1;
  fs::path out, err;
  std::chrono::steady_clock::time_point start;
};

ProbeResult failure(std::string reason) {
  ProbeResult r;
  r.reason = std::move(reason);
  return r;
}

std::string with_stderr(std::string reason, const fs::path& err) {
  std::string tail = stderr_tail(err);
  return tail.empty() ? reason : reason + "; stderr: " + tail;
}

// Starts the probe of `lib`; sets c.pid, or returns why it could not start.
std::string spawn_probe(const fs::path& exe, const fs::path& lib, Child& c) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, c.err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);  // own group: a timeout kills whatever the library started
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  std::vector<std::string> args = {exe.string(), "__probe-plugin", lib.string(), c.out.string(),
                                   std::to_string(::getpid())};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int rc = posix_spawn(&c.pid, exe.c_str(), &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return "cannot start the probe " + exe.string() + ": " + std::strerror(rc);
  return "";
}

ProbeResult finish_probe(const Child& c, int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    return failure(with_stderr("killed by signal " + std::to_string(sig) + " (" + signal_name(sig) +
                               ") while loading", c.err));
  }
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::error_code ec;
  bool reported = fs::exists(c.out, ec) && fs::file_size(c.out, ec) > 0;
  if (code != 0 || !reported)
    return failure(with_stderr("exited with status " + std::to_string(code) + " while loading" +
                               (reported ? "" : ", without reporting a manifest"), c.err));
  try {
    return from_json(json::parse(read_file(c.out)));
  } catch (const std::exception& e) {
    return failure(std::string("probe result unreadable: ") + e.what());
  }
}

}  // namespace

std::string signal_name(int sig) {
  if (const char* abbrev = sigabbrev_np(sig)) return std::string("SIG") + abbrev;
  return "signal " + std::to_string(sig);
}

void enable_plugin_probe(const fs::path& exe) { probe_exe() = exe; }
bool plugin_probe_enabled() { return probe_exe().has_value(); }

double plugin_probe_timeout() {
  const char* env = std::getenv("WARMUP_PLUGIN_PROBE_TIMEOUT");
  if (!env || !*env) return 10.0;
  char* end = nullptr;
  double v = std::strtod(env, &end);
  if (*end != '\0' || !std::isfinite(v) || v <= 0 || v > 3600)
    throw UsageError(std::string("WARMUP_PLUGIN_PROBE_TIMEOUT='") + env +
                     "': expected a number of seconds, more than 0 and at most 3600");
  return v;
}

std::optional<fs::path> plugin_probe_cache_file() {
  if (const char* f = std::getenv("WARMUP_PLUGIN_PROBE_CACHE"); f && *f) return fs::path(f);
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return fs::path(x) / "warmup" / "plugin-probe.json";
  if (const char* h = std::getenv("HOME"); h && *h) return fs::path(h) / ".cache" / "warmup" / "plugin-probe.json";
  return std::nullopt;
}

ProbeResult inspect_library(const fs::path& path, boost::dll::shared_library* keep) {
  ProbeResult r;
  r.source = "in-process";
  auto fail = [&](std::string reason) {
    r.ok = false;
    r.reason = std::move(reason);
    r.entries.clear();
    return r;
  };
  boost::dll::shared_library lib;
  try {
    lib.load(path, boost::dll::load_mode::rtld_lazy | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    return fail(std::string("cannot load: ") + e.what());
  }
  if (!lib.has(WARMUP_ENTRY_SYMBOL)) {
    for (int major = 0; major < 100; ++major) {
      std::string other = "warmup_plugin_manifest_v" + std::to_string(major);
      if (major != WARMUP_ABI_MAJOR && lib.has(other))
        return fail("built for plugin ABI " + std::to_string(major) + " (exports " + other +
                    "), host has ABI " + std::to_string(WARMUP_ABI_MAJOR));
    }
    return fail(std::string("missing symbol ") + WARMUP_ENTRY_SYMBOL + ": not a warmup plugin");
  }
  const warmup_plugin_manifest* m = nullptr;
  try {
    m = lib.get<const warmup_plugin_manifest*()>(WARMUP_ENTRY_SYMBOL)();
  } catch (const std::exception& e) {
    return fail(std::string("manifest function threw: ") + e.what());
  }
  if (!m) return fail("manifest function returned null");
  r.abi_major = m->abi_major;
  r.abi_minor = m->abi_minor;
  // Another major may lay the manifest out differently: read no further.
  if (m->abi_major != WARMUP_ABI_MAJOR)
    return fail("manifest says plugin ABI " + std::to_string(m->abi_major) + ", host has ABI " +
                std::to_string(WARMUP_ABI_MAJOR));
  std::string why;
  if (!bounded(m->fingerprint, kMaxFingerprintBytes, "fingerprint", r.fingerprint, why)) return fail(why);
  if (m->entry_count > kMaxManifestEntries)
    return fail("manifest claims " + std::to_string(m->entry_count) + " entries (max " +
                std::to_string(kMaxManifestEntries) + ")");
  if (m->entry_count > 0 && !m->entries)
    return fail("manifest claims " + std::to_string(m->entry_count) + " entries but has no entry table");
  for (size_t i = 0; i < m->entry_count; ++i) {
    const warmup_plugin_entry& e = m->entries[i];
    ProbedEntry p;
    std::string at = "entry " + std::to_string(i) + " ";
    if (!bounded(e.kind, kMaxNameBytes, at + "kind", p.kind, why) ||
        !bounded(e.name, kMaxNameBytes, at + "name", p.name, why) ||
        !bounded(e.interface_id, kMaxNameBytes, at + "interface id", p.interface_id, why) ||
        !bounded(e.plugin_version, kMaxNameBytes, at + "version", p.plugin_version, why) ||
        !bounded(e.description, kMaxDescriptionBytes, at + "description", p.description, why))
      return fail(why);
    if (!name_like(p.kind) || !name_like(p.name) || !name_like(p.interface_id))
      return fail("manifest " + at + "has kind '" + shown(p.kind) + "', name '" + shown(p.name) +
                  "', interface '" + shown(p.interface_id) + "' (each must match [A-Za-z0-9_.-]+)");
    if (!name_like(p.plugin_version, true))
      return fail("manifest " + at + "has version '" + shown(p.plugin_version) + "' (must match [A-Za-z0-9_.+-]+)");
    if (std::any_of(p.description.begin(), p.description.end(),
                    [](char c) { return (static_cast<unsigned char>(c) < 0x20) || c == 0x7f; }))
      return fail("manifest " + at + "description contains control characters");
    p.interface_version = e.interface_version;
    p.has_functions = e.create && e.destroy;
    r.entries.push_back(std::move(p));
  }
  r.ok = true;
  if (keep) *keep = std::move(lib);
  return r;
}

void plugin_probe_main(const std::vector<std::string>& args) {
  if (args.size() != 3) {
    std::fprintf(stderr, "usage: warmup __probe-plugin LIBRARY OUTFILE PARENT_PID (internal)\n");
    _exit(2);
  }
  // Die with the host: a hung probe must not outlive it.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (std::to_string(::getppid()) != args[2]) _exit(3);
  ProbeResult r = inspect_library(args[0]);
  std::string text = dump(to_json(r));
  int fd = ::open(args[1].c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) _exit(4);
  const char* p = text.data();
  size_t left = text.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(5);
    p += n;
    left -= size_t(n);
  }
  ::close(fd);
  _exit(0);  // not exit(): the library's static destructors are no part of the probe
}

std::vector<ProbeResult> probe_libraries(const std::vector<fs::path>& libs) {
  std::vector<ProbeResult> out(libs.size());
  if (libs.empty()) return out;
  if (!probe_exe()) throw std::logic_error("probe_libraries: probing is not enabled");
  const fs::path exe = *probe_exe();
  const double timeout = plugin_probe_timeout();
  const auto cache_file = plugin_probe_cache_file();
  json cache = load_cache(cache_file);

  std::vector<FileKey> keys(libs.size());
  std::vector<size_t> todo;
  for (size_t i = 0; i < libs.size(); ++i) {
    keys[i] = file_key(libs[i], cache["libraries"]);
    if (!keys[i].error.empty()) {
      out[i] = failure(keys[i].error);
      out[i].source = "probed";
      continue;
    }
    if (auto hit = cached(cache, keys[i], timeout)) {
      out[i] = *hit;
      log_line(LogLevel::kDebug, "", "plugin probe: " + libs[i].string() + ": cached (" +
                                         (hit->ok ? "manifest" : hit->reason) + ")");
    } else {
      todo.push_back(i);
    }
  }
  if (todo.empty()) return out;

  char tmpl[] = "/tmp/warmup-probe-XXXXXX";
  std::string tmpdir;
  if (const char* t = std::getenv("TMPDIR"); t && *t) {
    std::string s = std::string(t) + "/warmup-probe-XXXXXX";
    std::vector<char> buf(s.begin(), s.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data())) tmpdir = buf.data();
  }
  if (tmpdir.empty()) {
    if (!::mkdtemp(tmpl)) throw std::runtime_error(std::string("cannot create a probe directory: ") + std::strerror(errno));
    tmpdir = tmpl;
  }

  using Clock = std::chrono::steady_clock;
  const size_t jobs = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 8);
  json updates = json::object();
  std::vector<Child> running;
  size_t next = 0;
  auto record = [&](size_t i, ProbeResult r, double seconds, bool timed_out) {
    r.source = "probed";
    r.seconds = seconds;
    log_line(LogLevel::kDebug, "", "plugin probe: " + libs[i].string() + ": probed in " +
                                       format_seconds(seconds) + " s (" + (r.ok ? "manifest" : r.reason) + ")");
    json rec = {{"mtime_ns", keys[i].mtime_ns}, {"size", keys[i].size}, {"sha256", keys[i].sha256},
                {"ctime_ns", keys[i].ctime_ns}, {"dev", keys[i].dev}, {"ino", keys[i].ino},
                {"host", host_identity()}, {"result", to_json(r)}};
    if (timed_out) rec["timed_out_after"] = timeout;
    updates[keys[i].path] = rec;
    out[i] = std::move(r);
  };
  while (next < todo.size() || !running.empty()) {
    while (running.size() < jobs && next < todo.size()) {
      Child c;
      c.index = todo[next];
      c.out = fs::path(tmpdir) / (std::to_string(next) + ".json");
      c.err = fs::path(tmpdir) / (std::to_string(next) + ".err");
      ++next;
      c.start = Clock::now();
      if (std::string why = spawn_probe(exe, libs[c.index], c); !why.empty()) {
        out[c.index] = failure(why);  // not cached: says nothing about the library
        out[c.index].source = "probed";
        continue;
      }
      running.push_back(c);
    }
    bool progressed = false;
    for (auto it = running.begin(); it != running.end();) {
      int status = 0;
      double elapsed = std::chrono::duration<double>(Clock::now() - it->start).count();
      pid_t w = ::waitpid(it->pid, &status, WNOHANG);
      if (w == 0 && elapsed < timeout) {
        ++it;
        continue;
      }
      if (w == 0) {  // timed out
        ::kill(-it->pid, SIGKILL);
        ::kill(it->pid, SIGKILL);
        while (::waitpid(it->pid, &status, 0) < 0 && errno == EINTR) {
        }
        record(it->index, failure("timed out after " + format_seconds(timeout) + " s while loading"), elapsed, true);
      } else if (w == it->pid) {
        ::kill(-it->pid, SIGKILL);  // anything the library left running in the probe's group
        record(it->index, finish_probe(*it, status), elapsed, false);
      } else if (errno == EINTR) {
        ++it;
        continue;
      } else {
        out[it->index] = failure(std::string("probe lost: ") + std::strerror(errno));
        out[it->index].source = "probed";
      }
      it = running.erase(it);
      progressed = true;
    }
    if (!progressed && !running.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  std::error_code ec;
  fs::remove_all(tmpdir, ec);
  if (cache_file && !updates.empty()) save_cache(*cache_file, updates);
  return out;
}

}  // namespace warmup
