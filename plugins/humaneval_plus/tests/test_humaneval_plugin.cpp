// The humaneval_plus task and its rewards, loaded as the real plugin library, against the shared
// HumanEval / HumanEval+ data: every canonical solution passes (original tests, EvalPlus's
// self-checking tests, EvalPlus's inputs with expected outputs from the canonical solution),
// wrong solutions fail, the plus variant agrees with EvalPlus's own check on the original
// HumanEval solutions, prompts are the paper's byte for byte, bad data names file and line.
#include <doctest/doctest.h>

#include <chrono>
#include <fstream>
#include <future>
#include <sstream>

#include "warmup/sdk.h"
#include "warmup/testing.h"

using namespace warmup;

namespace {

const warmup::testing::PluginLibraries& registry() { return warmup::testing::build_plugins(); }

PluginInit init(const std::string& kind, const std::string& text, const std::string& base = HE_SHARED_DIR) {
  return warmup::testing::plugin_init(kind, text, base);
}

std::vector<Example> load(const std::string& variant, const std::string& extra = "", const std::string& split = "all") {
  auto t = registry().create<Task>("humaneval_plus", init("task", "data_dir = '.'\nvariant = '" + variant + "'\n" + extra), "test");
  return t->examples(split);
}

std::string reward_config(double timeout = 30.0) {
  return "interpreter = '" HE_PYTHON "'\nworkers = 2\ntimeout_s = " + std::to_string(timeout) + "\n";
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string answer(const std::string& code) { return "I will write it.</think>\n<answer>\n```python\n" + code + "```\n</answer>"; }

// Scores completions[i] against examples[i] from two threads (the reward's pool has 2 workers).
std::vector<RewardResult> score_all(const Reward& r, const std::vector<Example>& ex, const std::vector<std::string>& comp) {
  std::vector<RewardResult> out(ex.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next++) < ex.size();) out[i] = r.score(ex[i], comp[i]);
  };
  std::thread a(work), b(work);
  a.join(), b.join();
  return out;
}

std::string canonical(const Example& e) {
  return e.metadata["prompt"].get<std::string>() + e.metadata["canonical_solution"].get<std::string>();
}

}  // namespace

TEST_CASE("task: variants, splits, the paper's prompts byte for byte") {
  for (const char* v : {"plus_originfmt", "plus", "base"}) CHECK(load(v).size() == 164);
  auto train = load("plus_originfmt", "", "train"), test = load("plus_originfmt", "", "test");
  CHECK(train.size() == 50);
  CHECK(test.size() == 114);
  std::set<std::string> ids;
  for (auto& e : train) ids.insert(e.id);
  for (auto& e : test) ids.insert(e.id);
  CHECK(ids.size() == 164);
  CHECK(load("plus_originfmt", "", "train")[7].id == train[7].id);  // stable
  std::string paper = std::string(HE_SHARED_DIR) + "/../../paper/prompts/";
  for (auto [prompt, file] : {std::pair{"rl", "humaneval_rl.txt"}, std::pair{"eval", "humaneval_eval.txt"}}) {
    auto e = load("base", std::string("prompt = '") + prompt + "'\n")[0];
    std::string tmpl = slurp(paper + file);
    REQUIRE(tmpl.find("{prompt}") != std::string::npos);
    CHECK(e.prompt == tmpl.replace(tmpl.find("{prompt}"), 8, e.metadata["prompt"].get<std::string>()));
  }
  CHECK(load("base", "prompt = 'raw'\n")[0].prompt == load("base")[0].metadata["prompt"]);
  CHECK_THROWS_AS(load("base", "", "validation"), ConfigError);
  CHECK_THROWS_AS(load("nope"), std::exception);
}

TEST_CASE("task: bad data names the file and line; gzip through zlib") {
  auto fixture = [](const std::string& file) {
    auto t = registry().create<Task>("humaneval_plus",
                                     init("task", "data_dir = '" HE_FIXTURE_DIR "'\nvariant = 'base'\nbase_file = '" + file + "'\n"), "test");
    return t->examples("all");
  };
  CHECK(fixture("mini_humaneval.jsonl.gz").size() == 3);
  CHECK_THROWS_WITH_AS(fixture("bad.jsonl"), doctest::Contains("bad.jsonl:2: not valid JSON"), DataError);
  CHECK_THROWS_WITH_AS(fixture("missing_field.jsonl"), doctest::Contains("missing_field.jsonl:2: field 'entry_point'"), DataError);
  CHECK_THROWS_AS(fixture("absent.jsonl"), DataError);
}

