"""SFT end to end on a tiny model: K&K solver traces (kk_solver teacher), a training loss that
falls, held-out eval loss, checkpoints, the trained model handed to the next stage (which samples
from it), and a run stopped at step k and resumed matching an uninterrupted run's losses."""
import json
import signal

from conftest import REPO, query, spawn, wait_for, warmup, write

CONFIG = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 260, "hidden_size": 64,
          "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
          "max_position_embeddings": 2048, "tie_word_embeddings": True, "torch_dtype": "float32"}


def setup(tmp_path, steps=40):
    (tmp_path / "tiny.json").write_text(json.dumps(CONFIG))
    assert warmup("model", "init", "--config", tmp_path / "tiny.json", "--out", tmp_path / "tiny", "--seed", "1").returncode == 0
    data = REPO / "plugins/knights_knaves/tests/data"
    return write(tmp_path / "sft.toml", f"""[experiment]
name = "sft-test"
seed = 3
[model]
path = "{tmp_path / 'tiny'}"
[tasks.knights_knaves]
data_dir = "{data}"
people = [3]
limit_per_size = 10
[[stages]]
name = "warmup"
algorithm = "sft"
tasks = ["knights_knaves"]
teachers = ["kk_solver"]
  [stages.sft]
  learning_rate = 3e-3
  warmup_steps = 2
  max_steps = {steps}
  per_device_train_batch_size = 2
  gradient_accumulation_steps = 2
  max_grad_norm = 1.0
  max_length = 2048
  eval_examples = 2
  eval_steps = 10
  save_steps = 10
[[stages]]
name = "sample"
algorithm = "evaluate"
tasks = ["knights_knaves"]
rewards = {{ kk_paper = 1.0 }}
eval = {{ split = "test", limit = 3 }}
  [stages.evaluate]
  completions = "model"
  max_new_tokens = 16
""")


def losses(store, run=1):
    return [v for (v,) in query(store, "SELECT value FROM metrics WHERE run_id = ? AND key = 'train/loss' ORDER BY step", run)]


def test_sft_trains_checkpoints_and_hands_over_the_model(tmp_path, store):
    exp = setup(tmp_path)
    r = warmup("run", exp, "--store", store, timeout=900)
    assert r.returncode == 0, r.stderr
    l = losses(store)
    assert len(l) == 40
    assert sum(l[-5:]) / 5 < 0.8 * sum(l[:5]) / 5  # it learns
    assert [s for (s,) in query(store, "SELECT step FROM metrics WHERE key = 'eval/loss' ORDER BY step")] == [10, 20, 30, 40]
    assert query(store, "SELECT value FROM metrics WHERE key = 'data/sequences'") == [(10.0,)]
    (model_dir,), = query(store, "SELECT path FROM artifacts WHERE name = 'model'")
    assert (REPO / model_dir / "model.safetensors").exists()
    assert query(store, "SELECT count(*) FROM samples WHERE stage = 'sample'") == [(3,)]
    (run_dir,), = query(store, "SELECT run_dir FROM runs")
    assert (REPO / run_dir / "checkpoints/warmup/step-20/optimizer.pt").exists()


def stop_resume_and_compare(exp, store, tmp_path, steps):
    """Runs `exp` uninterrupted, then again stopped by SIGTERM after step 12 or later and resumed:
    the resumed run's losses equal the uninterrupted run's (1e-5)."""
    ref_store = tmp_path / "ref.sqlite"
    assert warmup("run", exp, "--store", ref_store, timeout=900).returncode == 0
    ref = losses(ref_store)
    p = spawn("run", exp, "--store", store)
    assert wait_for(lambda: len(losses(store)) >= 12, timeout=300)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=120)
    assert p.returncode == 143
    stopped_at = len(losses(store))
    assert 12 <= stopped_at < steps
    r = warmup("run", "--resume", "1", "--store", store, timeout=900)
    assert r.returncode == 0, r.stderr
    got = losses(store)
    assert len(got) == steps
    assert max(abs(a - b) for a, b in zip(got, ref)) < 1e-5, (got, ref)


def test_stopped_and_resumed_sft_matches_an_uninterrupted_run(tmp_path, store):
    stop_resume_and_compare(setup(tmp_path, steps=60), store, tmp_path, 60)


