// The sandbox against hostile programs: fork bomb, busy loop, memory bombs, writes outside the
// temporary directory, sockets (to a listener of this test on 127.0.0.1 and to 8.8.8.8), killing
// the parent / the group / everything. Each must end as fail or timeout with a reason, leave no
// process behind, and leave this process and the pool working. Limits are kept small: the
// machine is shared.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "sandbox.h"

using namespace he;
namespace fs = std::filesystem;

namespace {

// mode: "bwrap", or "unsafe-local" with or without namespaces.
SandboxConfig small(const std::string& mode = "bwrap", bool namespaces = true) {
  SandboxConfig c;
  c.mode = mode;
  c.interpreter = HE_PYTHON;
  if (mode == "bwrap") c.ro_paths = interpreter_paths(HE_PYTHON);
  c.wall_s = 4.0;
  c.cpu_s = 4.0;
  c.memory_mb = 512;
  c.processes = 16;
  c.output_bytes = 4096;
  c.namespaces = namespaces;
  return c;
}

SandboxJob py(const std::string& code) {
  SandboxJob j;
  j.files = {{"main.py", code}};
  j.args = {"main.py"};
  return j;
}

// Processes on the machine owned by uid (the sandbox's uids are used by nobody else).
int processes_of(uid_t uid) {
  int n = 0;
  DIR* d = opendir("/proc");
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    struct stat st;
    std::string dir = "/proc/" + std::string(e->d_name);
    if (stat(dir.c_str(), &st) != 0 || st.st_uid != uid) continue;
    std::ifstream in(dir + "/stat");
    std::string stat_line;
    std::getline(in, stat_line);
    size_t paren = stat_line.rfind(')');
    if (paren != std::string::npos && stat_line.size() > paren + 2 && stat_line[paren + 2] != 'Z') ++n;  // zombies hold nothing
  }
  closedir(d);
  return n;
}

int64_t uid_of(const SandboxResult& r) {
  size_t at = r.isolation.find("+uid");
  return at == std::string::npos ? -1 : std::stoll(r.isolation.substr(at + 4));
}

void check_healthy(SandboxPool& pool) {
  auto r = pool.run(py("print(sum(range(10)))"));
  CHECK_MESSAGE(r.exited_ok(), (r.describe() + " " + r.err));
  CHECK(r.out == "45\n");
}

}  // namespace

TEST_CASE("unsafe-local: a program runs in a fresh directory that is removed afterwards") {
  SandboxPool pool(small("unsafe-local"), 2);
  SandboxJob j = py("import os\nprint(os.getcwd())\nprint(open('data.txt').read())\nopen('out.txt','w').write('hi')\n");
  j.files.push_back({"data.txt", "payload"});
  j.collect = {"out.txt", "missing.txt"};
  auto r = pool.run(j);
  REQUIRE_MESSAGE(r.exited_ok(), (r.describe() + " " + r.err));
  std::string dir = r.out.substr(0, r.out.find('\n'));
  CHECK(dir.find("/warmup-sbx-") != std::string::npos);
  CHECK(r.out.find("payload") != std::string::npos);
  CHECK(r.collected.at("out.txt") == "hi");
  CHECK(r.collected.count("missing.txt") == 0);
  CHECK_FALSE(fs::exists(dir));
  MESSAGE("isolation: " << r.isolation);
}

TEST_CASE("exit status, signals, output cap") {
  SandboxPool pool(small(), 1);
  auto r = pool.run(py("import sys\nprint('x' * 100000)\nsys.stderr.write('boom\\n')\nsys.exit(3)"));
  CHECK(r.exit_code == 3);
  CHECK(r.out.size() == 4096);
  CHECK(r.truncated);
  CHECK(r.err == "boom\n");
  r = pool.run(py("import ctypes\nctypes.string_at(0)"));  // a real SIGSEGV (PID 1 ignores kill())
  CHECK_FALSE(r.exited_ok());
  r = pool.run(py("raise SystemExit(0"));  // syntax error
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("SyntaxError") != std::string::npos);
}