TEST_CASE("every canonical solution passes; wrong solutions fail (base, plus_originfmt)" * doctest::timeout(240)) {
  auto reward = registry().create<Reward>("humaneval_paper", init("reward", reward_config()), "test");
  for (const char* v : {"base", "plus_originfmt"}) {
    CAPTURE(v);
    auto ex = load(v);
    std::vector<std::string> good, wrong;
    for (size_t i = 0; i < ex.size(); ++i) {
      good.push_back(answer(canonical(ex[i])));
      wrong.push_back(answer(canonical(ex[(i + 1) % ex.size()])));  // the neighbour's solution
    }
    auto g = score_all(*reward, ex, good);
    for (size_t i = 0; i < ex.size(); ++i) {
      // The released originfmt test of HumanEval/32 calls `_poly(*candidate(*inp), inp)` and
      // fails every solution, its own canonical one included, in plain Python too.
      bool broken = std::string(v) == "plus_originfmt" && ex[i].id == "humaneval_plus/HumanEval/32";
      CHECK_MESSAGE(g[i].value == (broken ? -1.0 : 2.0), (ex[i].id + ": " + g[i].error));
      if (broken) CHECK(g[i].error.find("Value after * must be an iterable") != std::string::npos);
    }
    std::vector<Example> few(ex.begin(), ex.begin() + 12);
    wrong.resize(few.size());
    auto w = score_all(*reward, few, wrong);
    for (size_t i = 0; i < few.size(); ++i) {
      CHECK_MESSAGE(w[i].value == -1.0, few[i].id);
      CHECK(w[i].correct == false);
      CHECK_FALSE(w[i].error.empty());
    }
  }
}

TEST_CASE("plus variant: EvalPlus inputs and canonical outputs agree with EvalPlus's own check" * doctest::timeout(400)) {
  std::string cfg = reward_config(30.0);
  auto paper = registry().create<Reward>("humaneval_paper", init("reward", cfg), "test");
  auto frac = registry().create<Reward>("humaneval_pass_fraction", init("reward", cfg), "test");
  auto plus = load("plus"), origin = load("plus_originfmt"), base = load("base");
  // CI: every 6th task (HE_FULL=1: all 164).
  if (!getenv("HE_FULL")) {
    auto every3 = [](std::vector<Example>& v) {
      std::vector<Example> out;
      for (size_t i = 0; i < v.size(); i += 6) out.push_back(v[i]);
      v = out;
    };
    every3(plus), every3(origin), every3(base);
  }
  // The original HumanEval solutions: several are wrong on HumanEval+ (EvalPlus's finding). Our
  // verdict on EvalPlus's inputs must match EvalPlus's self-checking test, task by task.
  std::vector<std::string> originals;
  for (auto& e : base) originals.push_back(answer(canonical(e)));
  auto on_plus = score_all(*paper, plus, originals);
  auto on_origin = score_all(*paper, origin, originals);
  int failing = 0, slow_count = 0;
  for (size_t i = 0; i < plus.size(); ++i) {
    // A time verdict depends on the machine and its load, not on the answers, so it is left out
    // of the comparison: EvalPlus's evaluator limits each input (like our input_timeout_s) and
    // its self-checking test does not; and the original HumanEval/96 (trial division) spends
    // ~20 s of program time on the plus inputs on an unloaded 2-core VM, so under ctest -j2 it
    // crosses the 30 s whole-program limit on one variant and not the other. The clocks
    // themselves are tested in "timeout_s is the program's time".
    bool slow = on_plus[i].error.find("per-input time limit") != std::string::npos ||
                on_plus[i].error.find("timeout (wall-clock limit") != std::string::npos ||
                on_origin[i].error.find("timeout (wall-clock limit") != std::string::npos;
    if (slow) {
      ++slow_count;
      MESSAGE(plus[i].id << ": a time verdict, not compared: plus " << on_plus[i].error << " | originfmt " << on_origin[i].error);
    } else {
      CHECK_MESSAGE(on_plus[i].value == on_origin[i].value, (plus[i].id + ": plus " + on_plus[i].error + " | originfmt " + on_origin[i].error));
    }
    failing += on_plus[i].value < 0;
  }
  MESSAGE("original HumanEval solutions failing HumanEval+: " << failing);
  CHECK(failing > 0);
  // Every 6th task holds one slow original (HumanEval/96) and two more under 2 s: more time
  // verdicts than that is not load but a broken clock.
  CHECK(slow_count <= (getenv("HE_FULL") ? 12 : 3));
  // EvalPlus's own canonical solutions pass; pass fraction 1.
  std::vector<std::string> own;
  for (auto& e : plus) own.push_back(answer(canonical(e)));
  std::vector<Example> few(plus.begin(), plus.begin() + 20);
  own.resize(few.size());
  auto f = score_all(*frac, few, own);
  for (size_t i = 0; i < few.size(); ++i) CHECK_MESSAGE(f[i].value == 1.0, (few[i].id + ": " + f[i].error));
  // A stub passes some inputs at most: a fraction strictly below 1, with base/plus parts.
  auto stub = frac->score(plus[0], answer(plus[0].metadata["prompt"].get<std::string>() + "    return False\n"));
  CHECK(stub.value > 0.0);
  CHECK(stub.value < 1.0);
  CHECK(stub.breakdown.count("plus") == 1);
  CHECK(paper->score(plus[0], answer(plus[0].metadata["prompt"].get<std::string>() + "    return False\n")).value == -1.0);
}