def test_sft_reads_the_distill_output_of_the_same_run(tmp_path, store):
    setup(tmp_path)
    data = REPO / "plugins/knights_knaves/tests/data"
    exp = write(tmp_path / "chain.toml", f"""[experiment]
name = "distill-then-sft"
[model]
path = "{tmp_path / 'tiny'}"
[tasks.knights_knaves]
data_dir = "{data}"
people = [3]
limit_per_size = 4
[[stages]]
name = "distill"
algorithm = "distill"
tasks = ["knights_knaves"]
teachers = ["kk_solver"]
rewards = {{ kk_paper = 1.0 }}
eval = {{ split = "train" }}
[[stages]]
name = "sft"
algorithm = "sft"
  [stages.sft]
  data = "{{run_dir}}/sft.jsonl"
  max_steps = 2
  max_length = 2048
""")
    r = warmup("run", exp, "--store", store, timeout=600)
    assert r.returncode == 0, r.stderr
    assert query(store, "SELECT value FROM metrics WHERE key = 'data/sequences'") == [(4.0,)]


def test_paper_warmup_config_resolves():
    r = warmup("run", "experiments/paper/warmup_qwen2.5-3b.toml", "--dry-run")
    assert r.returncode == 2 and "path /models/Qwen2.5-3B does not exist" in r.stderr, r.stderr
    assert "task 'knights_knaves' split 'train'" in r.stderr and "/data/kk" in r.stderr, r.stderr
    assert "qwq_kk_traces" not in r.stderr  # written by the run's distill stage: not checked
    assert "learning_rate = 9.9999999999999995e-07" in r.stdout and 'model = "Qwen/QwQ-32B"' in r.stdout


def test_bf16_autocast_trains_with_float32_weights(tmp_path, store):
    exp = setup(tmp_path, steps=20)
    ref_store = tmp_path / "ref.sqlite"
    assert warmup("run", exp, "--store", ref_store, timeout=900).returncode == 0
    r = warmup("run", exp, "--store", store, "--set", "stages.warmup.sft.bf16=true", timeout=900)
    assert r.returncode == 0, r.stderr
    ref, got = losses(ref_store), losses(store)
    assert len(got) == 20
    assert abs(got[0] - ref[0]) < 0.02 * ref[0]          # same loss up to bf16 rounding
    assert got != ref                                     # but not the float32 computation
    assert sum(got[-5:]) / 5 < 0.8 * sum(got[:5]) / 5     # it learns
    (model_dir,), = query(store, "SELECT path FROM artifacts WHERE name = 'model'")
    assert json.loads((REPO / model_dir / "config.json").read_text())["torch_dtype"] == "float32"


def test_logging_steps_and_trl_only_options(tmp_path, store):
    exp = setup(tmp_path, steps=6)
    r = warmup("run", exp, "--store", store, "--set", "stages.warmup.sft.logging_steps=2")
    assert r.returncode == 0, r.stderr
    steps = [l.split("step ")[1].split(" |")[0] for l in r.stderr.splitlines() if "| loss " in l]
    assert steps == ["1/6", "2/6", "4/6", "6/6"], steps  # every 2nd, the first and the last
    assert all(("ETA " in l or "| done" in l) for l in r.stderr.splitlines() if "| loss " in l)
    for key, says in (("report_to", "run store"), ("use_vllm", "own engine")):
        r = warmup("run", exp, "--store", store, "--dry-run", "--set", f"stages.warmup.sft.{key}=\"wandb\"")
        assert r.returncode == 2 and key in r.stderr and says in r.stderr, r.stderr


# ---- TRL's conversational formats (issue 19 item 4) ----------------------------------------------

import os  # noqa: E402
from pathlib import Path  # noqa: E402

QWEN_TOK = Path(os.environ.get("WARMUP_QWEN_TOKENIZER", REPO / "build/tests/fixtures/qwen3"))

MESSAGES = [
    {"messages": [{"role": "system", "content": "You are a logician."},
                  {"role": "user", "content": "Who is a knight?"},
                  {"role": "assistant", "content": "Zoey is a knight and Oliver is a knave."}]},
    {"messages": [{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "4"},
                  {"role": "user", "content": "Und 3 × 3 — auf Deutsch? 你好 🙂"},
                  {"role": "assistant", "content": "Neun.\n\nNine."}]},
    {"messages": [{"role": "user", "content": "Think first."},
                  {"role": "assistant", "content": "<think>\nLet me see.\n</think>\n\nDone."}]},
]
PROMPT_COMPLETION = [
    {"prompt": [{"role": "user", "content": "Who is a knight?"}],
     "completion": [{"role": "assistant", "content": "Zoey is a knight."}]},
    {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Solve: x + 1 = 3"}],
     "completion": [{"role": "assistant", "content": "<think>\nx = 2\n</think>\n\n\\boxed{2}"}]},
    {"prompt": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}],
     "completion": [{"role": "assistant", "content": "  spaced  \t out  "}]},
]


