// See process_group.h. The only translation unit that includes c10d's headers.
#include "dist/process_group.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <thread>
#include <sstream>

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_GLOO  // Gloo's own headers (Debian's libgloo-dev) were found at configure time
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if WARMUP_WITH_CUDA && defined(USE_C10D_NCCL)
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "util/errors.h"

namespace warmup {
namespace {

// An integer environment variable in [lo, hi], or `fallback` when unset; UsageError otherwise.
int env_int(const char* name, int fallback, int lo, int hi, bool required) {
  const char* v = std::getenv(name);
  if (!v || !*v) {
    if (required) throw UsageError(std::string(name) + " is not set (a multi-process run needs RANK, WORLD_SIZE, "
                                                       "MASTER_ADDR and MASTER_PORT, as torchrun sets them)");
    return fallback;
  }
  char* end = nullptr;
  errno = 0;
  long x = std::strtol(v, &end, 10);
  if (errno || end == v || *end || x < lo || x > hi)
    throw UsageError(std::string(name) + "=" + v + ": expected an integer in [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "]");
  return int(x);
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "?";
  return buf;
}

std::string first_line(const std::string& s) {
  size_t nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

// Whether process `pid` on this machine has exited: gone, or a zombie its parent (the launcher)
// has not reaped yet (kill(pid, 0) still succeeds on one).
bool process_gone(long pid) {
  if (::kill(pid_t(pid), 0) != 0) return errno == ESRCH;
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(f, stat)) return std::ifstream("/proc/self/stat").good();  // reaped since kill() (if /proc is there)
  size_t close = stat.rfind(')');  // "pid (comm) S ...": the state follows the command's name
  return close != std::string::npos && close + 2 < stat.size() && (stat[close + 2] == 'Z' || stat[close + 2] == 'X');
}

bool loopback(const std::string& addr) {
  return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1";
}

c10d::ReduceOp to_c10d(ReduceOp op) {
  switch (op) {
    case ReduceOp::kMax: return c10d::ReduceOp::MAX;
    case ReduceOp::kMin: return c10d::ReduceOp::MIN;
    default: return c10d::ReduceOp::SUM;
  }
}

std::vector<uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }

}  // namespace

std::optional<DistEnv> DistEnv::from_environment() {
  const char* w = std::getenv("WORLD_SIZE");
  if (!w || !*w) return std::nullopt;  // (RANK alone means nothing: a plain run)
  const char* agent = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
  const bool agent_store = agent && std::string(agent) == "True";
  // A world of one outside a launcher (a scheduler exporting RANK=0 WORLD_SIZE=1) is a plain run,
  // whatever else the environment holds.
  if (std::string(w) == "1" && !agent_store) return std::nullopt;
  DistEnv e;
  e.world_size = env_int("WORLD_SIZE", 1, 1, 1 << 20, true);
  e.rank = env_int("RANK", 0, 0, e.world_size - 1, true);
  e.local_world_size = env_int("LOCAL_WORLD_SIZE", e.world_size, 1, e.world_size, false);
  e.local_rank = env_int("LOCAL_RANK", e.rank % e.local_world_size, 0, e.local_world_size - 1, false);
  const char* addr = std::getenv("MASTER_ADDR");
  if (e.world_size > 1 && (!addr || !*addr)) env_int("MASTER_ADDR", 0, 0, 0, true);  // throws: not set
  if (addr && *addr) e.master_addr = addr;
  e.master_port = env_int("MASTER_PORT", 29500, 1, 65535, e.world_size > 1);
  e.agent_store = agent_store;
  if (const char* n = std::getenv("TORCHELASTIC_RESTART_COUNT"); n && *n)
    e.restart = env_int("TORCHELASTIC_RESTART_COUNT", 0, 0, 1 << 20, false);
  return e;
}

std::chrono::milliseconds dist_timeout_from_environment() {
  return std::chrono::milliseconds(int64_t(env_int("WARMUP_DIST_TIMEOUT", 1800, 1, 7 * 24 * 3600, false)) * 1000);
}

