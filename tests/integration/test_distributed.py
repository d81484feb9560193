"""Multi-process runs on torch c10d (Gloo on loopback), started by `warmup run --nproc-per-node` and
by torchrun (from the test virtualenv): data-parallel SFT gives what one process gives with the same
global batch (per-step losses and final weights within 1e-5, fp32), with ZeRO-1 on and off (which
halves the optimizer state per rank); an evaluation shards its sampling and records what one
process records; a rank killed with SIGKILL makes every rank exit, the run is marked failed naming
the rank, and a resume with one rank ends as the uninterrupted run; two "nodes" (two launchers on
loopback with distinct node ranks; network namespaces need privileges CI does not promise) run too.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, WARMUP, query, wait_for, warmup, write

CONFIG = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 260, "hidden_size": 32,
          "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
          "max_position_embeddings": 2048, "tie_word_embeddings": True, "torch_dtype": "float32"}
STEPS = 20
TIMEOUT = {"WARMUP_DIST_TIMEOUT": "60"}


def experiment(d: Path, batch: int, zero: int = 0, save_steps: int = 0, eval_stage: bool = False,
               accumulation: int = 1, extra: str = "") -> Path:
    data = REPO / "plugins/knights_knaves/tests/data"
    text = f"""[experiment]
name = "dist-test"
seed = 3
[model]
path = "{d.parent / 'tiny'}"
[tasks.knights_knaves]
data_dir = "{data}"
people = [3, 5]
limit_per_size = 12
[rewards.kk]
plugin = "kk_paper"
[[stages]]
name = "sft"
algorithm = "sft"
tasks = ["knights_knaves"]
teachers = ["kk_solver"]
  [stages.sft]
  learning_rate = 3e-3
  max_steps = {STEPS}
  per_device_train_batch_size = {batch}
  gradient_accumulation_steps = {accumulation}
  max_length = 2048
  bf16 = false
  zero_stage = {zero}
  save_steps = {save_steps}
  logging_steps = 1
{extra}"""
    if eval_stage:
        text += """[[stages]]
name = "eval"
algorithm = "evaluate"
tasks = ["knights_knaves"]
rewards = ["kk"]
eval = { split = "test", limit = 7, num_samples = 2 }
  [stages.evaluate]
  completions = "model"
  max_new_tokens = 24
  save_every = 3
[[stages]]
name = "eval-reference"
algorithm = "evaluate"
tasks = ["knights_knaves"]
rewards = ["kk"]
eval = { split = "test", limit = 5 }
  [stages.evaluate]
  completions = "reference"