def trl_tokenised(rows, tmp_path):
    """TRL's own tokenisation: an SFTTrainer over `rows` on a tiny Qwen3 with the Qwen3 tokenizer;
    its train_dataset holds input_ids and labels (-100 where no loss applies)."""
    from datasets import Dataset
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM
    from trl import SFTConfig, SFTTrainer
    tok = AutoTokenizer.from_pretrained(QWEN_TOK)
    model = Qwen3ForCausalLM(Qwen3Config(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, head_dim=8))
    args = SFTConfig(output_dir=str(tmp_path / "trl"), report_to=[], max_length=None, save_strategy="no", use_cpu=True,
                     bf16=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    return [dict(r) for r in trainer.train_dataset]


def ours_tokenised(rows, tmp_path, name):
    data = write(tmp_path / f"{name}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    r = warmup("tokenize", "--tokenizer", QWEN_TOK, "--sft", data)
    assert r.returncode == 0, r.stderr
    return [json.loads(l) for l in r.stdout.splitlines()]


def test_conversational_rows_tokenise_as_trl_does(tmp_path):
    for name, rows in (("messages", MESSAGES), ("prompt_completion", PROMPT_COMPLETION)):
        trl, ours = trl_tokenised(rows, tmp_path), ours_tokenised(rows, tmp_path, name)
        assert len(trl) == len(ours) == len(rows)
        for t, o in zip(trl, ours):
            assert o["input_ids"] == t["input_ids"], name
            # TRL folds its masks into `labels` (-100: no loss): every token of `messages` rows,
            # the completion of prompt-completion rows (completion_only_loss).
            labels = [i if m else -100 for i, m in zip(o["input_ids"], o["completion_mask"])]
            assert labels == t["labels"], name
        if name == "prompt_completion":
            assert all(0 < sum(o["completion_mask"]) < len(o["input_ids"]) for o in ours)


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_sft_trains_on_conversational_data_and_names_bad_rows(tmp_path, store):
    exp = setup(tmp_path, steps=6)
    rows = [{"prompt": [{"role": "user", "content": f"{i} + {i}?"}],
             "completion": [{"role": "assistant", "content": f"{2 * i}"}]} for i in range(6)]
    rows += [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}]
    write(tmp_path / "chat.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    text = exp.read_text().replace('tasks = ["knights_knaves"]\nteachers = ["kk_solver"]', "") \
        .replace("  learning_rate = 3e-3", f'  data = "{tmp_path / "chat.jsonl"}"\n  learning_rate = 3e-3') \
        .replace("  eval_examples = 2\n", "")
    exp.write_text(text)
    r = warmup("run", exp, "--store", store, "--dry-run")
    assert r.returncode == 0, r.stderr
    r = warmup("run", exp, "--store", store, timeout=900)  # the tiny model has no chat template
    assert r.returncode != 0 and "has no chat template" in r.stderr, r.stderr
    (tmp_path / "tiny" / "chat_template.jinja").write_text(CHATML)
    r = warmup("run", exp, "--store", store, timeout=900)
    assert r.returncode == 0, r.stderr
    assert query(store, "SELECT value FROM metrics WHERE run_id = 2 AND key = 'data/sequences'") == [(7.0,)]
    write(tmp_path / "chat.jsonl", json.dumps({"prompt": [{"role": "user"}], "completion": []}) + "\n")
    r = warmup("run", exp, "--store", store)
    assert r.returncode == 2 and "chat.jsonl:1: prompt[0]: missing 'content'" in r.stderr, r.stderr


# ---- assistant_only_loss (issue 19 item 4) ---------------------------------------------------------

# A template with its own markers, whitespace control around them and the end-of-turn token inside.
MARKED = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
          "{% if m['role'] == 'assistant' %}  {%- generation -%}  \n{{ m['content'] }}<|im_end|>{%- endgeneration %}"
          "{% else %}{{ m['content'] }}<|im_end|>{% endif %}\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tokenizer_with(tmp_path, name, template):
    """The Qwen3 tokenizer files with `template` as their chat template (and a BOS token, which
    Llama 3's and DeepSeek's templates print)."""
    d = tmp_path / name
    d.mkdir()
    (d / "tokenizer.json").write_bytes((QWEN_TOK / "tokenizer.json").read_bytes())
    cfg = json.loads((QWEN_TOK / "tokenizer_config.json").read_text())
    cfg["chat_template"] = template
    cfg["bos_token"] = "<|endoftext|>"
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    return d


def trl_assistant_only(rows, tok_dir, tmp_path):
    """TRL's SFTTrainer(assistant_only_loss=True) train_dataset; raises what TRL raises."""
    from datasets import Dataset
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM
    from trl import SFTConfig, SFTTrainer
    tok = AutoTokenizer.from_pretrained(tok_dir)
    model = Qwen3ForCausalLM(Qwen3Config(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, head_dim=8))
    args = SFTConfig(output_dir=str(tmp_path / "trl"), report_to=[], max_length=None, save_strategy="no", use_cpu=True,
                     bf16=False, assistant_only_loss=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    return [dict(r) for r in trainer.train_dataset]


def test_assistant_only_loss_tokenises_as_trl_does(tmp_path):
    """Token ids and labels equal TRL's for each template TRL ships a training variant of that we
    vendor (TRL swaps it in, and so must we), and for a template with its own {% generation %}
    markers, whitespace control and a {% set %} inside the block; a template TRL cannot patch is
    refused by both."""
    import pytest
    from trl import chat_template_utils as ctu
    multi = [{"messages": [{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "4"},
                           {"role": "user", "content": "Und 3 × 3 — auf Deutsch? 你好 🙂"},
                           # not NFC ("e" + combining acute): Qwen's tokenizer normalises it
                           {"role": "assistant", "content": "Neun, Cafe\u0301.\n\nNine. 🙂"}]}]
    # an empty block at the top level whose {% set %} must not leak out of it (Jinja's for loops
    # scope their own sets, so this is the case that tells)
    marked = "{% set tail = '' %}" + MARKED + \
        "{% if not add_generation_prompt %}{% generation %}{% set tail = 'LEAK' %}{% endgeneration %}{% endif %}{{ tail }}"
    cases = [(name, getattr(ctu, name + "_chat_template"))
             for name in ("qwen2_5", "qwen3", "qwen3_instruct_2507", "llama3", "deepseek_r1_distill")]
    cases.append(("marked", marked))
    # the end-of-turn token outside the block: both TRL and we warn that the model never learns to stop
    cases.append(("eot_outside", MARKED.replace("<|im_end|>{%- endgeneration %}", "{%- endgeneration %}<|im_end|>")))
    assert cases[-1][1] != MARKED
    warned = {}
    for name, template in cases:
        tok_dir = tokenizer_with(tmp_path, name, template)
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(tok_dir)
        trl_trained = ctu.is_chat_template_stop_token_trained(tok, chat_template=ctu.get_training_chat_template(tok))
        for kind, rows in (("messages", MESSAGES + multi), ("prompt_completion", PROMPT_COMPLETION)):
            trl = trl_assistant_only(rows, tok_dir, tmp_path)
            data = write(tmp_path / f"{name}-{kind}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            r = warmup("tokenize", "--tokenizer", tok_dir, "--sft", data, "--assistant-only-loss")
            assert r.returncode == 0, (name, r.stderr)
            warned[name] = "end-of-turn token out of its {% generation %} block" in r.stderr
            assert warned[name] == (not trl_trained), (name, r.stderr)
            ours = [json.loads(l) for l in r.stdout.splitlines()]
            assert len(ours) == len(trl) == len(rows)
            for t, o in zip(trl, ours):
                assert o["input_ids"] == t["input_ids"], (name, kind)
                labels = [i if m else -100 for i, m in zip(o["input_ids"], o["completion_mask"])]
                assert labels == t["labels"], (name, kind)
                # only assistant turns: fewer trained tokens than without the option, never none
                assert 0 < sum(o["completion_mask"]) < len(o["input_ids"]), (name, kind)
            if kind == "messages":  # the multi-turn row trains on both assistant turns, not the user turn between
                o = ours[-1]
                runs = sum(1 for a, b in zip([0] + o["completion_mask"], o["completion_mask"]) if b and not a)
                assert runs == 2, (name, o["completion_mask"])
    assert warned["eot_outside"] and not warned["marked"] and not warned["qwen2_5"], warned
    # A template without markers that TRL ships no training variant of (the Qwen3 fixture's older one).
    tok_dir = tokenizer_with(tmp_path, "unknown", json.loads((QWEN_TOK / "tokenizer_config.json").read_text())["chat_template"])
    assert not ctu.has_generation_markers(open(tok_dir / "tokenizer_config.json").read())
    data = write(tmp_path / "q3.jsonl", json.dumps(MESSAGES[0]) + "\n")
    with pytest.raises(ValueError, match="patching is not supported"):
        trl_assistant_only(MESSAGES[:1], tok_dir, tmp_path)
    r = warmup("tokenize", "--tokenizer", tok_dir, "--sft", data, "--assistant-only-loss")
    assert r.returncode == 2 and "tokenizer_config.json: chat_template: assistant_only_loss needs {% generation %}" \
        in r.stderr and "not one TRL ships a training version of" in r.stderr, r.stderr
    # Non-conversational rows are refused, as TRL refuses them.
    data = write(tmp_path / "text.jsonl", json.dumps({"prompt": "a", "completion": "b"}) + "\n")
    r = warmup("tokenize", "--tokenizer", tok_dir, "--sft", data, "--assistant-only-loss")
    assert r.returncode == 2 and "text.jsonl:1: assistant_only_loss applies to conversational rows" in r.stderr, r.stderr


def test_sft_trains_with_assistant_only_loss(tmp_path, store):
    """A run with assistant_only_loss trains only on assistant tokens: its first loss equals the
    mean NLL of exactly the assistant-masked tokens, which differs from the loss without it."""
    exp = setup(tmp_path, steps=3)
    # assistant turns of very different lengths (one byte-level token per character): the step's loss
    # is the mean over all its trained tokens, not a mean of per-micro-batch means
    rows = [{"messages": [{"role": "user", "content": f"{i} + {i}?"}, {"role": "assistant", "content": f"{i}" * (1 + 9 * i)},
                          {"role": "user", "content": "and then?"}, {"role": "assistant", "content": f"{i + 5}"}]}
            for i in range(4)]
    write(tmp_path / "chat.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    text = exp.read_text().replace('tasks = ["knights_knaves"]\nteachers = ["kk_solver"]', "") \
        .replace("  learning_rate = 3e-3", f'  data = "{tmp_path / "chat.jsonl"}"\n  assistant_only_loss = true\n'
                 "  bf16 = false\n  learning_rate = 3e-3").replace("  eval_examples = 2\n", "")
    exp.write_text(text)
    (tmp_path / "tiny" / "chat_template.jinja").write_text(CHATML)  # no markers, not TRL's: refused, nothing trained
    r = warmup("run", exp, "--store", store, timeout=900)
    assert r.returncode == 2 and "chat_template.jinja: assistant_only_loss needs {% generation %}" in r.stderr, r.stderr
    assert query(store, "SELECT status FROM runs WHERE id = 1") == [("failed",)]
    assert query(store, "SELECT count(*) FROM metrics WHERE run_id = 1 AND key = 'train/loss'") == [(0,)]
    (tmp_path / "tiny" / "chat_template.jinja").write_text(MARKED)
    r = warmup("run", exp, "--store", store, timeout=900)
    assert r.returncode == 0, r.stderr
    r = warmup("run", exp, "--store", store, "--set", "stages.warmup.sft.assistant_only_loss=false", timeout=900)
    assert r.returncode == 0, r.stderr
    loss = {run: query(store, f"SELECT value FROM metrics WHERE run_id = {run} AND key = 'train/loss' ORDER BY step")
            for run in (2, 3)}
    assert len(loss[2]) == len(loss[3]) == 3 and loss[2][0] != loss[3][0]
    # The first step's loss from the masks `warmup tokenize` prints, with the initial model in transformers.
    import torch
    from transformers import AutoModelForCausalLM
    masks = [json.loads(l) for l in warmup("tokenize", "--tokenizer", tmp_path / "tiny", "--sft", tmp_path / "chat.jsonl",
                                            "--assistant-only-loss").stdout.splitlines()]
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "tiny", dtype=torch.float32)
    nll, n = 0.0, 0
    for m in masks:
        ids = torch.tensor([m["input_ids"]])
        with torch.no_grad():
            logp = model(ids).logits[0, :-1].log_softmax(-1).gather(1, ids[0, 1:, None])[:, 0]
        w = torch.tensor(m["completion_mask"][1:], dtype=torch.float32)
        nll -= float((logp * w).sum())
        n += int(w.sum())
        assert 0 < w.sum() < len(w)
    # 4 rows, batch 2 x accumulation 2: the first step sees every row, with the initial weights, and
    # its loss is the pooled mean (transformers' num_items_in_batch)
    assert abs(loss[2][0][0] - nll / n) < 1e-4 * abs(nll / n), (loss[2][0][0], nll / n)