struct ProcessGroupHost::Impl {
  DistEnv env;
  std::chrono::milliseconds timeout;
  c10::intrusive_ptr<c10d::Store> store;  // prefixed "warmup/"
  c10::intrusive_ptr<c10d::Backend> gloo;  // a ProcessGroupGloo
#if WARMUP_WITH_CUDA && defined(USE_C10D_NCCL)
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif
  std::string host = host_name();
  std::mutex mu, nccl_mu;
  bool down = false;

  c10d::Backend& backend_for(const torch::Tensor& t) {
#if WARMUP_WITH_CUDA && defined(USE_C10D_NCCL)
    if (t.is_cuda()) {
      std::lock_guard<std::mutex> lock(nccl_mu);  // (also reached from autograd's device thread)
      if (!nccl) {
        c10::cuda::set_device(c10::DeviceIndex(t.device().index() >= 0 ? t.device().index() : env.local_rank));
        auto o = c10d::ProcessGroupNCCL::Options::create();
        o->timeout = timeout;
        nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(
            c10::make_intrusive<c10d::PrefixStore>("nccl", store), env.rank, env.world_size, o);
      }
      return *nccl;
    }
#else
    if (t.is_cuda())
      throw std::runtime_error("distributed: a CUDA tensor needs ProcessGroupNCCL, which this build lacks "
                               "(built without CUDA); keep tensors on the CPU or rebuild with CUDA");
#endif
    return *gloo;
  }

  void wait(const c10::intrusive_ptr<c10d::Work>& work) { work->wait(timeout); }
};

ProcessGroupHost::ProcessGroupHost(const DistEnv& env, std::chrono::milliseconds timeout) : impl_(new Impl) {
  impl_->env = env;
  impl_->timeout = timeout;
  std::string where = env.master_addr + ":" + std::to_string(env.master_port);
  try {
    c10d::TCPStoreOptions so;
    so.port = uint16_t(env.master_port);
    so.isServer = !env.agent_store && env.rank == 0;
    so.numWorkers = env.agent_store ? std::nullopt : std::optional<size_t>(size_t(env.world_size));
    so.waitWorkers = !env.agent_store;
    so.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
    // torchrun's agent store outlives a restarted worker group: each attempt its own keys, as
    // torch's env:// rendezvous does (/worker/attempt_N).
    impl_->store = c10::make_intrusive<c10d::PrefixStore>(
        env.restart > 0 ? "warmup/attempt_" + std::to_string(env.restart) : std::string("warmup"), tcp);
    impl_->store->set("rank/" + std::to_string(env.rank), bytes_of(impl_->host + " " + std::to_string(::getpid())));
#ifndef USE_C10D_GLOO
    throw std::runtime_error("this build has no Gloo backend (Gloo's headers, Debian's libgloo-dev, were not found "
                             "when it was configured): install libgloo-dev and rebuild");
#else
    auto go = c10d::ProcessGroupGloo::Options::create(timeout);
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
      go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    else if (loopback(env.master_addr))
      go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    else
      go->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    impl_->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(c10::make_intrusive<c10d::PrefixStore>("gloo", impl_->store),
                                                               env.rank, env.world_size, go);
#endif
#if WARMUP_WITH_CUDA && defined(USE_C10D_NCCL)
    (void)0;  // NCCL is created on the first CUDA collective (the device is set by then)
#endif
  } catch (const std::exception& e) {
    throw std::runtime_error("rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size) +
                             ": joining the process group at " + where + " failed: " + first_line(e.what()));
  }
}

ProcessGroupHost::~ProcessGroupHost() { shutdown(); }

int ProcessGroupHost::rank() const { return impl_->env.rank; }
int ProcessGroupHost::world_size() const { return impl_->env.world_size; }
int ProcessGroupHost::local_rank() const { return impl_->env.local_rank; }
int ProcessGroupHost::local_world_size() const { return impl_->env.local_world_size; }