"""
    d.mkdir(parents=True, exist_ok=True)
    return write(d / "exp.toml", text)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    (d / "tiny.json").write_text(json.dumps(CONFIG))
    assert warmup("model", "init", "--config", d / "tiny.json", "--out", d / "tiny", "--seed", "1").returncode == 0
    return d


def metric(store, key, run=1):
    return [v for (v,) in query(store, "SELECT value FROM metrics WHERE run_id = ? AND key = ? ORDER BY step", run, key)]


def weights(run_dir: Path):
    from safetensors.numpy import load_file
    return load_file(str(run_dir / "sft" / "model" / "model.safetensors"))


def run_dir(store, run=1) -> Path:
    return Path(query(store, "SELECT run_dir FROM runs WHERE id = ?", run)[0][0])


@pytest.fixture(scope="module")
def one_process(root):
    """1 rank x batch 8: the reference (losses, weights, optimizer state bytes)."""
    exp = experiment(root / "one", 8, eval_stage=True)
    store = root / "one" / "s.sqlite"
    r = warmup("run", exp, "--store", store, timeout=600)
    assert r.returncode == 0, r.stderr
    return store


def assert_same_training(store, ref):
    got, want = metric(store, "train/loss"), metric(ref, "train/loss")
    assert len(got) == len(want) == STEPS
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    a, b = weights(run_dir(store)), weights(run_dir(ref))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-5, err_msg=k)


@pytest.mark.parametrize("zero", [0, 1])
def test_two_ranks_of_batch_4_train_as_one_rank_of_batch_8(root, one_process, zero):
    exp = experiment(root / f"two-zero{zero}", 4, zero=zero, eval_stage=True)
    store = root / f"two-zero{zero}" / "s.sqlite"
    r = warmup("run", exp, "--store", store, "--nproc-per-node", "2", env=TIMEOUT, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "[rank 1]" in r.stderr and "launching 2 ranks" in r.stderr
    assert query(store, "SELECT status FROM runs") == [("finished",)]
    assert_same_training(store, one_process)
    # rank 0 alone records: one row per step, nothing twice
    assert query(store, "SELECT COUNT(*) FROM metrics WHERE key = 'train/loss'")[0][0] == STEPS
    assert 0 < metric(store, "train/allreduce_s")[0]
    # The sharded evaluation records what one process records (same seeds per prompt).
    want = query(one_process, "SELECT example_id, completion, reward FROM samples WHERE stage = 'eval' ORDER BY id")
    got = query(store, "SELECT example_id, completion, reward FROM samples WHERE stage = 'eval' ORDER BY id")
    assert len(want) == 14 and got == want
    # rank 0 alone scores references (the other ranks leave the stage and wait at its end)
    ref = "SELECT example_id, reward FROM samples WHERE stage = 'eval-reference' ORDER BY id"
    assert len(query(store, ref)) == 5 and query(store, ref) == query(one_process, ref)


SFT_REDUCER_CASES = {
    # ~1 KB buckets: dozens of all-reduces in flight during backward, through the checkpointed
    # layers' nested backward passes, on the second of two accumulated micro-batches
    "small buckets+checkpointing+accumulation": (2, 2, "  ddp_bucket_cap_mb = 0.001\n  gradient_checkpointing = true\n"),
    "overlap_comm off": (4, 1, "  overlap_comm = false\n"),
}


@pytest.mark.parametrize("case", list(SFT_REDUCER_CASES))
def test_overlapped_gradient_all_reduce_trains_as_one_rank(root, one_process, case):
    batch, accumulation, extra = SFT_REDUCER_CASES[case]
    d = root / ("reducer-" + case.replace(" ", "_").replace("+", "_"))
    exp = experiment(d, batch, accumulation=accumulation, extra=extra)
    store = d / "s.sqlite"
    r = warmup("run", exp, "--store", store, "--nproc-per-node", "2", env=TIMEOUT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert_same_training(store, one_process)


def test_zero1_halves_the_optimizer_state_per_rank(root):
    full = metric(root / "two-zero0" / "s.sqlite", "memory/optimizer_state_bytes")
    sharded = metric(root / "two-zero1" / "s.sqlite", "memory/optimizer_state_bytes")
    most = metric(root / "two-zero1" / "s.sqlite", "memory/optimizer_state_bytes_max_rank")
    assert len(full) == len(sharded) == 1 and full[0] > 0
    # tied embeddings (260 x 32) are the largest tensor: the two shares are within it of a half
    assert 0.35 < sharded[0] / full[0] < 0.65 and 0.35 < most[0] / full[0] < 0.65, (sharded, most, full)


def torchrun():
    exe = Path(sys.executable).parent / "torchrun"
    return str(exe) if exe.exists() else None


@pytest.mark.skipif(torchrun() is None, reason="torchrun is not in the test virtualenv")
def test_torchrun_no_python_starts_the_ranks(root, one_process):
    exp = experiment(root / "torchrun", 4)
    store = root / "torchrun" / "s.sqlite"
    env = dict(os.environ, **TIMEOUT)
    env.pop("WARMUP_PLUGIN_PATH", None)
    r = subprocess.run([torchrun(), "--no-python", "--standalone", "--nproc-per-node", "2",
                        WARMUP, "run", str(exp), "--store", str(store)],
                       env=env, text=True, capture_output=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    got, want = metric(store, "train/loss"), metric(one_process, "train/loss")
    np.testing.assert_allclose(got, want[:len(got)], rtol=1e-5, atol=1e-5)
    assert len(got) == STEPS


def children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], text=True, capture_output=True).stdout
    return [int(x) for x in out.split()]


def test_a_killed_rank_fails_the_run_and_one_rank_resumes_it(root, one_process):
    d = root / "kill"
    exp = experiment(d, 4, save_steps=5)
    store = d / "s.sqlite"
    env = dict(os.environ, WARMUP_DIST_TIMEOUT="30")
    env.pop("WARMUP_PLUGIN_PATH", None)
    p = subprocess.Popen([WARMUP, "run", str(exp), "--store", str(store), "--nproc-per-node", "2"],
                         env=env, text=True, stderr=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO)
    # after the step-5 checkpoint, mid-run
    assert wait_for(lambda: (d / "runs").exists() and any((d / "runs").glob("*/checkpoints/sft/step-5/manifest.json")),
                    timeout=300)
    ranks = children(p.pid)
    assert len(ranks) == 2
    # rank 1 is the launcher's second child (started after rank 0)
    victim = sorted(ranks)[1]
    t0 = time.time()
    os.kill(victim, signal.SIGKILL)
    out, err = p.communicate(timeout=120)
    assert time.time() - t0 < 30 + 40, "ranks did not stop within the timeout"
    assert p.returncode != 0
    for pid in ranks:  # every rank is gone
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    assert "rank 1" in err and "killed by signal 9" in err, err[-3000:]
    status, error = query(store, "SELECT status, error FROM runs WHERE id = 1")[0]
    assert status == "failed" and "rank 1" in error, error
    done = len(metric(store, "train/loss"))
    assert 5 <= done < STEPS
    # One rank of batch 8 takes over from the newest checkpoint: the same global batch.
    r = warmup("run", "--resume", "1", "--store", store, "--set", "stages.sft.sft.per_device_train_batch_size=8",
               timeout=600)
    assert r.returncode == 0, r.stderr
    assert query(store, "SELECT status FROM runs WHERE id = 1") == [("finished",)]
    assert_same_training(store, one_process)


def test_resuming_with_another_global_batch_is_refused(root):
    """The data order follows the step and the rows per step: a resume must keep ranks x batch x accumulation."""
    exp = experiment(root / "refuse", 4, save_steps=5)
    store = root / "refuse" / "s.sqlite"
    r = warmup("run", exp, "--store", store, env={"WARMUP_FAULT_WRITE": "step-10/state.json"}, timeout=600)
    assert r.returncode != 0
    r = warmup("run", "--resume", "1", "--store", store, "--set", "stages.sft.sft.per_device_train_batch_size=3",
               timeout=600)
    assert r.returncode == 2
    assert "4 rows per step" in r.stderr and "1 x 3 x 1 = 3" in r.stderr, r.stderr
    assert query(store, "SELECT status FROM runs") == [("failed",)]
    # two ranks of 2 keep the 4 rows: the resume runs on them and finishes, each step once
    r = warmup("run", "--resume", "1", "--store", store, "--set", "stages.sft.sft.per_device_train_batch_size=2",
               "--nproc-per-node", "2", env=TIMEOUT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert query(store, "SELECT status FROM runs") == [("finished",)]
    assert [s for (s,) in query(store, "SELECT step FROM metrics WHERE key = 'train/loss' ORDER BY step")] == \
        list(range(1, STEPS + 1))


def test_a_rank_that_raises_stops_every_rank(root):
    """Rank 0 fails writing its step-5 checkpoint (WARMUP_FAULT_WRITE, a full disk): it marks the run
    failed; rank 1, waiting in its next collective, exits too, naming rank 0."""
    exp = experiment(root / "raise", 4, save_steps=5)
    store = root / "raise" / "s.sqlite"
    t0 = time.time()
    r = warmup("run", exp, "--store", store, "--nproc-per-node", "2",
               env={"WARMUP_FAULT_WRITE": "step-5/state.json", "WARMUP_DIST_TIMEOUT": "30"}, timeout=300)
    assert r.returncode != 0 and time.time() - t0 < 200
    status, error = query(store, "SELECT status, error FROM runs")[0]
    assert status == "failed" and "state.json" in error, error
    assert "[rank 1]" in r.stderr and "rank 0" in r.stderr, r.stderr[-3000:]


def test_two_nodes_on_loopback(root, one_process):
    """Two launchers, --nnodes 2, one rank each, node 0 hosting the store on a fixed port."""
    import socket
    exp = experiment(root / "nodes", 4)
    store = root / "nodes" / "s.sqlite"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, **TIMEOUT)
    env.pop("WARMUP_PLUGIN_PATH", None)
    common = ["--nproc-per-node", "1", "--nnodes", "2", "--master-addr", "127.0.0.1", "--master-port", str(port)]
    node0 = subprocess.Popen([WARMUP, "run", str(exp), "--store", str(store), *common, "--node-rank", "0"],
                             env=env, text=True, stderr=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO)
    node1 = subprocess.Popen([WARMUP, "run", str(exp), "--store", str(root / "nodes" / "other.sqlite"), *common,
                              "--node-rank", "1"], env=env, text=True, stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                             cwd=REPO)
    _, e0 = node0.communicate(timeout=600)
    _, e1 = node1.communicate(timeout=600)
    assert node0.returncode == 0 and node1.returncode == 0, e0[-2000:] + e1[-2000:]
    np.testing.assert_allclose(metric(store, "train/loss"), metric(one_process, "train/loss"), rtol=1e-5, atol=1e-5)
    assert not (root / "nodes" / "other.sqlite").exists()  # rank 1 never opens a store


def test_a_bad_rendezvous_environment_is_one_line(root):
    r = warmup("run", experiment(root / "env", 8), "--store", root / "env" / "s.sqlite",
               env={"RANK": "0", "WORLD_SIZE": "2"}, timeout=60)
    assert r.returncode == 2 and "MASTER_ADDR is not set" in r.stderr, r.stderr
    r = warmup("run", experiment(root / "env", 8), "--store", root / "env" / "s.sqlite",
               env={"RANK": "3", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}, timeout=60)
    assert r.returncode == 2 and "RANK=3" in r.stderr, r.stderr


GRPO_TINY = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 1024, "hidden_size": 64,
             "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
             "max_position_embeddings": 256, "tie_word_embeddings": True, "eos_token_id": 0, "torch_dtype": "float32"}


def grpo_experiment(d: Path, extra: str, batch: int = 16) -> Path:
    """test_grpo's task: a from-scratch model rewarded for writing "knight" (a signal from step 1)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "tiny.json").write_text(json.dumps(GRPO_TINY))
    return write(d / "grpo.toml", f"""[experiment]
name = "dist-grpo"
seed = 3
[model]
init = {{ config = "{d / 'tiny.json'}", seed = 0, tokenizer = "{REPO / 'experiments/quickstart/tokenizer'}" }}
[tasks.arithmetic]
train_size = 64
[rewards.regex]
pattern = "knight"
mode = "count"
max = 4
[[stages]]
name = "rl"
algorithm = "grpo"
tasks = ["arithmetic"]
rewards = ["regex"]
  [stages.grpo]
  num_examples = 40
  prompts_per_step = 8
  num_generations = 8
  per_device_train_batch_size = {batch}
  max_completion_length = 8
  temperature = 1.0
  top_p = 1.0
  learning_rate = 3e-3
  lr_scheduler_type = "constant"
  weight_decay = 0.0
  max_grad_norm = 1.0
  scale_rewards = "batch"
  max_steps = 5
  save_steps = 0
  log_completions_groups = -1
  bf16 = false
{extra}
""")


