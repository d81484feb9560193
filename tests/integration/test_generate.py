"""`warmup generate` against transformers' generate (the oracle): greedy completions of tiny
random Qwen2 and Llama models are token-identical for a batch of prompts of different lengths
decoded together (continuous batching with a small batch limit)."""
import json
import re

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

from conftest import warmup

COMMON = dict(vocab_size=320, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
CONFIGS = {"qwen2": lambda: Qwen2Config(**COMMON, tie_word_embeddings=True),
           "llama": lambda: LlamaConfig(**COMMON, tie_word_embeddings=False)}


def random_model(name, seed, tmp_path):
    """A random transformers model saved to tmp_path/m with a tokenizer warmup can load."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(CONFIGS[name]()).eval()
    with torch.no_grad():  # larger weights: less degenerate, more varied greedy paths
        for p in model.parameters():
            p.mul_(6.0)
    model.save_pretrained(tmp_path / "m")
    # warmup needs a tokenizer in the directory; the prompts are token ids, so any will do.
    r = warmup("model", "init", "--config", tmp_path / "m/config.json", "--out", tmp_path / "tok")
    assert r.returncode == 0, r.stderr
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        (tmp_path / "m" / f).write_bytes((tmp_path / "tok" / f).read_bytes())
    return model


@pytest.mark.parametrize("name", list(CONFIGS))
def test_greedy_matches_transformers_generate(name, tmp_path):
    model = random_model(name, 99, tmp_path)

    g = torch.Generator().manual_seed(5)
    lengths = [1, 7, 23, 64, 3, 40, 12, 5]
    prompts = [torch.randint(0, 320, (n,), generator=g).tolist() for n in lengths]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"prompt_token_ids": p}) + "\n" for p in prompts))
    r = warmup("generate", "--model", tmp_path / "m", "--prompts", tmp_path / "p.jsonl", "--out", tmp_path / "o.jsonl",
               "--temperature", "0", "--max-new-tokens", "32", "--ignore-eos", "--max-batch", "3",
               "--block-size", "8", "--logprobs")
    assert r.returncode == 0, r.stderr
    ours = [json.loads(l) for l in (tmp_path / "o.jsonl").read_text().splitlines()]
    distinct = set()
    for p, o in zip(prompts, ours):
        with torch.no_grad():
            out = model.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                                 do_sample=False, max_new_tokens=32, min_new_tokens=32, eos_token_id=None,
                                 pad_token_id=0, output_scores=True, return_dict_in_generate=True)
        ref = out.sequences[0, len(p):].tolist()
        got = o["completions"][0]
        assert got["token_ids"] == ref, (len(p), got["token_ids"], ref)
        assert got["finish_reason"] == "length"
        ref_lp = [torch.log_softmax(s[0].float(), -1)[t].item() for s, t in zip(out.scores, ref)]
        assert max(abs(a - b) for a, b in zip(got["logprobs"], ref_lp)) < 1e-3
        distinct.add(tuple(ref))
    assert len(distinct) > 4  # the comparison is not between trivially identical outputs


def test_32_prompts_in_one_call_with_prefix_caching_and_chunked_prefill(tmp_path):
    """32 prompts of different lengths, many sharing a 48-token prefix and some repeated whole, in
    one call with a 64-token step budget (long prompts prefilled in chunks, mixed with decode
    tokens) and prefix caching on: greedy output is token-identical to transformers, and the
    prefix cache was used."""
    model = random_model("qwen2", 98, tmp_path)
    g = torch.Generator().manual_seed(6)
    shared = torch.randint(0, 320, (48,), generator=g).tolist()
    prompts = []
    for i in range(32):
        tail = torch.randint(0, 320, (int(torch.randint(1, 90, (1,), generator=g)),), generator=g).tolist()
        if i % 4 == 0:
            prompts.append(tail)                      # unrelated
        elif i % 4 == 3:
            prompts.append(list(prompts[i - 1]))      # a repeat of the previous prompt
        else:
            prompts.append(shared + tail)             # the shared prefix, then its own part
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"prompt_token_ids": p}) + "\n" for p in prompts))
    r = warmup("generate", "--model", tmp_path / "m", "--prompts", tmp_path / "p.jsonl", "--out", tmp_path / "o.jsonl",
               "--temperature", "0", "--max-new-tokens", "24", "--ignore-eos", "--max-num-seqs", "32",
               "--max-num-batched-tokens", "64", "--block-size", "8")
    assert r.returncode == 0, r.stderr
    hits = re.search(r"prefix-cache hits ([\d.]+)% of (\d+) prompt tokens", r.stderr)
    assert hits and float(hits.group(1)) > 10, r.stderr
    ours = [json.loads(l) for l in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert len(ours) == 32
    for p, o in zip(prompts, ours):
        with torch.no_grad():
            out = model.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                                 do_sample=False, max_new_tokens=24, min_new_tokens=24, eos_token_id=None,
                                 pad_token_id=0)
        assert o["completions"][0]["token_ids"] == out[0, len(p):].tolist(), len(p)