namespace {
template <class F>
auto guarded(ProcessGroupHost& pg, const char* what, F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    // A rank killed a moment ago may not be recorded yet: the launcher records how it ended once
    // it has reaped it. Look again for that record, for up to 2 s while no failed rank is known and
    // 0.5 s while one is only known to be gone; not when the store itself is unreachable.
    std::string who = pg.failed_ranks();
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(who.empty() ? 2000 : 500);
    while (who.find(" failed: ") == std::string::npos && who.find("unreachable") == std::string::npos &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      who = pg.failed_ranks();
    }
    throw std::runtime_error(std::string("distributed ") + what + " on rank " + std::to_string(pg.rank()) + " of " +
                             std::to_string(pg.world_size()) + " failed" + (who.empty() ? "" : ": " + who) + " (" +
                             first_line(e.what()) + ")");
  }
}
}  // namespace

void ProcessGroupHost::all_reduce(torch::Tensor& t, ReduceOp op) {
  guarded(*this, "all_reduce", [&] {
    std::vector<at::Tensor> v{t};
    c10d::AllreduceOptions o;
    o.reduceOp = to_c10d(op);
    o.timeout = impl_->timeout;
    impl_->wait(impl_->backend_for(t).allreduce(v, o));
  });
}

namespace {
// A c10d Work: wait() bounded by the run's timeout, its failure named as the blocking collective's.
struct HostWork final : Work {
  HostWork(ProcessGroupHost& pg, c10::intrusive_ptr<c10d::Work> w, std::chrono::milliseconds timeout)
      : pg(pg), work(std::move(w)), timeout(timeout) {}
  void wait() override {
    guarded(pg, "all_reduce", [&] { work->wait(timeout); });
  }
  ProcessGroupHost& pg;
  c10::intrusive_ptr<c10d::Work> work;
  std::chrono::milliseconds timeout;
};
}  // namespace

std::unique_ptr<Work> ProcessGroupHost::all_reduce_async(torch::Tensor& t, ReduceOp op) {
  return guarded(*this, "all_reduce", [&] {
    std::vector<at::Tensor> v{t};
    c10d::AllreduceOptions o;
    o.reduceOp = to_c10d(op);
    o.timeout = impl_->timeout;
    return std::unique_ptr<Work>(new HostWork(*this, impl_->backend_for(t).allreduce(v, o), impl_->timeout));
  });
}

std::vector<torch::Tensor> ProcessGroupHost::all_gather(const torch::Tensor& t) {
  return guarded(*this, "all_gather", [&] {
    std::vector<at::Tensor> in{t.contiguous()};
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < world_size(); ++r) out[0].push_back(torch::empty_like(in[0]));
    c10d::AllgatherOptions o;
    o.timeout = impl_->timeout;
    impl_->wait(impl_->backend_for(t).allgather(out, in, o));
    return out[0];
  });
}

void ProcessGroupHost::broadcast(torch::Tensor& t, int root) {
  guarded(*this, "broadcast", [&] {
    std::vector<at::Tensor> v{t};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    o.timeout = impl_->timeout;
    impl_->wait(impl_->backend_for(t).broadcast(v, o));
  });
}

void ProcessGroupHost::barrier() {
  guarded(*this, "barrier", [&] {
    c10d::BarrierOptions o;
    o.timeout = impl_->timeout;
    impl_->wait(impl_->gloo->barrier(o));
  });
}

std::vector<std::string> ProcessGroupHost::all_gather_bytes(std::string_view payload) {
  torch::Tensor n = torch::tensor({int64_t(payload.size())}, torch::kInt64);
  auto sizes = all_gather(n);
  int64_t most = 0;
  for (auto& s : sizes) most = std::max(most, s.item<int64_t>());
  torch::Tensor buf = torch::zeros({std::max<int64_t>(most, 1)}, torch::kUInt8);
  std::memcpy(buf.data_ptr<uint8_t>(), payload.data(), payload.size());
  auto all = all_gather(buf);
  std::vector<std::string> out;
  for (size_t r = 0; r < all.size(); ++r)
    out.emplace_back(reinterpret_cast<const char*>(all[r].data_ptr<uint8_t>()), size_t(sizes[r].item<int64_t>()));
  return out;
}