# (extra options, per_device_train_batch_size): at 64 the step is one micro-batch, so rank 1 trains
# on none and sends zeros for every bucket while rank 0's start during its backward
GRPO_CASES = {"fused": ("", 16), "kl+2 iterations+zero1+small buckets":
              ("  beta = 0.04\n  num_iterations = 2\n  zero_stage = 1\n  ddp_bucket_cap_mb = 0.002\n", 16),
              "one micro-batch+small buckets": ("  ddp_bucket_cap_mb = 0.002\n", 64)}


@pytest.mark.parametrize("case", list(GRPO_CASES))
def test_grpo_on_two_ranks_matches_one(root, case):
    """Rank r samples and scores a block of each step's prompts with one process's seeds; the
    rollouts are gathered, so group and batch advantage scaling see the whole step, and each rank
    trains on every other micro-batch of a loss normalised over the step."""
    tag = case.replace(" ", "_").replace("+", "_")
    stores = {}
    for ranks in (1, 2):
        d = root / f"grpo-{tag}-{ranks}"
        exp = grpo_experiment(d, *GRPO_CASES[case])
        stores[ranks] = d / "s.sqlite"
        launch = ["--nproc-per-node", "2"] if ranks == 2 else []
        r = warmup("run", exp, "--store", stores[ranks], *launch, env=TIMEOUT, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
    rows = lambda s: query(s, "SELECT step, example_id, completion, reward, advantage FROM samples "
                              "WHERE stage = 'rl' ORDER BY id")
    one, two = rows(stores[1]), rows(stores[2])
    assert len(one) == 5 * 64
    assert [r[:4] for r in one] == [r[:4] for r in two]  # the same completions and rewards
    np.testing.assert_allclose([r[4] for r in two], [r[4] for r in one], rtol=0, atol=1e-9)
    for key in ("train/loss", "train/reward", "train/grad_norm", "train/entropy"):
        np.testing.assert_allclose(metric(stores[2], key), metric(stores[1], key), rtol=1e-5, atol=1e-5, err_msg=key)
    assert len(metric(stores[2], "train/loss")) == 5


def netns_pair():
    """Two network namespaces joined by a veth pair (10.77.x.1 and .2), or None where creating them
    is not allowed (not root, or a container without CAP_SYS_ADMIN)."""
    tag = str(os.getpid() % 10000)
    ns, veth = [f"wu{tag}n0", f"wu{tag}n1"], [f"wu{tag}v0", f"wu{tag}v1"]
    net = f"10.77.{int(tag) % 250}"
    cmds = [["ip", "netns", "add", ns[0]], ["ip", "netns", "add", ns[1]],
            ["ip", "link", "add", veth[0], "type", "veth", "peer", "name", veth[1]],
            ["ip", "link", "set", veth[0], "netns", ns[0]], ["ip", "link", "set", veth[1], "netns", ns[1]]]
    for i in (0, 1):
        cmds += [["ip", "-n", ns[i], "addr", "add", f"{net}.{i + 1}/24", "dev", veth[i]],
                 ["ip", "-n", ns[i], "link", "set", veth[i], "up"], ["ip", "-n", ns[i], "link", "set", "lo", "up"]]
    for c in cmds:
        if shutil.which("ip") is None or subprocess.run(c, capture_output=True).returncode != 0:
            for n in ns:
                subprocess.run(["ip", "netns", "del", n], capture_output=True)
            return None
    return ns, veth, net


def test_two_nodes_in_network_namespaces(root, one_process):
    """Two "machines": two network namespaces on a veth link, a launcher in each, node 1 reaching
    node 0's store and Gloo over the link (GLOO_SOCKET_IFNAME names each side's interface)."""
    pair = netns_pair()
    if pair is None:
        pytest.skip("network namespaces cannot be created here (test_two_nodes_on_loopback covers two launchers)")
    ns, veth, net = pair
    try:
        exp = experiment(root / "netns", 4)
        store = root / "netns" / "s.sqlite"
        procs = []
        for i in (0, 1):
            env = dict(os.environ, GLOO_SOCKET_IFNAME=veth[i], **TIMEOUT)
            env.pop("WARMUP_PLUGIN_PATH", None)
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", ns[i], WARMUP, "run", str(exp), "--store",
                 str(store if i == 0 else root / "netns" / "other.sqlite"), "--nproc-per-node", "1", "--nnodes", "2",
                 "--node-rank", str(i), "--master-addr", f"{net}.1", "--master-port", "29533"],
                env=env, text=True, stderr=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO))
        errs = [p.communicate(timeout=600)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], errs[0][-2000:] + errs[1][-2000:]
        assert f"{net}.1:29533" in errs[0]
        np.testing.assert_allclose(metric(store, "train/loss"), metric(one_process, "train/loss"), rtol=1e-5, atol=1e-5)
    finally:
        for n in ns:
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
