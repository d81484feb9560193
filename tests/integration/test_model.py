"""Model parity with transformers (the oracle): tiny random Qwen2, Llama and Qwen3 models created
by transformers with a fixed seed; our logits on a left-padded batch of prompts of different
lengths match within 1e-4 in fp32, greedy next tokens are identical, the chunked token log-probs
equal log_softmax, and what we save loads back in transformers with the same logits."""
import json
import random
import struct
import subprocess
import time

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
    expect("garbage", "exceeds the limit of 100000000 bytes")
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


# ---- hostile model files: refused up front, exit 2, one line naming the file, within 5 s --------

TINY_CONFIG = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", **COMMON, "tie_word_embeddings": True}


def refused(*args, needle):
    """Runs warmup, which must exit 2 within 5 s with one error line containing `needle`."""
    start = time.monotonic()
    r = warmup(*args, timeout=5)
    assert time.monotonic() - start < 5
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert needle in lines[0], lines[0]
    return lines[0]


def st_bytes(header, data=0, n=None):
    h = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h) if n is None else n) + h + b"\0" * data


def st_entry(dtype, shape, offsets):
    return {"dtype": dtype, "shape": shape, "data_offsets": offsets}


HOSTILE_SAFETENSORS = {
    "shape_2^62x4": (st_bytes({"w": st_entry("F32", [2**62, 4], [0, 0])}), "has more than 2^63 elements"),
    "shape_2^62": (st_bytes({"w": st_entry("F32", [2**62], [0, 0])}), "needs more than 2^64 bytes"),
    "offsets_past_eof": (st_bytes({"w": st_entry("F32", [4], [0, 16])}, 8), "data ends at byte 16"),
    "span_not_shape": (st_bytes({"w": st_entry("F32", [3], [0, 8])}, 8), "F32 shape [3] needs 12"),
    "overlap": (st_bytes({"a": st_entry("F32", [2], [0, 8]), "b": st_entry("F32", [2], [4, 12])}, 12), "overlaps"),
    "gap": (st_bytes({"a": st_entry("F32", [1], [0, 4]), "b": st_entry("F32", [1], [8, 12])}, 12), "(a gap)"),
    "trailing": (st_bytes({"a": st_entry("F32", [1], [0, 4])}, 12), "(trailing bytes)"),
    "negative_dim": (st_bytes({"w": st_entry("F32", [-1], [0, 4])}, 4), "must be a non-negative integer"),
    "header_len_2^62": (st_bytes(b"{}", 0, 2**62), "exceeds the limit of 100000000 bytes"),
    "header_len_past_file": (st_bytes(b"{}", 0, 1000), "exceeds the file"),
    "metadata_number": (st_bytes({"__metadata__": {"format": 1}}), "must be a string"),
}


@pytest.mark.parametrize("name", list(HOSTILE_SAFETENSORS))
def test_hostile_safetensors_refused_as_the_reference_refuses_them(name, tmp_path):
    from safetensors import safe_open
    data, needle = HOSTILE_SAFETENSORS[name]
    (tmp_path / "config.json").write_text(json.dumps(TINY_CONFIG))
    f = tmp_path / "model.safetensors"
    f.write_bytes(data)
    with pytest.raises(Exception):  # the oracle: the safetensors library refuses it
        with safe_open(f, framework="pt") as st:
            list(st.keys())
    line = refused("model", "info", tmp_path, needle=needle)
    assert f"{f}: " in line


