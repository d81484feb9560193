"""LoRA (TRL's use_peft / lora_* options) end to end: SFT trains adapters on a tiny model and
saves them in PEFT's format; PEFT (from PyPI, the oracle) loads them on the base model and gives
our logits; `warmup model merge` writes a model transformers loads with the same logits; a stopped
LoRA run resumes exactly; GRPO with LoRA raises the mean reward of a warmed-up tiny model."""
import json

from conftest import REPO, query, warmup, write
from test_grpo import experiment as grpo_experiment, series
from test_sft import losses, setup as sft_setup, stop_resume_and_compare

LORA = """  use_peft = true
  lora_r = 8
  lora_alpha = 16
  lora_target_modules = {targets}
"""


def lora_sft(tmp_path, steps=20, targets='["all-linear"]'):
    exp = sft_setup(tmp_path, steps=steps)
    exp.write_text(exp.read_text().replace("  max_steps =", LORA.format(targets=targets) + "  max_steps =", 1)
                   .replace("learning_rate = 3e-3", "learning_rate = 1e-2"))
    return exp


def our_logits(model_dir, ids, tmp_path):
    from safetensors.numpy import load_file
    batch = write(tmp_path / "batch.json", json.dumps({"input_ids": ids}))
    out = tmp_path / "ours.safetensors"
    r = warmup("model", "logits", model_dir, "--batch", batch, "--out", out)
    assert r.returncode == 0, r.stderr
    return load_file(str(out))["logits"]


def test_lora_sft_saves_a_peft_adapter_that_peft_loads_with_our_logits(tmp_path, store):
    import numpy as np
    import torch
    from peft import PeftModel
    from safetensors.numpy import load_file
    from transformers import AutoModelForCausalLM

    r = warmup("run", lora_sft(tmp_path), "--store", store, timeout=900)
    assert r.returncode == 0, r.stderr
    assert "LoRA r=8 on 14 linear layers" in r.stderr, r.stderr  # all-linear: 7 per layer, 2 layers
    l = losses(store)
    # The adapters learn (the frozen embeddings of this from-scratch model bound how far: ~5.2 nats)
    assert len(l) == 20 and sum(l[-5:]) / 5 < l[0] - 0.2, l
    (adapter,), = query(store, "SELECT path FROM artifacts WHERE name = 'model'")
    adapter = REPO / adapter
    assert (adapter / "adapter_config.json").exists() and not (adapter / "model.safetensors").exists()
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg["r"] == 8 and cfg["lora_alpha"] == 16 and cfg["peft_type"] == "LORA"
    assert sorted(cfg["target_modules"]) == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    assert len(tensors) == 28
    b = tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"]
    assert b.shape == (64, 8) and np.abs(b).max() > 1e-4  # trained (B starts at zero)
    # The evaluate stage after it sampled from the adapter (the base with it merged).
    assert query(store, "SELECT count(*) FROM samples WHERE stage = 'sample'") == [(3,)]

    ids = [[5, 17, 99, 3, 42, 7, 250, 11], [1, 2, 3, 4, 5, 6, 7, 8]]
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "tiny", dtype=torch.float32)
    peft = PeftModel.from_pretrained(base, adapter).eval()
    with torch.no_grad():
        theirs = peft(torch.tensor(ids)).logits.numpy()
    ours = our_logits(adapter, ids, tmp_path)
    assert np.abs(ours - theirs).max() < 1e-4
    with peft.disable_adapter(), torch.no_grad():
        plain = peft(torch.tensor(ids)).logits.numpy()
    assert np.abs(plain - theirs).max() > 1e-3  # the adapter changes the logits: the comparison can fail

    # warmup model merge: a plain Hugging Face model, PEFT's merge_and_unload's weights and logits.
    r = warmup("model", "merge", adapter, "--out", tmp_path / "merged")
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "merged/adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32).eval()
    with torch.no_grad():
        assert np.abs(merged(torch.tensor(ids)).logits.numpy() - theirs).max() < 1e-4
    ref = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tmp_path / "tiny", dtype=torch.float32),
                                    adapter).merge_and_unload().state_dict()
    mine = merged.state_dict()
    assert max(float((mine[k] - v).abs().max()) for k, v in ref.items()) < 1e-6
    # Wherever a model directory is taken, the adapter directory is its base with it merged.
    prompts = write(tmp_path / "prompts.jsonl", '{"prompt": "Is Liam a knight"}\n{"prompt": "A very"}\n')
    outs = []
    for model in (adapter, tmp_path / "merged"):
        r = warmup("generate", "--model", model, "--prompts", prompts, "--out", tmp_path / "g.jsonl",
                   "--temperature", "0", "--max-new-tokens", "6")
        assert r.returncode == 0, r.stderr
        outs.append([json.loads(x)["completions"][0]["token_ids"] for x in (tmp_path / "g.jsonl").read_text().splitlines()])
    assert outs[0] == outs[1]
    exp = write(tmp_path / "eval.toml", (tmp_path / "sft.toml").read_text().split("[[stages]]")[0].replace(
        f'path = "{tmp_path / "tiny"}"', f'path = "{adapter}"') + """[[stages]]
name = "sample"
algorithm = "evaluate"
tasks = ["knights_knaves"]
rewards = { kk_paper = 1.0 }
eval = { split = "test", limit = 2 }
  [stages.evaluate]
  completions = "model"
  max_new_tokens = 4
""")
    r = warmup("run", exp, "--store", tmp_path / "e.sqlite", timeout=600)
    assert r.returncode == 0, r.stderr
    bad = warmup("model", "merge", tmp_path / "tiny", "--out", tmp_path / "m2")
    assert bad.returncode != 0 and "not a PEFT adapter directory" in bad.stderr, bad.stderr


