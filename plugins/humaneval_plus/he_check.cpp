// he_check: the relay between a candidate's sandbox and its slot's checker, and the verdicts of
// the three variants (see he_check.h).
#include "he_check.h"

#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string_view>
#include <thread>

#include <nlohmann/json.hpp>

#include "he_prompts.h"  // generated: kCandidatePy, kCheckerPy

namespace he {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

Clock::time_point after(double seconds) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

std::string one_line(std::string s, size_t cap = 300) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  size_t b = s.rfind('\n');
  if (b != std::string::npos) s = s.substr(b + 1);
  if (s.size() > cap) s.resize(cap);
  for (char& ch : s)
    if (ch == '\r' || ch == '\0') ch = ' ';
  return s;
}

// Reads what is available into `buf`; false at EOF or error.
bool drain(Fd& fd, std::string& buf, size_t cap) {
  char tmp[65536];
  while (fd.fd >= 0) {
    ssize_t n = read(fd.fd, tmp, sizeof tmp);
    if (n > 0) {
      buf.append(tmp, size_t(std::min<size_t>(size_t(n), cap > buf.size() ? cap - buf.size() : 0)));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    fd.reset();
    return false;
  }
  return false;
}

// Bytes waiting to be written to a socket (consumed by offset: queues of several MB are sent in
// many partial writes).
struct Queue {
  std::string buf;
  size_t off = 0;
  bool empty() const { return off == buf.size(); }
  Queue& operator+=(const std::string& s) {
    buf += s;
    return *this;
  }
  Queue& append(const char* s, size_t n) {
    buf.append(s, n);
    return *this;
  }
  void clear() { buf.clear(), off = 0; }
};

// Writes what the socket takes now; false once the peer is gone (the queue is then dropped).
bool flush(Fd& fd, Queue& q) {
  while (!q.empty() && fd.fd >= 0) {
    ssize_t n = send(fd.fd, q.buf.data() + q.off, q.buf.size() - q.off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      q.off += size_t(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    q.clear();
    return false;
  }
  if (q.empty()) q.clear();
  else if (q.off > (size_t(1) << 20) && q.off > q.buf.size() / 2) q.buf.erase(0, q.off), q.off = 0;
  return true;
}

std::string ended(int status, const std::string& err) {
  std::string why = WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
                    : WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                        : "ended";
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGXCPU) why = "CPU time limit (SIGXCPU)";
  std::string tail = one_line(err);
  return tail.empty() ? why : why + ": " + tail;
}

std::string ended(const Spawned& s, const std::string& err) { return ended(s.status, err); }

// The zygote's "E exit N" / "E signal N" as a wait status; -1 if malformed.
int zygote_status(const std::string& line) {
  int n = 0;
  if (std::sscanf(line.c_str(), "E exit %d", &n) == 1) return (n & 0xff) << 8;
  if (std::sscanf(line.c_str(), "E signal %d", &n) == 1) return n & 0x7f;
  return -1;
}

// Sends all of `text` on `to` (blocking up to `seconds`), the first part carrying `fds` (SCM_RIGHTS).
bool send_with_fds(const Fd& to, const std::string& text, std::initializer_list<int> fds, double seconds) {
  auto until = after(seconds);
  size_t done = 0;
  while (done < text.size()) {
    struct pollfd p = {to.fd, POLLOUT, 0};
    if (Clock::now() >= until) return false;
    poll(&p, 1, 50);
    ssize_t n;
    if (done == 0) {
      struct iovec iov = {const_cast<char*>(text.data()), text.size()};
      alignas(struct cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))] = {};
      struct msghdr msg{};
      msg.msg_iov = &iov, msg.msg_iovlen = 1, msg.msg_control = control;
      msg.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
      struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET, c->cmsg_type = SCM_RIGHTS, c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
      std::memcpy(CMSG_DATA(c), fds.begin(), fds.size() * sizeof(int));
      n = sendmsg(to.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    } else {
      n = send(to.fd, text.data() + done, text.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    if (n > 0) done += size_t(n);
    else if (n < 0 && errno != EAGAIN && errno != EINTR) return false;
  }
  return true;
}

// Sends "F\n" carrying `fd` on the socket `to` (the checker's: the candidate's connection).
bool send_fd(const Fd& to, int fd) { return send_with_fds(to, "F\n", {fd}, 5.0); }

}  // namespace

struct Checker::Slot {
  int index = 0;
  std::unique_ptr<Spawned> checker;
  std::string checker_err;
  std::unique_ptr<Spawned> zygote;  // the warm pool's process of this slot (he_zygote.py)
  pid_t zygote_pid = -1;            // its host pid (not counted in a sample's memory)
};

Problem parse_reference(const std::string& reference) {
  auto j = json::parse(reference);
  Problem p;
  p.task_id = j.at("task_id").get<std::string>();
  p.entry_point = j.at("entry_point").get<std::string>();
  p.variant = j.at("variant").get<std::string>();
  p.prompt = j.value("prompt", std::string());
  if (p.variant == "plus") {
    p.canonical = j.at("canonical").get<std::string>();
    p.base_input = j.at("base_input").get<std::string>(), p.plus_input = j.at("plus_input").get<std::string>();
    p.n_base = j.at("n_base").get<int64_t>(), p.n_plus = j.at("n_plus").get<int64_t>();
    p.atol = j.at("atol").get<double>();
  } else if (p.variant == "plus_originfmt" || p.variant == "base") {
    p.test = j.at("test").get<std::string>();
  } else {
    throw std::runtime_error("unknown variant '" + p.variant + "'");
  }
  return p;
}

double Verdict::fraction() const {
  int64_t total = base_total + plus_total;
  if (total == 0 || status == "error") return pass() ? 1.0 : 0.0;
  return double(base_passed + plus_passed) / double(total);
}

Checker::Checker(SandboxConfig config, int workers, double input_timeout_s, int64_t result_bytes, bool warm_pool)
    : config_(std::move(config)),
      input_timeout_s_(input_timeout_s),
      warm_pool_(warm_pool && config_.mode == "bwrap"),
      result_bytes_(result_bytes),
      first_slot_(reserve_slots(2 * std::max(1, workers))) {
  for (int i = 0; i < std::max(1, workers); ++i) {
    slots_.push_back(std::make_unique<Slot>());
    slots_.back()->index = i;
    free_.push_back(i);
  }
}

Checker::~Checker() = default;

Spawned* Checker::refuse_pool(const std::string& why) {
  std::lock_guard lock(mu_);
  if (pool_why_.empty()) {
    pool_why_ = why;
    fprintf(stderr, "humaneval sandbox: the warm pool is refused (%s); every program starts cold\n", why.c_str());
  }
  return nullptr;
}

Spawned* Checker::zygote(Slot& slot) {
  {
    std::lock_guard lock(mu_);
    if (!warm_pool_ || !pool_why_.empty()) return nullptr;
  }
  if (slot.zygote && !slot.zygote->exited()) return slot.zygote.get();
  slot.zygote.reset();
  // A program's fresh tmpfs on /tmp, /var/tmp and /dev/shm would hide an interpreter that lives
  // there (a virtualenv under /tmp): such a machine starts every program cold.
  for (const auto& d : config_.ro_paths)
    for (const char* t : {"/tmp", "/var/tmp", "/dev/shm"})
      if (d == t || d.rfind(std::string(t) + "/", 0) == 0)
        return refuse_pool("the interpreter's files are under " + std::string(t) + " (" + d + ")");
  SandboxConfig zc = config_;
  zc.processes += 2;  // the zygote and its program's PID 1 count against the slot uid's RLIMIT_NPROC
  SandboxJob zj;
  zj.files = {{"zygote.py", kZygotePy}};
  zj.args = {"zygote.py", std::to_string(config_.tmpfs_mb)};
  zj.stdin_socket = true, zj.long_lived = true, zj.allow_userns = true, zj.cpu = cpu_for_slot(slot.index);
  std::string error;
  auto z = spawn_sandboxed(zc, zj, first_slot_ + 2 * slot.index, error);
  if (!z) return nullptr;  // the cold start that follows reports the sandbox's error
  std::string buf, err;
  for (auto until = after(10.0); buf.find('\n') == std::string::npos && Clock::now() < until && !z->exited();) {
    struct pollfd pf = {z->out.fd, POLLIN, 0};
    poll(&pf, 1, 50);
    drain(z->out, buf, 4096);
  }
  std::string line = buf.substr(0, buf.find('\n'));
  if (line != "Z ok") {
    drain(z->err, err, 4096);
    return refuse_pool(line.rfind("Z no ", 0) == 0 ? line.substr(5) : "its process did not start: " + one_line(err));
  }
  auto pids = z->uid >= 0 ? pids_of(uid_t(z->uid)) : std::vector<pid_t>{};
  slot.zygote_pid = pids.size() == 1 ? pids[0] : -1;
  slot.zygote = std::move(z);
  return slot.zygote.get();
}

Verdict Checker::relay(const Problem& p, const std::string& code, double wall_s, const std::string& job, const std::string& extra,
                       std::string* expected_out) {
  Slot* slot;
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !free_.empty(); });
    slot = slots_[size_t(free_.back())].get();
    free_.pop_back();
  }
  struct Release {
    Checker* c;
    int i;
    ~Release() {
      {
        std::lock_guard lock(c->mu_);
        c->free_.push_back(i);
      }
      c->cv_.notify_one();
    }
  } release{this, slot->index};

  Verdict v;
  std::string error;
  const size_t err_cap = size_t(config_.output_bytes);
  if (slot->checker && slot->checker->exited()) slot->checker.reset();
  if (!slot->checker) {
    SandboxJob cj;
    cj.files = {{"checker.py", kCheckerPy}};
    cj.args = {"checker.py", std::to_string(result_bytes_)};
    cj.stdin_socket = true, cj.long_lived = true, cj.cpu = cpu_for_slot(slot->index);
    slot->checker = spawn_sandboxed(config_, cj, first_slot_ + 2 * slot->index + 1, error);
    slot->checker_err.clear();
    if (!slot->checker) return v.status = "error", v.reason = "checker: " + error, v;
  }
  // The candidate's stdin and stdout are one socket; its other end goes to the checker, which
  // calls the candidate directly (no call crosses the host). Warm: the slot's zygote forks the
  // program into fresh namespaces; cold: a new bubblewrap sandbox runs candidate.py.
  Spawned* zyg = zygote(*slot);
  std::unique_ptr<Spawned> cand;
  Fd chk_end;
  std::string cand_err;
  if (zyg) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
      return v.status = "error", v.reason = std::string("socketpair: ") + std::strerror(errno), v;
    Fd cand_end;
    cand_end.reset(sv[0]), chk_end.reset(sv[1]);
    // The code goes in a memfd read by the program alone: it never enters the zygote's memory,
    // which every later program inherits.
    Fd code_fd;
    code_fd.reset(int(syscall(SYS_memfd_create, "warmup-solution", MFD_CLOEXEC)));
    for (size_t done = 0; code_fd.fd >= 0 && done < code.size();) {
      ssize_t n = write(code_fd.fd, code.data() + done, code.size() - done);
      if (n <= 0) code_fd.reset();
      else done += size_t(n);
    }
    if (code_fd.fd < 0 || lseek(code_fd.fd, 0, SEEK_SET) != 0)
      return v.status = "error", v.reason = std::string("memfd: ") + std::strerror(errno), v;
    json pj = {{"entry_point", p.entry_point}, {"cpu_s", config_.cpu_s}, {"tmpfs_mb", config_.tmpfs_mb}};
    drain(zyg->err, cand_err, err_cap);  // an earlier program's last words
    cand_err.clear();
    if (!send_with_fds(zyg->in, "P " + pj.dump(-1, ' ', false, json::error_handler_t::replace) + "\n",
                       {cand_end.fd, code_fd.fd}, 5.0)) {
      slot->zygote.reset();  // it does not take programs: a new one next time, this one cold
      zyg = nullptr;
      chk_end.reset();
    } else {
      v.isolation = zyg->isolation + "+warm+userns+pidns+mntns+ipcns+netns+utsns";
    }
  }
  if (!zyg) {
    SandboxJob jj;
    jj.files = {{"candidate.py", kCandidatePy}, {"solution.py", code}};
    jj.args = {"candidate.py", p.entry_point};
    jj.stdin_socket = true, jj.stdout_socket = true, jj.cpu = cpu_for_slot(slot->index);
    cand = spawn_sandboxed(config_, jj, first_slot_ + 2 * slot->index, error);
    if (!cand) return v.status = "error", v.reason = error, v;
    v.isolation = cand->isolation;
    chk_end.reset(cand->in.fd);
    cand->in.fd = -1;
  }
  Spawned& chk = *slot->checker;
  if (!send_fd(chk.in, chk_end.fd)) {
    slot->checker.reset();
    if (zyg) slot->zygote.reset();  // kills the program it started
    return v.status = "error", v.reason = "the checker failed: it does not take the candidate's connection", v;
  }
  chk_end.reset();  // the checker holds the only end: the candidate's end closes its connection
  const int64_t sample_uid = zyg ? zyg->uid : cand->uid;
  const pid_t not_counted = zyg ? slot->zygote_pid : -1;
  std::string zyg_buf, zyg_harness;  // zyg_harness: the pool failed to set the program up (not its fault)
  int zyg_status = -1;  // the program's wait status once the zygote reported its end
  // Reads the zygote's report ("E ..."); false once the zygote itself is gone.
  auto zygote_report = [&]() {
    drain(zyg->out, zyg_buf, 1 << 16);
    size_t nl = zyg_buf.find('\n');
    if (nl != std::string::npos) {
      std::string report = zyg_buf.substr(0, nl);
      zyg_status = zygote_status(report);
      if (report.rfind("E harness ", 0) == 0) zyg_harness = one_line(report.substr(10));
      if (zyg_status < 0) zyg_status = 0x7f & SIGKILL;
      zyg_buf.erase(0, nl + 1);
    }
    return !zyg->exited();
  };
  // Kills the program and waits until nothing of it is left (warm: through the zygote, which
  // answers once its namespace is gone; a zygote that does not is killed with its sandbox).
  // Kills the program and waits until nothing of it is left (warm: through the zygote, which
  // answers once its namespace is gone; a zygote that does not is killed with its sandbox).
  // Returns its wait status (a SIGKILL if it was still running).
  auto kill_program = [&]() -> int {
    if (!zyg) {
      if (!cand) return 0x7f & SIGKILL;
      cand->kill_all();
      return cand->status;
    }
    if (zyg_status >= 0) return zyg_status;
    Queue k;
    k += "K\n";
    flush(zyg->in, k);
    for (auto until = after(5.0); zyg_status < 0 && Clock::now() < until;) {
      struct pollfd pf = {zyg->out.fd, POLLIN, 0};
      poll(&pf, 1, 20);
      if (!zygote_report()) break;
    }
    if (zyg_status < 0) {
      zyg_status = 0x7f & SIGKILL;
      slot->zygote.reset();  // SIGKILL to its sandbox: the PID namespace and every program in it
      zyg = nullptr;
    }
    return zyg_status;
  };


  Queue to_chk;
  to_chk += "J " + job + "\n" + (extra.empty() ? "" : "X " + extra + "\n");
  std::string chk_buf, verdict_line;
  const int64_t memory_cap = config_.memory_mb << 20;
  bool cand_done = false, timed_out = false;
  std::string checker_failed;  // why the checker gave no verdict
  std::string dead;  // why the candidate stopped (sent to the checker once)
  // The candidate's wall clock (timeout_s) is the checker's: the time it waited for the program.
  // Here, a bound on the whole check, the checker's own work included (a test's reference
  // function may take as long as the candidate): a program stopped, not a hang.
  const double bound_s = 3 * wall_s + 10;
  auto wall = after(bound_s);
  Clock::time_point grace = Clock::time_point::max();
  auto stop_candidate = [&](std::string why) {
    if (cand_done) return;
    int st = kill_program();
    // It had ended by itself (the checker saw its connection close first): say how.
    if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)) why = ended(st, cand_err);
    cand_done = true;
    dead = why;
    to_chk += "D " + one_line(why, 1000) + "\n";
  };
  auto last_memory_check = Clock::now();
  while (verdict_line.empty()) {
    auto now = Clock::now();
    if (!cand_done && now >= wall) {
      timed_out = true;
      stop_candidate("timeout (the whole check's limit, 3 x timeout_s + 10 = " + std::to_string(int(bound_s + 0.5)) + " s)");
    }
    if (grace == Clock::time_point::max() && cand_done) grace = after(std::max(10.0, config_.wall_s));
    if (now >= grace) {  // the checker does not conclude: drop it (a new one next time)
      checker_failed = "no verdict within " + std::to_string(int(std::max(10.0, config_.wall_s))) + " s of the candidate's end";
      timed_out = true;  // it is still judging what the candidate sent (answers built to be slow to decode)
      dead = dead.empty() ? checker_failed : dead + "; then " + checker_failed;
      break;
    }
    if (!cand_done && now - last_memory_check >= std::chrono::milliseconds(20)) {
      last_memory_check = now;
      if (sample_uid >= 0 && resident_bytes_of(uid_t(sample_uid), not_counted) > memory_cap)  // a /proc scan: ~1 ms
        stop_candidate("killed: memory limit of the whole sample (" + std::to_string(config_.memory_mb) + " MiB)");
    }
    Spawned* running = cand_done ? nullptr : zyg ? zyg : cand.get();  // whose stderr and end to watch
    struct pollfd fds[7] = {
        {chk.out.fd, POLLIN, 0},
        {chk.err.fd, POLLIN, 0},
        {chk.pidfd.fd, POLLIN, 0},
        {to_chk.empty() ? -1 : chk.in.fd, POLLOUT, 0},
        {running ? running->err.fd : -1, POLLIN, 0},
        {running ? running->pidfd.fd : -1, POLLIN, 0},
        {running && zyg ? zyg->out.fd : -1, POLLIN, 0},
    };
    poll(fds, 7, 20);
    if (!flush(chk.in, to_chk) || chk.exited()) {
      drain(chk.err, slot->checker_err, err_cap);
      chk.kill_all();  // reaps: the status says how it ended
      checker_failed = "it ended (" + ended(chk, slot->checker_err) + ")";
      break;
    }
    // The checker: limits the candidate broke, the expected outputs, the verdict.
    drain(chk.err, slot->checker_err, err_cap);
    if (slot->checker_err.size() >= err_cap) slot->checker_err.erase(0, err_cap / 2);
    size_t scanned = chk_buf.size();
    drain(chk.out, chk_buf, size_t(1) << 34);
    size_t at = 0;  // lines are consumed by offset and erased once
    for (size_t nl; verdict_line.empty() && (nl = chk_buf.find('\n', at == 0 ? scanned : at)) != std::string::npos;) {
      scanned = 0;
      std::string_view line(chk_buf.data() + at, nl - at);
      at = nl + 1;
      if (line.rfind("K ", 0) == 0) {
        if (line.rfind("K timeout", 0) == 0) timed_out = true;  // its wall clock, kept by the checker
        stop_candidate(std::string(line.substr(2)));
      } else if (line.rfind("E ", 0) == 0) {
        if (expected_out) *expected_out = std::string(line.substr(2));
      } else if (line.rfind("V ", 0) == 0) {
        verdict_line = std::string(line.substr(2));
      }
    }
    chk_buf.erase(0, at);
    if (!verdict_line.empty()) break;
    if (cand_done) continue;
    if (zyg) {
      drain(zyg->err, cand_err, err_cap);
      if (!zygote_report() && zyg_status < 0) {  // the pool's process died (and the program with it)
        zyg_status = 0x7f & SIGKILL;
        slot->zygote.reset();
        zyg = nullptr;
      }
      if (zyg_status >= 0) stop_candidate(ended(zyg_status, cand_err));
    } else {
      drain(cand->err, cand_err, err_cap);
      if (cand->exited()) {
        drain(cand->err, cand_err, err_cap);
        cand->kill_all();  // reaps; status
        stop_candidate(ended(*cand, cand_err));
      }
    }
  }
  if (!cand_done) kill_program();  // the verdict came first: the program is still serving
  cand.reset();  // kills whatever is left of the candidate (cold)
  if (!zyg_harness.empty()) {
    slot->zygote.reset();  // a fresh one next time
    return v.status = "error", v.reason = "the warm pool could not start the program: " + zyg_harness, v;
  }
  if (!checker_failed.empty() || verdict_line.empty()) {
    slot->checker.reset();
    if (timed_out) return v.status = "timeout", v.reason = dead, v;
    return v.status = "error", v.reason = "the checker failed: " + checker_failed, v;
  }
  json verdict = json::parse(verdict_line, nullptr, false);
  if (!verdict.is_object()) return v.status = "error", v.reason = "malformed verdict from the checker", v;
  v.status = verdict.value("status", "error");
  if (verdict.contains("reason") && verdict["reason"].is_string()) v.reason = verdict["reason"].get<std::string>();
  if (verdict.contains("base") && verdict["base"].is_array() && verdict["base"].size() == 2) {
    v.base_passed = verdict["base"][0].get<int64_t>(), v.base_total = verdict["base"][1].get<int64_t>();
    v.plus_passed = verdict["plus"][0].get<int64_t>(), v.plus_total = verdict["plus"][1].get<int64_t>();
  }
  if (timed_out && v.status != "pass" && v.status != "ok") v.status = "timeout", v.reason = dead;
  return v;
}