def test_safetensors_the_reference_refuses_we_refuse(tmp_path):
    """Random edits of a real header's numbers and brackets: whatever the safetensors library
    refuses, `warmup model info` refuses with exit 2; what it accepts, we read (every edit keeps
    the dtypes, all of which we support)."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    good = tmp_path / "good.safetensors"
    save_file({"a": torch.ones(3, 5), "b": torch.zeros(7, dtype=torch.bfloat16), "c": torch.ones(0, 2)}, good)
    raw = good.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = raw[8:8 + n].decode()
    (tmp_path / "m").mkdir()
    (tmp_path / "m/config.json").write_text(json.dumps(TINY_CONFIG))
    f = tmp_path / "m/model.safetensors"
    rng = random.Random(20251130)
    refused_by_both = 0
    for i in range(40):
        h = list(header)
        for _ in range(rng.randint(1, 3) if i > 0 else 0):  # 0: the file as saved
            digits = [k for k, c in enumerate(h) if c.isdigit()]
            k = rng.choice(digits)
            h[k] = rng.choice("0123456789" * 3 + "-]")
        body = "".join(h).encode()
        data = raw[8 + n:] + (b"\0" * (rng.choice([0, 0, 4, 64]) if i > 0 else 0))
        f.write_bytes(len(body).to_bytes(8, "little") + body + data)
        try:
            with safe_open(f, framework="pt") as st:
                list(st.keys())
            ok = True
        except Exception:
            ok = False
        r = warmup("model", "info", tmp_path / "m", timeout=5)
        assert r.returncode == (0 if ok else 2), (i, body, r.stderr)
        if not ok:
            assert r.stderr.count("\n") == 1 and str(f) in r.stderr, r.stderr
            refused_by_both += 1
    assert 0 < refused_by_both < 40


def test_hostile_index_and_config_refused(tmp_path):
    make_hf_model("qwen2", tmp_path / "hf")
    import shutil

    def variant(name, config=None):
        d = tmp_path / name
        shutil.copytree(tmp_path / "hf", d)
        if config is not None:
            (d / "config.json").write_text(json.dumps(config))
        return d

    # A sharded checkpoint whose weight_map names a non-string.
    d = variant("index")
    (d / "model.safetensors").rename(d / "model-00001-of-00001.safetensors")
    index = {"metadata": {}, "weight_map": {"model.norm.weight": 7}}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    refused("model", "logits", d, "--text", "hi",
            needle=f"{d}/model.safetensors.index.json: weight_map 'model.norm.weight' must be a shard file name")
    cfg = json.loads((tmp_path / "hf/config.json").read_text())
    cases = {
        "layers": ({"num_hidden_layers": 10**9}, '"num_hidden_layers" is 1000000000, must be an integer in 1..1024'),
        "vocab": ({"vocab_size": 10**12}, '"vocab_size" is 1000000000000, must be an integer in 1..16777216'),
        "head_dim": ({"head_dim": -16}, '"head_dim" is -16, must be an integer in 2..1024'),
        "divisible": ({"hidden_size": 66, "head_dim": None}, "hidden_size 66 is not divisible by num_attention_heads 4"),
        "kv_heads": ({"num_key_value_heads": 3}, "num_attention_heads 4 must be a multiple of num_key_value_heads 3"),
        "deeper": ({"num_hidden_layers": 1000}, "checkpoint has no tensor 'model.layers.2.self_attn.q_proj.weight'"),
        "wider": ({"hidden_size": 65536, "intermediate_size": 2**20, "head_dim": 16},
                  "tensor 'model.embed_tokens.weight' has shape [320, 64] but the config needs [320, 65536]"),
    }
    for name, (change, needle) in cases.items():
        d = variant(name, {**cfg, **change})
        line = refused("model", "logits", d, "--text", "hi", needle=needle)
        if name not in ("deeper", "wider"):
            assert f"{d}/config.json: " in line, line
    # model init has no checkpoint to bound it: the machine's memory does.
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps({**TINY_CONFIG, "vocab_size": 2**24, "hidden_size": 65536, "head_dim": 64,
                                "num_hidden_layers": 1024, "intermediate_size": 2**20}))
    refused("model", "init", "--config", huge, "--out", tmp_path / "never", needle=f"{huge}: a model of")
    assert not (tmp_path / "never").exists()