def test_lora_options_are_checked_and_recorded(tmp_path, store):
    r = warmup("run", lora_sft(tmp_path, steps=2, targets='["nope_proj"]'), "--store", store, timeout=600)
    assert r.returncode != 0 and "lora_target_modules (nope_proj) matches no linear layer" in r.stderr, r.stderr
    exp = sft_setup(tmp_path, steps=2)
    exp.write_text(exp.read_text().replace("  max_steps =", "  lora_r = 4\n  max_steps =", 1))
    r = warmup("run", exp, "--store", tmp_path / "b.sqlite", "--dry-run")
    assert r.returncode == 2 and "lora_r needs use_peft = true" in r.stderr, r.stderr
    # A regular expression (PEFT's string form) targets the first layer's attention only.
    r = warmup("run", lora_sft(tmp_path, steps=2, targets='"model\\\\.layers\\\\.0\\\\.self_attn\\\\..*"'),
               "--store", tmp_path / "c.sqlite", timeout=600)
    assert r.returncode == 0, r.stderr
    assert "LoRA r=8 on 4 linear layers" in r.stderr, r.stderr
    (adapter,), = query(tmp_path / "c.sqlite", "SELECT path FROM artifacts WHERE name = 'model'")
    cfg = json.loads((REPO / adapter / "adapter_config.json").read_text())
    assert cfg["target_modules"] == "model\\.layers\\.0\\.self_attn\\..*"
    import tomllib
    r = warmup("run", lora_sft(tmp_path, steps=2), "--store", tmp_path / "d.sqlite", "--dry-run")
    assert r.returncode == 0, r.stderr
    sft = tomllib.loads(r.stdout)["stages"][0]["sft"]  # the resolved config, as recorded in the store
    assert sft["use_peft"] is True and sft["lora_r"] == 8 and sft["lora_alpha"] == 16
    assert sft["lora_dropout"] == 0.05 and sft["lora_target_modules"] == ["all-linear"] and sft["use_rslora"] is False


def test_stopped_and_resumed_lora_sft_matches_an_uninterrupted_run(tmp_path, store):
    """The adapters and their optimizer state are the checkpoint; lora_dropout's masks are drawn
    from a generator seeded per step, so the resumed run draws the same ones."""
    stop_resume_and_compare(lora_sft(tmp_path, steps=40), store, tmp_path, 40)


def test_grpo_with_lora_raises_the_mean_reward(tmp_path, store):
    """GRPO with LoRA on a warmed-up tiny model (30 full-parameter SFT steps on K&K traces, then
    the "knight" reward of integration.grpo). From scratch, LoRA cannot raise it: the model's
    random hidden states give the adapters no direction that favours one token, and the frozen
    (tied) embeddings are what the full-parameter run moves."""
    exp = grpo_experiment(tmp_path, steps=40)
    cfg = json.loads((tmp_path / "tiny.json").read_text())
    cfg["max_position_embeddings"] = 2048  # the K&K traces
    (tmp_path / "tiny.json").write_text(json.dumps(cfg))
    warm = f"""[tasks.knights_knaves]
data_dir = "{REPO / 'plugins/knights_knaves/tests/data'}"
people = [3]
limit_per_size = 10
[[stages]]
name = "warm"
algorithm = "sft"
tasks = ["knights_knaves"]
teachers = ["kk_solver"]
  [stages.sft]
  learning_rate = 3e-3
  max_steps = 30
  per_device_train_batch_size = 4
  max_length = 2048
[[stages]]
name = "rl"
"""
    exp.write_text(exp.read_text().replace('[[stages]]\nname = "rl"\n', warm, 1)
                   .replace("  max_steps = 40", LORA.format(targets='["all-linear"]') + "  max_steps = 40", 1))
    r = warmup("run", exp, "--store", store, timeout=900)
    assert r.returncode == 0, r.stderr
    assert "[rl] grpo: LoRA r=8 on 14 linear layers" in r.stderr, r.stderr
    reward = [v for _, v in series(store, "train/reward")]
    assert len(reward) == 40
    first, last = sum(reward[:5]) / 5, sum(reward[-20:]) / 20
    assert last > first + 0.1, reward  # measured +0.23 here (the full-parameter run: +2.7, see the note)
    (adapter,), = query(store, "SELECT path FROM artifacts WHERE name = 'model' AND stage = 'rl'")
    assert (REPO / adapter / "adapter_model.safetensors").exists()
