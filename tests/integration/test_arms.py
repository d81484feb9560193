"""Several arms in one experiment: `[model] init` creates a from-scratch model in the run
directory, `model_from` restarts a stage from it (or from an earlier stage's output), every stage
records the model it handed on, and `warmup runs table` shows one row per stage."""
import json
import re

from conftest import REPO, query, warmup, write

TINY = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 1024, "hidden_size": 32,
        "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
        "max_position_embeddings": 512, "tie_word_embeddings": True, "eos_token_id": 0, "torch_dtype": "float32"}


def experiment(tmp_path):
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    sft = """  [stages.sft]
  learning_rate = 1e-2
  max_steps = 3
  per_device_train_batch_size = 4
  gradient_accumulation_steps = 1
"""
    ev = """  [stages.evaluate]
  completions = "model"
  temperature = 0.0
  max_new_tokens = 12
  group_by = "n_people"
"""
    return write(tmp_path / "arms.toml", f"""[experiment]
name = "arms"
seed = 5
[model]
init = {{ config = "tiny.json", seed = 1, tokenizer = "{REPO / 'experiments/quickstart/tokenizer'}" }}
[tasks.kk]
plugin = "knights_knaves"
people = [2, 3]
generate_train = 12
generate_test = 4
generate_names = ["Emma", "Liam", "Olivia"]
prompt = "plain"
[teachers.solver]
plugin = "kk_solver"
[teachers.answer_only]
plugin = "kk_solver"
template = "-\\n</think>\\n<answer>\\n{{answer}}\\n</answer>"
[[stages]]
name = "sft-a"
algorithm = "sft"
tasks = ["kk"]
teachers = ["answer_only"]
eval = {{ split = "train" }}
{sft}
[[stages]]
name = "eval-a"
algorithm = "evaluate"
tasks = ["kk"]
rewards = ["kk_paper"]
{ev}
[[stages]]
name = "sft-b"
algorithm = "sft"
model_from = "experiment"
tasks = ["kk"]
teachers = ["solver"]
eval = {{ split = "train" }}
{sft}
[[stages]]
name = "eval-b"
algorithm = "evaluate"
tasks = ["kk"]
rewards = ["kk_paper"]
{ev}
[[stages]]
name = "eval-a-again"
algorithm = "evaluate"
model_from = "sft-a"
tasks = ["kk"]
rewards = ["kk_paper"]
{ev}
""")


def test_arms_start_from_the_right_models(tmp_path, store):
    r = warmup("run", experiment(tmp_path), "--store", store, timeout=600)
    assert r.returncode == 0, r.stderr
    (run_dir,), = query(store, "SELECT run_dir FROM runs")
    init = f"{run_dir}/model-init"
    assert (REPO / init / "model.safetensors").exists()
    # Both SFT arms load the initial model; each evaluation loads its arm's output.
    loads = re.findall(r"\[([\w-]+)\] loading model (\S+)", r.stderr)
    assert loads == [("sft-a", init), ("eval-a", f"{run_dir}/sft-a/model"), ("sft-b", init),
                     ("eval-b", f"{run_dir}/sft-b/model"), ("eval-a-again", f"{run_dir}/sft-a/model")], r.stderr
    models = dict(query(store, "SELECT name, output_model FROM stages"))
    assert models["sft-a"].endswith("sft-a/model") and models["sft-b"].endswith("sft-b/model")
    assert models["eval-a"] is None
    a = query(store, "SELECT example_id, completion FROM samples WHERE stage = 'eval-a' ORDER BY id")
    a2 = query(store, "SELECT example_id, completion FROM samples WHERE stage = 'eval-a-again' ORDER BY id")
    b = query(store, "SELECT example_id, completion FROM samples WHERE stage = 'eval-b' ORDER BY id")
    assert len(a) == len(b) == 8 and a == a2  # greedy: the same model gives the same completions
    t = warmup("runs", "table", "latest", "--store", store, "--metrics", "eval/kk/n_people=*/count,eval/kk/accuracy")
    assert t.returncode == 0, t.stderr
    lines = t.stdout.splitlines()
    assert lines[0].split() == ["stage", "n_people=2/count", "n_people=3/count", "accuracy"], lines[0]
    assert [l.split()[0] for l in lines[1:]] == ["eval-a", "eval-b", "eval-a-again"]
    assert all(l.split()[1:3] == ["4", "4"] for l in lines[1:])