TEST_CASE("hostile programs are contained" * doctest::timeout(150)) {
  for (int mode : {0, 1, 2}) {  // bwrap, unsafe-local with namespaces, unsafe-local without
    CAPTURE(mode);
    const bool ns = mode < 2;
    SandboxPool pool(mode == 0 ? small() : small("unsafe-local", ns), 2);
    // A TCP listener of this process on loopback: no sandbox may reach it.
    int lis = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(lis, (sockaddr*)&addr, sizeof addr) == 0);
    REQUIRE(listen(lis, 4) == 0);
    socklen_t len = sizeof addr;
    getsockname(lis, (sockaddr*)&addr, &len);
    std::string port = std::to_string(ntohs(addr.sin_port));
    std::string outside = "/tmp/outside-" + std::to_string(getpid());
    std::string home_file = std::string(getenv("HOME") ? getenv("HOME") : "/root") + "/warmup-sbx-escape-" + std::to_string(getpid());

    std::vector<std::pair<std::string, std::string>> programs = {
        {"fork bomb", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"},
        {"busy loop", "while True:\n    pass\n"},
        {"memory bomb", "x = bytearray(10**10)\n"},
        {"memory bomb (growing)", "l = []\nwhile True:\n    l.append(bytearray(10**7))\n"},
        {"write outside", "import sys\nok = []\nfor p in ['" + outside + "', '" + home_file + "']:\n"
                          "    try:\n        open(p, 'w').write('escaped')\n        ok.append(p)\n"
                          "    except OSError as e:\n        print(p, e)\nsys.exit(4)\n"},
        {"socket loopback", "import socket\ns = socket.create_connection(('127.0.0.1', " + port + "), timeout=2)\n"},
        {"socket internet", "import socket\ns = socket.create_connection(('8.8.8.8', 53), timeout=2)\n"},
        {"kill parent", "import os, time\nos.kill(os.getppid(), 9)\ntime.sleep(0.5)\nraise SystemExit(5)\n"},
        {"killpg", "import os, time\nos.killpg(os.getpgid(0), 9)\ntime.sleep(0.5)\nraise SystemExit(6)\n"},
        {"kill everything", "import os, time\ntry:\n    os.kill(-1, 9)\nexcept OSError:\n    pass\ntime.sleep(0.5)\nraise SystemExit(7)\n"},
    };
    // First, on fresh uids (the fork bomb's zombies count against RLIMIT_NPROC until reaped).
    auto escape = pool.run(py("import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\nraise SystemExit(8)\n"));
    CHECK(escape.exit_code == 8);
    if (uid_of(escape) >= 0) CHECK(processes_of(uid_t(uid_of(escape))) == 0);  // the escaped child is gone
    std::vector<SandboxJob> jobs;
    for (const auto& [name, code] : programs) jobs.push_back(py(code));
    auto results = pool.run_all(jobs);
    for (size_t i = 0; i < programs.size(); ++i) {
      const auto& r = results[i];
      INFO(programs[i].first << ": " << r.describe() << " [" << r.isolation << "] out=" << r.out << " err=" << r.err);
      CHECK(r.error.empty());
      CHECK_FALSE(r.exited_ok());
      CHECK_FALSE(r.describe().empty());
      if (uid_of(r) >= 0) CHECK(processes_of(uid_t(uid_of(r))) == 0);  // nothing left behind
    }
    CHECK(results[0].timed_out);
    CHECK(results[1].timed_out);
    CHECK(results[2].err.find("MemoryError") != std::string::npos);
    CHECK(results[3].err.find("MemoryError") != std::string::npos);
    CHECK(results[4].exit_code == 4);
    if (ns) CHECK_FALSE(fs::exists(outside));  // without a mount namespace /tmp is shared (README)
    fs::remove(outside);
    CHECK_FALSE(fs::exists(home_file));
    CHECK(results[5].err.find("Error") != std::string::npos);
    CHECK(results[6].err.find("Error") != std::string::npos);
    sockaddr_in peer{};
    socklen_t plen = sizeof peer;
    CHECK(accept(lis, (sockaddr*)&peer, &plen) < 0);  // nobody connected
    close(lis);
    check_healthy(pool);  // this process and the pool still work
  }
}

TEST_CASE("fork bomb leaves the machine usable") {
  SandboxConfig c = small();
  c.wall_s = 2.0;
  SandboxPool pool(c, 2);
  auto r = pool.run(py("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"));
  CHECK(r.timed_out);
  // The host can still fork and run programs, twice at a time.
  auto rs = pool.run_all({py("print(1)"), py("print(2)"), py("print(3)")});
  for (auto& x : rs) CHECK_MESSAGE(x.exited_ok(), x.describe());
  CHECK(rs[2].out == "3\n");
}

