"""Data-parallel SFT on the CPU: tokens/s of `warmup run` with 1 process x T threads against N
processes x T/N threads each (`--nproc-per-node N`, Gloo on loopback), the same global batch and
data (K&K solver traces distilled once), and one process joined to a process group of world size 1
(`--nproc-per-node 1`) against none, for the cost of the group itself, and N processes with the
gradient all-reduce overlapped with backward (the default, overlap_comm) against after it. The arms alternate over
--rounds rounds (the machine's speed drifts); each arm's rate is the median over its steps after
the first. Reports the scaling (N processes / 1 process), the all-reduce share of a step (rank 0's
train/allreduce_s, its wait for the all-reduce after backward, over its step time), the overlap's
speed-up, whether the per-step losses agree, and prints JSON."""
import argparse
import glob
import json
import os
import sqlite3
import subprocess
import tempfile


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="bench/qwen2_50m.json")
    ap.add_argument("--threads", type=int, default=2, help="threads in all: 1 process x T, or N x T/N")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--global-batch", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--zero-stage", type=int, default=0)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--device", default="cpu", help="model.device: cuda measures ProcessGroupNCCL (one GPU: --nproc 1)")
    ap.add_argument("--warmup-bin", default="build/bin/warmup")
    a = ap.parse_args()
    assert a.global_batch % a.nproc == 0 and a.threads % a.nproc == 0
    with tempfile.TemporaryDirectory() as tmp:
        run = lambda *args, **kw: subprocess.run([a.warmup_bin, *map(str, args)], check=True, capture_output=True,
                                                 text=True, **kw)
        run("model", "init", "--config", a.config, "--out", f"{tmp}/m", "--seed", "1")
        run("kk", "generate", "--people", "3", "--count", str(a.global_batch * (a.steps + 1)), "--seed", "1",
            "--out-dir", f"{tmp}/kk", "--split", "train")
        open(f"{tmp}/distill.toml", "w").write(f"""[experiment]
name = "bench-distill"
[model]
path = "{tmp}/m"
[tasks.knights_knaves]
data_dir = "{tmp}/kk"
people = [3]
prompt = "plain"
[[stages]]
name = "distill"
algorithm = "distill"
tasks = ["knights_knaves"]
teachers = ["kk_solver"]
eval = {{ split = "train" }}
""")
        # distill runs in one process (it is bound by its teacher); SFT on its output with N
        run("run", f"{tmp}/distill.toml", "--store", f"{tmp}/distill.sqlite")
        data = glob.glob(f"{tmp}/runs/1-*/sft.jsonl")[0]

        def experiment(per_device, overlap=True):
            path = f"{tmp}/sft-{per_device}-{overlap}.toml"
            open(path, "w").write(f"""[experiment]
name = "bench-dist-sft"
[model]
path = "{tmp}/m"
device = "{a.device}"
[[stages]]
name = "sft"
algorithm = "sft"
  [stages.sft]
  data = "{data}"
  max_steps = {a.steps + 1}
  per_device_train_batch_size = {per_device}
  gradient_accumulation_steps = 1
  max_length = {a.max_length}
  learning_rate = 1e-4
  warmup_steps = 0
  bf16 = {"true" if a.bf16 else "false"}
  zero_stage = {a.zero_stage}
  overlap_comm = {"true" if overlap else "false"}
  logging_steps = 1
""")
            return path

        arms = {f"1x{a.threads}": ([], a.global_batch, a.threads, True)}
        multi = f"{a.nproc}x{a.threads // a.nproc}"
        if a.nproc > 1:
            arms[multi] = (["--nproc-per-node", str(a.nproc)], a.global_batch // a.nproc, a.threads // a.nproc, True)
            arms[multi + " overlap_comm off"] = (["--nproc-per-node", str(a.nproc)], a.global_batch // a.nproc,
                                                 a.threads // a.nproc, False)
        arms[f"1x{a.threads} in a group of 1"] = (["--nproc-per-node", "1"], a.global_batch, a.threads, True)
        got = {k: {"tokens_per_s": [], "allreduce_share": [], "losses": None} for k in arms}
        n = 0
        for rnd in range(a.rounds):
            for name, (launch, per_device, threads, overlap) in arms.items():
                n += 1
                store = f"{tmp}/r{n}.sqlite"
                env = dict(os.environ, OMP_NUM_THREADS=str(threads))
                run("run", experiment(per_device, overlap), "--store", store, *launch, env=env)
                con = sqlite3.connect(store)
                q = lambda key: dict(con.execute("SELECT step, value FROM metrics WHERE key = ?", (key,)).fetchall())
                tps, red, secs, loss = q("train/tokens_per_s"), q("train/allreduce_s"), q("train/step_s"), q("train/loss")
                for s in sorted(tps):
                    if s == 1:  # the first step warms the allocator and the group up
                        continue
                    got[name]["tokens_per_s"].append(tps[s])
                    if s in red and secs.get(s):
                        got[name]["allreduce_share"].append(red[s] / secs[s])
                got[name]["losses"] = [loss[s] for s in sorted(loss)]
                con.close()
        median = lambda v: sorted(v)[len(v) // 2] if v else None
        out = {"bench": "distributed_sft", "device": a.device, "config": a.config, "threads": a.threads, "nproc": a.nproc,
               "global_batch": a.global_batch, "max_length": a.max_length, "bf16": a.bf16, "zero_stage": a.zero_stage,
               "rounds": a.rounds, "arms": {}}
        for name, g in got.items():
            out["arms"][name] = {"tokens_per_s": median(g["tokens_per_s"]), "steps": len(g["tokens_per_s"]),
                                 "allreduce_share_of_step": median(g["allreduce_share"])}
        base = out["arms"][f"1x{a.threads}"]["tokens_per_s"]
        if a.nproc > 1:
            out["scaling"] = out["arms"][multi]["tokens_per_s"] / base
            out["overlap_speedup"] = out["arms"][multi]["tokens_per_s"] / out["arms"][multi + " overlap_comm off"]["tokens_per_s"]
        out["group_of_1_over_none"] = out["arms"][f"1x{a.threads} in a group of 1"]["tokens_per_s"] / base
        ref = got[f"1x{a.threads}"]["losses"]
        out["max_loss_difference"] = max(abs(x - y) for g in got.values() for x, y in zip(g["losses"], ref))
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