TEST_CASE("rewards: format gate, hostile and cheating code") {
  auto reward = registry().create<Reward>("humaneval_paper", init("reward", reward_config(3.0)), "test");
  auto e = load("plus_originfmt")[0];
  std::string code = canonical(e);
  CHECK(reward->score(e, "no tags " + code).value == -2.0);
  CHECK(reward->score(e, "x</think><answer>a</answer><answer>b</answer>").value == -2.0);
  CHECK(reward->score(e, "x</think>\n<answer>\n" + code + "\n</answer>").value == 2.0);  // raw code
  auto loop = reward->score(e, answer("while True:\n    pass\n"));
  CHECK(loop.value == -1.0);
  CHECK(loop.error.find("timeout") != std::string::npos);
  auto exit0 = reward->score(e, answer("import sys\nsys.exit(0)\n"));  // exits "successfully" before the tests
  CHECK(exit0.value == -1.0);
  // A load error that the candidate sends just before it exits still reaches the verdict (its
  // answers are read to the end of its connection before the host's word that it ended).
  auto syntax = reward->score(e, answer("def f(:\n"));
  CHECK(syntax.value == -1.0);
  CHECK_MESSAGE(syntax.error.find("load: SyntaxError") != std::string::npos, syntax.error);
  auto osexit = reward->score(e, answer("import os\nos._exit(0)\n"));
  CHECK(osexit.value == -1.0);
  CHECK_MESSAGE(osexit.error.find("load: no answer (exit 0)") != std::string::npos, osexit.error);
  auto killer = reward->score(e, answer("import os\ntry:\n    os.kill(os.getppid(), 9)\nexcept OSError:\n    pass\n" + code));
  CHECK_MESSAGE(killer.value == 2.0, killer.error);  // harmless here, and we are still alive
  auto fork = reward->score(e, answer("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"));
  CHECK(fork.value == -1.0);
  CHECK(reward->score(e, answer(code)).value == 2.0);  // the pool still works
  Example foreign;
  foreign.reference = "42";
  CHECK(reward->score(foreign, answer(code)).error.find("bad reference") != std::string::npos);
}

TEST_CASE("timeout_s is the program's time: the checker's own work does not count, the program's calls add up" *
          doctest::timeout(120)) {
  for (const char* pool : {"true", "false"}) {
    CAPTURE(pool);
    auto reward = registry().create<Reward>(
        "humaneval_paper", init("reward", reward_config(2.0) + "warm_pool = " + pool + "\n"), "test");
    // A test whose reference function spends 3 s in the checker between the calls (as
    // HumanEval/139's ref_func does): over timeout_s, yet the program is never waited on that long.
    Example e = load("plus_originfmt")[0];
    auto ref = nlohmann::json::parse(e.reference);
    ref["test"] = "import time\ndef ref(x):\n    t = time.monotonic()\n    while time.monotonic() - t < 1.0:\n        pass\n"
                  "    return 2 * x\ndef check(candidate):\n    for x in (1, 2, 3):\n        assert candidate(x) == ref(x)\n";
    e.reference = ref.dump();
    std::string fn = "def " + ref["entry_point"].get<std::string>() + "(x):\n";
    auto fast = reward->score(e, answer(fn + "    return 2 * x\n"));
    CHECK_MESSAGE(fast.value == 2.0, fast.error);
    // Each call takes 0.8 s: 2.4 s of the program's time in all, over the 2 s limit.
    auto slow = reward->score(e, answer("import time\n" + fn + "    time.sleep(0.8)\n    return 2 * x\n"));
    CHECK(slow.value == -1.0);
    CHECK_MESSAGE(slow.error.find("timeout: timeout (wall-clock limit, 2 s)") != std::string::npos, slow.error);
    // Flooding the channel with stale answers (which the checker skips) neither stops its clock
    // nor goes on for long.
    const std::string flood =
        "import os, stat, threading, time\n"
        "def _flood():\n"
        "    fds = [fd for fd in range(3, 64) if os.path.exists('/proc/self/fd/%d' % fd) and stat.S_ISSOCK(os.fstat(fd).st_mode)]\n"
        "    while True:\n"
        "        for fd in fds:\n"
        "            try:\n"
        "                os.write(fd, b'0 ok 0\\n')\n"
        "            except OSError:\n"
        "                pass\n"
        "threading.Thread(target=_flood, daemon=True).start()\n";
    auto flooded = reward->score(e, answer(flood + fn + "    time.sleep(0.8)\n    return 2 * x\n"));
    CHECK_MESSAGE(flooded.value == -1.0, flooded.error);
    // Its start counts too.
    auto load_slow = reward->score(e, answer("import time\ntime.sleep(3)\n" + fn + "    return 2 * x\n"));
    CHECK_MESSAGE(load_slow.error.find("timeout: timeout (wall-clock limit, 2 s)") != std::string::npos, load_slow.error);
  }
}