std::string ProcessGroupHost::broadcast_bytes(std::string_view payload, int root) {
  torch::Tensor n = torch::tensor({int64_t(payload.size())}, torch::kInt64);
  broadcast(n, root);
  int64_t len = n.item<int64_t>();
  torch::Tensor buf = torch::zeros({std::max<int64_t>(len, 1)}, torch::kUInt8);
  if (rank() == root) std::memcpy(buf.data_ptr<uint8_t>(), payload.data(), payload.size());
  broadcast(buf, root);
  return std::string(reinterpret_cast<const char*>(buf.data_ptr<uint8_t>()), size_t(len));
}

void ProcessGroupHost::report_failure(const std::string& message) noexcept {
  try {
    if (impl_->store) impl_->store->set("failed/" + std::to_string(rank()), bytes_of(first_line(message)));
  } catch (...) {
  }
}

void ProcessGroupHost::set(const std::string& key, const std::string& value) noexcept {
  try {
    if (impl_->store) impl_->store->set(key, bytes_of(value));
  } catch (...) {
  }
}

std::string ProcessGroupHost::failed_ranks() noexcept {
  std::string out;
  try {
    for (int r = 0; r < world_size(); ++r) {
      if (r == rank()) continue;
      std::string k = "failed/" + std::to_string(r), why;
      if (impl_->store->check({k})) {
        auto v = impl_->store->get(k);
        why = "rank " + std::to_string(r) + " failed: " + std::string(v.begin(), v.end());
      } else if (impl_->store->check({"rank/" + std::to_string(r)})) {
        auto v = impl_->store->get("rank/" + std::to_string(r));
        std::istringstream in(std::string(v.begin(), v.end()));
        std::string host;
        long pid = 0;
        if (in >> host >> pid && host == impl_->host && pid > 0 && process_gone(pid))
          why = "rank " + std::to_string(r) + " (pid " + std::to_string(pid) + ") is gone";
      }
      if (!why.empty()) out += (out.empty() ? "" : "; ") + why;
    }
  } catch (const std::exception& e) {
    out += std::string(out.empty() ? "" : "; ") + "the store at " + impl_->env.master_addr + ":" +
           std::to_string(impl_->env.master_port) + " is unreachable (" +
           (impl_->env.agent_store ? "the launcher" : "rank 0") + " is gone)";
  } catch (...) {
  }
  return out;
}

void ProcessGroupHost::shutdown() noexcept {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (impl_->down) return;
  impl_->down = true;
  try {
#if WARMUP_WITH_CUDA && defined(USE_C10D_NCCL)
    if (impl_->nccl) impl_->nccl->shutdown();
    impl_->nccl.reset();
#endif
    impl_->gloo.reset();
    impl_->store.reset();
  } catch (...) {
  }
}

struct LauncherStore::Impl {
  c10::intrusive_ptr<c10d::TCPStore> tcp;
  c10::intrusive_ptr<c10d::Store> store;
};

LauncherStore::LauncherStore(int port, int world_size, std::chrono::milliseconds timeout) : impl_(new Impl) {
  c10d::TCPStoreOptions so;
  so.port = uint16_t(port);
  so.isServer = true;
  so.numWorkers = std::nullopt;  // clients only; the launcher does not wait for them here
  so.waitWorkers = false;
  so.timeout = timeout;
  (void)world_size;
  try {
    impl_->tcp = c10::make_intrusive<c10d::TCPStore>("0.0.0.0", so);
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot host the ranks' store on port " + std::to_string(port) + ": " + first_line(e.what()));
  }
  impl_->store = c10::make_intrusive<c10d::PrefixStore>("warmup", impl_->tcp);
}

LauncherStore::~LauncherStore() = default;

int LauncherStore::port() const { return impl_->tcp->getPort(); }

std::optional<std::string> LauncherStore::get(const std::string& key) noexcept {
  try {
    if (!impl_->store->check({key})) return std::nullopt;
    auto v = impl_->store->get(key);
    return std::string(v.begin(), v.end());
  } catch (...) {
    return std::nullopt;
  }
}

void LauncherStore::report_failure(int rank, const std::string& why) noexcept {
  try {
    std::string k = "failed/" + std::to_string(rank);
    if (!impl_->store->check({k})) impl_->store->set(k, bytes_of(why));
  } catch (...) {
  }
}

}  // namespace warmup