Checker::Expected Checker::expected(const Problem& p) {
  std::promise<Expected> promise;
  std::shared_future<Expected> fut;
  // By task and inputs: one reward may judge two datasets of a task (EvalPlus's full and mini inputs).
  const std::string key = p.task_id + "#" + std::to_string(std::hash<std::string>()(p.base_input)) + "-" +
                          std::to_string(std::hash<std::string>()(p.plus_input));
  {
    std::lock_guard lock(mu_);
    auto it = expected_.find(key);
    if (it != expected_.end()) fut = it->second;
    else expected_[key] = promise.get_future().share();
  }
  if (fut.valid()) return fut.get();
  // The canonical solution (trusted) gets at least 5 minutes: its outputs are every later check's key.
  const double record_wall_s = std::max(config_.wall_s, 300.0);
  std::string job = R"({"mode":"record","entry_point":)" + json(p.entry_point).dump() + R"(,"wall_s":)" + json(record_wall_s).dump() +
                    R"(,"input_timeout_s":60.0,"base":)" + p.base_input + R"(,"plus":)" + p.plus_input + "}";
  Expected e;
  Verdict v = relay(p, p.canonical, record_wall_s, job, "", &e.encoded);
  if (v.status != "ok" || e.encoded.empty()) {
    e.encoded.clear();
    e.error = "canonical solution of " + p.task_id + " failed: " + v.status + " " + v.reason;
    std::lock_guard lock(mu_);
    expected_.erase(key);  // a later check tries again
  }
  promise.set_value(e);
  return e;
}

Verdict Checker::check(const Problem& p, const std::string& code, bool fast) {
  if (p.variant != "plus") {
    json job = {{"mode", "check"}, {"entry_point", p.entry_point}, {"test", p.test}, {"prompt", p.prompt},
                {"wall_s", config_.wall_s}};
    return relay(p, code, config_.wall_s, job.dump(-1, ' ', false, json::error_handler_t::replace), "", nullptr);
  }
  Expected e = expected(p);
  if (!e.error.empty()) return Verdict{"error", 0, p.n_base, 0, p.n_plus, e.error, ""};
  std::string job = R"({"mode":"compare","entry_point":)" + json(p.entry_point).dump() + R"(,"wall_s":)" + json(config_.wall_s).dump() + R"(,"atol":)" +
                    json(p.atol).dump() + R"(,"fast":)" + (fast ? "true" : "false") + R"(,"input_timeout_s":)" +
                    json(input_timeout_s_).dump() + R"(,"base":)" + p.base_input + R"(,"plus":)" + p.plus_input + "}";
  Verdict v = relay(p, code, config_.wall_s, job, e.encoded, nullptr);
  v.base_total = p.n_base, v.plus_total = p.n_plus;
  return v;
}

}  // namespace he