TEST_CASE("warm pool: what a program does to its interpreter and its world never reaches the next one" *
          doctest::timeout(120)) {
  // One worker: every program comes from the same zygote, one after another.
  std::string one = "interpreter = '" HE_PYTHON "'\nworkers = 1\ntimeout_s = 10\n";
  auto reward = registry().create<Reward>("humaneval_paper", init("reward", one), "test");
  auto e = load("plus_originfmt")[0];  // has_close_elements
  std::string code = canonical(e);
  // Leaves behind all it can: patched builtins and modules, a running thread, another cwd, files
  // in every writable place, a System V segment, a daemon that keeps writing, and an answer key.
  const std::string spoil = R"(
import builtins, ctypes, json, os, sys, threading, time
builtins.abs = lambda x: 0
builtins.sorted = lambda *a, **k: [42]
json.loads = lambda *a, **k: True
sys.modules["he_spoiled"] = True
threading.Thread(target=lambda: time.sleep(3600), daemon=False).start()
os.chdir("/")
for d in ("/tmp", "/var/tmp", "/dev/shm"):
    open(d + "/spoiled", "w").write("answer key")
libc = ctypes.CDLL(None)
libc.shmget(0x5eed, 4096, 0o1000 | 0o666)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        while True:
            for d in ("/tmp", "/var/tmp", "/dev/shm"):
                try:
                    open(d + "/daemon", "w").write("still here")
                except OSError:
                    pass
            time.sleep(0.01)
    os._exit(0)
time.sleep(0.3)
def has_close_elements(numbers, threshold):
    return True
)";
  auto spoiled = reward->score(e, answer(spoil));
  CHECK(spoiled.value == -1.0);
  // The next program passes only in a clean world: it raises on anything the last one left.
  const std::string probe = R"(
import builtins, ctypes, json, os, sys, threading, time
time.sleep(0.1)
assert builtins.abs(-1) == 1 and builtins.sorted([2, 1]) == [1, 2], "builtins"
assert json.loads("[1]") == [1] and "he_spoiled" not in sys.modules, "modules"
assert threading.active_count() == 1, "threads"
assert os.getcwd() == "/tmp", os.getcwd()
for d in ("/tmp", "/var/tmp", "/dev/shm"):
    assert not [n for n in os.listdir(d) if n in ("spoiled", "daemon")], d
