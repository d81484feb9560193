"""Model parity with transformers (the oracle): tiny random Qwen2, Llama and Qwen3 models created
by transformers with a fixed seed; our logits on a left-padded batch of prompts of different
lengths match within 1e-4 in fp32, greedy next tokens are identical, the chunked token log-probs
equal log_softmax, and what we save loads back in transformers with the same logits."""
import json
import subprocess

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config, Qwen3Config

from conftest import WARMUP, warmup

COMMON = dict(vocab_size=320, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6)

CONFIGS = {
    "qwen2": lambda: Qwen2Config(**COMMON, rope_theta=10000.0, tie_word_embeddings=True),
    "qwen2_untied": lambda: Qwen2Config(**COMMON, rope_theta=1e6, tie_word_embeddings=False),
    "llama": lambda: LlamaConfig(**COMMON, rope_theta=500000.0, tie_word_embeddings=False),
    "llama3_rope": lambda: LlamaConfig(**COMMON, rope_theta=500000.0, tie_word_embeddings=True, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64}),
    "qwen3": lambda: Qwen3Config(**COMMON, head_dim=32, rope_theta=1e6, tie_word_embeddings=True),
}


def make_hf_model(name, path):
    torch.manual_seed(1234)
    model = AutoModelForCausalLM.from_config(CONFIGS[name](), attn_implementation="eager").eval()
    # Random biases and norms too (transformers initialises them to 0 and 1), so they are tested.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith(".bias") or "norm" in n:
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(path)
    return model


def left_padded_batch():
    g = torch.Generator().manual_seed(7)
    lengths = [9, 3, 14, 1]
    T = max(lengths)
    ids = torch.zeros(len(lengths), T, dtype=torch.long)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, T - n:] = torch.randint(0, 320, (n,), generator=g)
        mask[i, T - n:] = 1
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    return ids, mask, pos