def test_model_from_must_name_an_earlier_stage(tmp_path, store):
    exp = experiment(tmp_path)
    exp.write_text(exp.read_text().replace('model_from = "sft-a"', 'model_from = "sft-z"'))
    r = warmup("run", exp, "--store", store, "--dry-run")
    assert r.returncode != 0 and "model_from: 'sft-z' is not an earlier stage" in r.stderr, r.stderr
    assert "arms.toml:" in r.stderr


def test_the_committed_quickstart_runs_end_to_end_when_shrunk(tmp_path):
    """experiments/quickstart.toml and quickstart_rlvr.toml themselves (the README's main job), cut
    down with --set to a few puzzles and steps: every stage runs, both arms are evaluated on the
    generated test puzzles with the paper's reward, and each RLVR arm starts from its SFT arm."""
    store = tmp_path / "qs.sqlite"
    shrink = ["--set", "tasks.kk.generate_train=16", "--set", "tasks.kk.generate_test=4"]
    for arm in ("base", "warmup"):
        shrink += ["--set", f"stages.sft-{arm}.sft.max_steps=2", "--set", f"stages.eval-{arm}.evaluate.max_new_tokens=24"]
    r = warmup("run", REPO / "experiments/quickstart.toml", "--store", store, *shrink, timeout=600)
    assert r.returncode == 0, r.stderr
    stages = query(store, "SELECT name, status FROM stages WHERE run_id = 1 ORDER BY idx")
    assert stages == [(s, "finished") for s in ("sft-base", "eval-base", "sft-warmup", "eval-warmup")]
    for stage in ("eval-base", "eval-warmup"):
        assert query(store, "SELECT value FROM metrics WHERE stage = ? AND key = 'eval/kk/n_people=3/count'", stage) == [(4,)]
        assert query(store, "SELECT count(*) FROM samples WHERE stage = ? AND rewards LIKE '%kk_paper%'", stage) == [(4,)]
    rl = []
    for arm in ("base", "warmup"):
        rl += ["--set", f"stages.rl-{arm}.grpo.max_steps=1", "--set", f"stages.rl-{arm}.grpo.max_completion_length=16",
               "--set", f"stages.eval-{arm}-rl.evaluate.max_new_tokens=16", "--set", f"stages.eval-{arm}-sampled.evaluate.max_new_tokens=16"]
    r = warmup("run", REPO / "experiments/quickstart_rlvr.toml", "--store", store, *shrink, *rl, timeout=600)
    assert r.returncode == 0, r.stderr
    (run_dir,), = query(store, "SELECT run_dir FROM runs WHERE id = 2")
    loads = dict(re.findall(r"\[([\w-]+)\] loading model (\S+)", r.stderr))
    # Each arm is evaluated before RL (its SFT model) and after (its RL model) with the paper's
    # protocol; the RL stage starts from the SFT model, which the evaluation before it loaded (a
    # stage reuses the policy of the stage before it while the model path holds).
    for arm in ("base", "warmup"):
        assert loads[f"eval-{arm}-sampled"] == f"{run_dir}/sft-{arm}/model", loads
        assert f"rl-{arm}" not in loads and f"[eval-{arm}-sampled] loading model" in r.stderr
        assert query(store, "SELECT idx FROM stages WHERE run_id = 2 AND name = ?", f"rl-{arm}") == \
            [(query(store, "SELECT idx FROM stages WHERE run_id = 2 AND name = ?", f"eval-{arm}-sampled")[0][0] + 1,)]
        assert loads[f"eval-{arm}-rl"] == f"{run_dir}/rl-{arm}/model", loads
        for stage in (f"eval-{arm}-sampled", f"eval-{arm}-rl"):
            assert query(store, "SELECT count(*) FROM samples WHERE run_id = 2 AND stage = ?", stage) == [(16,)]  # 4 puzzles x 4