assert ctypes.CDLL(None).shmget(0x5eed, 0, 0) == -1, "System V segment"
others = [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
assert all(open("/proc/%s/cmdline" % p, "rb").read().find(b"still") < 0 for p in others), others
# No capability in its namespace: it cannot unmount its /tmp (to reach the zygote's), mount, or nest.
assert [l for l in open("/proc/self/status") if l.startswith("CapEff")][0].split()[1] == "0" * 16, "capabilities"
libc = ctypes.CDLL(None, use_errno=True)
assert libc.umount2(b"/tmp", 2) == -1 and libc.mount(b"t", b"/tmp", b"tmpfs", 0, None) == -1, "mounts"
assert libc.unshare(0x10000000) == -1 and libc.unshare(0x20000) == -1, "namespaces"
# No code of an earlier program in this one's memory (the pattern does not match its own text).
import re
leak = re.compile(rb"QQ7f3a[9]c1b")
for region in open("/proc/self/maps"):
    addr, perms = region.split()[:2]
    if perms[0] != "r" or "[vvar]" in region or "[vsyscall]" in region:
        continue
    lo, hi = (int(x, 16) for x in addr.split("-"))
    try:
        with open("/proc/self/mem", "rb") as m:
            m.seek(lo)
            chunk = m.read(hi - lo)
    except OSError:
        continue
    assert not leak.search(chunk), "an earlier program's code is in memory"
)" + code;
  // A passing program whose code carries a token the probe looks for in its own memory.
  const std::string marked = "# QQ7f3a9c1b\n" + code;
  for (int i = 0; i < 2; ++i) {
    auto clean = reward->score(e, answer(probe));
    CHECK_MESSAGE(clean.value == 2.0, clean.error);
    reward->score(e, answer(spoil));
    CHECK(reward->score(e, answer(marked)).value == 2.0);
  }
  // The memory scan does find a token that is there.
  auto seen = reward->score(e, answer("t = 'QQ7f3a' + '9c1b'\n" + probe));
  CHECK_MESSAGE(seen.error.find("an earlier program's code is in memory") != std::string::npos, seen.error);
  // The probe does see a spoiled world (the same two in one program).
  auto both = reward->score(e, answer(spoil.substr(0, spoil.find("def has_close")) + probe));
  CHECK(both.value == -1.0);
  CHECK_MESSAGE(both.error.find("builtins") != std::string::npos, both.error);
  // It was the warm pool that ran them: a failing program names it in its isolation.
  auto wrong = reward->score(e, answer("def has_close_elements(numbers, threshold):\n    return True\n"));
  CHECK_MESSAGE(wrong.error.find("+warm+userns+pidns+mntns+ipcns+netns+utsns") != std::string::npos, wrong.error);
}

TEST_CASE("bench: canonical solutions per second (bench/humaneval_sandbox.py sets HE_BENCH)") {
  if (!getenv("HE_BENCH")) return;
  size_t n = std::stoul(getenv("HE_BENCH"));
  // HE_BENCH_COLD: every program in a new sandbox (warm_pool = false).
  std::string config = reward_config() + (getenv("HE_BENCH_COLD") ? "warm_pool = false\n" : "");
  auto reward = registry().create<Reward>("humaneval_paper", init("reward", config), "test");
  // HE_BENCH_PLUS_FILE: the plus variant's data (e.g. EvalPlus's humaneval_plus_mini.jsonl.gz).
  const char* plus_file = getenv("HE_BENCH_PLUS_FILE");
  auto data = [&](const char* variant) {
    return load(variant, plus_file && std::string(variant) == "plus" ? "plus_file = '" + std::string(plus_file) + "'\n" : "");
  };
  auto timed = [&](const char* variant) {
    auto ex = data(variant);
    ex.resize(std::min(n, ex.size()));
    std::vector<std::string> comp;
    for (auto& e : ex) comp.push_back(answer(canonical(e)));
    auto t0 = std::chrono::steady_clock::now();
    auto r = score_all(*reward, ex, comp);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    int passed = 0;
    for (auto& x : r) passed += x.value == 2.0;
    return std::pair{s, passed};
  };
  if (const char* per = getenv("HE_BENCH_PER_TASK")) {  // seconds per task, one at a time, to a JSON file
    std::ofstream out(per);
    out << "{";
    for (const char* variant : {"plus", "plus_originfmt"}) {
      auto ex = data(variant);
      ex.resize(std::min(n, ex.size()));
      out << (variant[4] ? ", " : "") << "\"" << variant << "\": {";
      for (size_t i = 0; i < ex.size(); ++i) {
        if (variant[4] == 0) reward->score(ex[i], answer(canonical(ex[i])));  // plus: time it warm
        auto t0 = std::chrono::steady_clock::now();
        auto r = reward->score(ex[i], answer(canonical(ex[i])));
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        out << (i ? ", " : "") << "\"" << ex[i].id << "\": [" << s << ", " << r.value << "]";
      }
      out << "}";
    }
    out << "}\n";
    return;
  }
  auto [cold_s, cold_ok] = timed("plus");  // includes recording the expected outputs
  auto [plus_s, plus_ok] = timed("plus");  // warm: EvalPlus's ground truth is cached too
  auto [orig_s, orig_ok] = timed("plus_originfmt");
  MESSAGE("HE_BENCH_JSON{\"plus_cold_seconds\": " << cold_s << ", \"plus_seconds\": " << plus_s << ", \"plus_passed\": "
          << plus_ok << ", \"originfmt_seconds\": " << orig_s << ", \"originfmt_passed\": " << orig_ok << "}");
}