def ours(model_dir, tmp_path, ids, mask, pos, chunk=5):
    batch = tmp_path / "batch.json"
    batch.write_text(json.dumps({"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "position_ids": pos.tolist()}))
    out = tmp_path / "out.safetensors"
    r = warmup("model", "logits", model_dir, "--batch", batch, "--out", out, "--chunk", chunk)
    assert r.returncode == 0, r.stderr
    return load_file(out)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_match_transformers(name, tmp_path):
    hf = make_hf_model(name, tmp_path / "hf")
    ids, mask, pos = left_padded_batch()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()
    got = ours(tmp_path / "hf", tmp_path, ids, mask, pos)
    valid = mask.bool()
    diff = (got["logits"] - ref).abs()[valid]
    assert diff.max().item() <= 1e-4, diff.max().item()
    assert torch.equal(got["logits"].argmax(-1)[valid], ref.argmax(-1)[valid])  # greedy next tokens
    # Chunked log-probs of the next token equal log_softmax of the full logits.
    targets = torch.roll(ids, -1, 1)
    ref_lp = torch.log_softmax(ref, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    lp_valid = valid.clone()
    lp_valid[:, -1] = False
    assert (got["token_logprobs"] - ref_lp).abs()[lp_valid].max().item() <= 1e-4


@pytest.mark.parametrize("name", ["qwen2", "llama", "qwen3"])
def test_saved_checkpoint_loads_in_transformers(name, tmp_path):
    hf = make_hf_model(name, tmp_path / "hf")
    ids, mask, pos = left_padded_batch()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    # Resave through our writer, sharded to force model.safetensors.index.json.
    r = warmup("model", "convert", tmp_path / "hf", "--out", tmp_path / "ours", "--shard-size", "60KB")
    assert r.returncode == 0, r.stderr
    index = json.loads((tmp_path / "ours/model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "ours", attn_implementation="eager").eval()
    with torch.no_grad():
        again = back(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    assert torch.equal(again, ref)
    # And our loader reads the sharded copy to the same logits.
    got = ours(tmp_path / "ours", tmp_path, ids, mask, pos)
    assert (got["logits"] - ref).abs()[mask.bool()].max().item() <= 1e-4


def test_bf16_convert_and_info(tmp_path):
    make_hf_model("qwen2", tmp_path / "hf")
    r = warmup("model", "convert", tmp_path / "hf", "--out", tmp_path / "bf16", "--dtype", "bf16")
    assert r.returncode == 0, r.stderr
    info = json.loads(warmup("model", "info", tmp_path / "bf16", "--json").stdout)
    assert info["architecture"] == "Qwen2ForCausalLM" and set(info["dtypes"]) == {"BF16"}
    hf32 = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    assert info["parameters"] == sum(p.numel() for p in hf32.parameters())
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "bf16")
    assert next(back.parameters()).dtype == torch.bfloat16
    for (n, a), (_, b) in zip(hf32.named_parameters(), back.named_parameters()):
        assert torch.equal(a.to(torch.bfloat16), b), n


def test_model_init_writes_a_loadable_hf_directory(tmp_path):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", **COMMON,
                               "tie_word_embeddings": True, "torch_dtype": "float32"}))
    r = warmup("model", "init", "--config", cfg, "--out", tmp_path / "m", "--seed", 5)
    assert r.returncode == 0, r.stderr
    r2 = warmup("model", "init", "--config", cfg, "--out", tmp_path / "m2", "--seed", 5)
    assert (tmp_path / "m/model.safetensors").read_bytes() == (tmp_path / "m2/model.safetensors").read_bytes()
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    std = hf.model.layers[0].mlp.up_proj.weight.std().item()
    assert 0.015 < std < 0.025  # initializer_range 0.02
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    text = "Knights & knaves: héllo 🎉 <|im_end|>"
    ids = tok(text)["input_ids"]
    r = subprocess.run([WARMUP, "tokenize", "--tokenizer", tmp_path / "m"], input=text, capture_output=True, text=True)
    assert json.loads(r.stdout) == ids
    assert tok.decode(ids) == text
    t = torch.tensor([ids])
    with torch.no_grad():
        ref = hf(input_ids=t).logits
    got = ours(tmp_path / "m", tmp_path, t, torch.ones_like(t), torch.arange(t.shape[1]).unsqueeze(0))
    assert (got["logits"] - ref).abs().max().item() <= 1e-4


def test_corrupt_checkpoints_fail_cleanly(tmp_path):
    make_hf_model("qwen2", tmp_path / "hf")
    st = (tmp_path / "hf/model.safetensors").read_bytes()

    def expect(dirname, needle):
        r = warmup("model", "logits", tmp_path / dirname, "--text", "hi")
        assert r.returncode == 2, (r.returncode, r.stderr)
        assert needle in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1  # one line

    import shutil
    def variant(name, data=None, config=None):
        d = tmp_path / name
        shutil.copytree(tmp_path / "hf", d)
        if data is not None:
            (d / "model.safetensors").write_bytes(data)
        if config is not None:
            (d / "config.json").write_text(json.dumps(config))
        return d

    variant("truncated", st[: len(st) // 2])
    expect("truncated", "(truncated?)")
    variant("tiny", st[:5])
    expect("tiny", "truncated safetensors file")
    n = int.from_bytes(st[:8], "little")
    header = json.loads(st[8:8 + n])
    first = next(k for k in header if k != "__metadata__")
    header[first]["data_offsets"][1] += 4  # lying offsets
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    variant("lying", len(h).to_bytes(8, "little") + h + st[8 + n:])
    expect("lying", f"tensor '{first}'")
    header = json.loads(st[8:8 + n])
    header[first]["dtype"] = "I32"  # dtype mismatch (same byte size as F32)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    variant("dtype", len(h).to_bytes(8, "little") + h + st[8 + n:])
    expect("dtype", "has dtype I32, expected F32, BF16 or F16")
    variant("garbage", b"\xff" * 8 + b"x" * 100)
    expect("garbage", "exceeds the file")
    cfg = json.loads((tmp_path / "hf/config.json").read_text())
    variant("arch", config={**cfg, "architectures": ["GPTNeoXForCausalLM"]})
    expect("arch", "unknown architecture 'GPTNeoXForCausalLM'")
    variant("shape", config={**cfg, "hidden_size": 32})
    expect("shape", "has shape")
    d = variant("missing_shard")
    (d / "model.safetensors").unlink()
    (d / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {first: "model-00001-of-00002.safetensors"}}))
    expect("missing_shard", "shard model-00001-of-00002.safetensors is missing")