TEST_CASE("bwrap: the program sees none of the host's files and leaves nothing on it" * doctest::timeout(60)) {
  SandboxPool pool(small(), 2);
  const std::string tag = "warmup-sbx-test-" + std::to_string(getpid());
  const std::string home = getenv("HOME") ? getenv("HOME") : "/root";
  const std::string secret = "secret-" + tag;
  std::vector<std::string> canaries = {home + "/" + tag + "-canary", "/etc/" + tag + "-canary"};
  for (const auto& c : canaries) {
    std::ofstream(c) << secret;
    chmod(c.c_str(), 0600);
  }
  setenv("WARMUP_SBX_CANARY", secret.c_str(), 1);
  // Reads: canaries, shadow, the host's /proc; writes: everywhere it might stick; a setuid shell.
  auto r = pool.run(py(
      "import os, shutil, glob\n"
      "out = []\n"
      "for p in " "['" + canaries[0] + "', '" + canaries[1] + "', '/etc/shadow', '/proc/1/environ', '/proc/1/root/etc/hostname']:\n"
      "    try:\n        out.append(open(p).read())\n    except OSError as e:\n        out.append(type(e).__name__)\n"
      "out.append(repr(dict(os.environ)))\n"
      "for d in ['/tmp', '/var/tmp', '/dev/shm', '/run/lock', '" + home + "', '/usr', '/']:\n"
      "    try:\n        open(d + '/" + tag + "', 'w').write('x')\n        out.append('wrote ' + d)\n"
      "    except OSError as e:\n        out.append(type(e).__name__)\n"
      "shutil.copy('/bin/sh', '/tmp/" + tag + "-sh')\nos.chmod('/tmp/" + tag + "-sh', 0o4755)\n"
      "out.append(str(os.getuid()) + ' ' + str(sorted(os.listdir('/'))))\n"
      "print('\\n'.join(out))\n"));
  INFO(r.describe() << " out=" << r.out << " err=" << r.err);
  REQUIRE(r.exited_ok());
  CHECK(r.out.find(secret) == std::string::npos);
  CHECK(r.out.find("wrote /tmp") != std::string::npos);      // its own tmpfs
  CHECK(r.out.find("wrote /usr") == std::string::npos);      // read-only
  CHECK(r.out.find("wrote " + home) == std::string::npos);   // not there at all
  CHECK(r.out.find("['bin', 'dev', ") != std::string::npos);  // a minimal root
  for (const char* d : {"/tmp/", "/var/tmp/", "/dev/shm/"}) {
    CHECK_FALSE(fs::exists(d + tag));
    CHECK_FALSE(fs::exists(d + tag + "-sh"));
  }
  CHECK_FALSE(fs::exists(home + "/" + tag));
  for (const auto& c : canaries) fs::remove(c);
  unsetenv("WARMUP_SBX_CANARY");
}

TEST_CASE("bwrap: disk and memory are limited for the whole sample" * doctest::timeout(60)) {
  SandboxConfig c = small();
  c.memory_mb = 600;
  c.tmpfs_mb = 8;
  c.wall_s = 15;
  SandboxPool pool(c, 1);
  auto disk = pool.run(py("f = open('big', 'wb')\nfor _ in range(64):\n    f.write(b'0' * (1 << 20))\nf.close()\n"));
  CHECK_FALSE(disk.exited_ok());
  CHECK(disk.err.find("No space left") != std::string::npos);
  // Four children of 250 MB each: under the per-process limit, over the sample's.
  auto mem = pool.run(py("import os, time\nfor _ in range(4):\n    if os.fork() == 0:\n"
                         "        b = bytearray(250 << 20)\n        for i in range(0, len(b), 4096):\n"
                         "            b[i] = 1\n        time.sleep(30)\n        os._exit(0)\ntime.sleep(30)\n"));
  INFO(mem.describe() << " " << mem.err);
  CHECK(mem.memory_exceeded);
  CHECK(mem.seconds < 14);
  check_healthy(pool);
}

TEST_CASE("bwrap: a missing bubblewrap is a sandbox error that says what to do") {
  SandboxConfig c = small();
  c.bwrap = "/nonexistent/bwrap";
  auto r = run_sandboxed(c, py("print(1)"), 0);
  CHECK(r.error.find("bubblewrap") != std::string::npos);
  CHECK(r.error.find("unsafe-local") != std::string::npos);
}
