"""lm-evaluation-harness (PyPI, test time only) against `warmup serve`: its `local-completions`
backend scores a small multiple-choice task through /v1/completions (echo, logprobs 1, max_tokens 1
on token-id prompts) and must get the same per-choice log-likelihoods and greedy flags as its `hf`
backend on the same model directory; its generate_until path must produce the same greedy text."""
import json
import os

import pytest

from conftest import serve, tiny_model

lm_eval = pytest.importorskip("lm_eval")

CONFIG = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 300, "hidden_size": 64,
          "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
          "max_position_embeddings": 512, "tie_word_embeddings": True, "torch_dtype": "float32",
          "initializer_range": 0.3}

QUESTIONS = [
    ("Alice says Bob is a knave. Bob says Alice is a knight. Who is a knight?", ["Alice", "Bob", "both", "neither"], 0),
    ("2 + 2 =", [" 4", " 5", " 22"], 0),
    ("The capital of France is", [" Paris", " Rome", " Berlin", " Madrid"], 0),
    ("Knights always tell the truth; knaves always", [" lie", " sleep", " sing"], 0),
    ("def f(x): return x *", [" 2", " x", "(x)"], 1),
    ("Zoe: 'I am a knave.' This statement is", [" a paradox", " true", " false"], 0),
]
GEN_PROMPTS = ["Once upon a time", "Q: Who is a knight?\nA:", "x = 1; y =", "Alice says"]


def write_tasks(d):
    with open(d / "mc.jsonl", "w") as f:
        for q, c, a in QUESTIONS:
            f.write(json.dumps({"question": q, "choices": c, "answer": a}) + "\n")
    with open(d / "gen.jsonl", "w") as f:
        for p in GEN_PROMPTS:
            f.write(json.dumps({"question": p, "answer": "x"}) + "\n")
    (d / "tiny_mc.yaml").write_text(f"""task: tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {d / 'mc.jsonl'}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
""")
    (d / "tiny_gen.yaml").write_text(f"""task: tiny_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {d / 'gen.jsonl'}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n\\n", "zz"]
  max_gen_toks: 12
  do_sample: false
metric_list:
  - metric: exact_match
""")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("lmeval")
    write_tasks(d)
    p, base = serve(tiny_model(d, CONFIG, 5))
    yield d, base
    p.terminate()
    p.wait(timeout=60)


def evaluate(model, model_args, tasks, d):
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    out = simple_evaluate(model=model, model_args=model_args, tasks=tasks, task_manager=TaskManager(include_path=str(d)),
                          log_samples=True, batch_size=1, device="cpu")
    return {t: sorted(out["samples"][t], key=lambda s: s["doc_id"]) for t in tasks}


def test_local_completions_equals_the_hf_backend(setup):
    d, base = setup
    hf = evaluate("hf", f"pretrained={d / 'tiny'},dtype=float32", ["tiny_mc", "tiny_gen"], d)
    api = evaluate("local-completions",
                   f"model=tiny,base_url={base}/v1/completions,tokenizer={d / 'tiny'},tokenizer_backend=huggingface,"
                   "max_retries=1,max_length=512", ["tiny_mc", "tiny_gen"], d)
    # Multiple choice: one (log-likelihood, is_greedy) per choice, equal within 1e-4.
    assert len(hf["tiny_mc"]) == len(QUESTIONS) == len(api["tiny_mc"])
    greedy = 0
    for a, b in zip(hf["tiny_mc"], api["tiny_mc"]):
        ra, rb = [r[0] for r in a["resps"]], [r[0] for r in b["resps"]]
        assert len(ra) == len(rb) == len(QUESTIONS[a["doc_id"]][1])
        for (ll_a, g_a), (ll_b, g_b) in zip(ra, rb):
            assert abs(float(ll_a) - float(ll_b)) < 1e-4, (a["doc_id"], ll_a, ll_b)
            assert bool(g_a) == bool(g_b)
            greedy += bool(g_a)
        assert a["acc"] == b["acc"]
    assert len({round(float(r[0][0]), 3) for s in hf["tiny_mc"] for r in s["resps"]}) > 10  # not all equal
    # generate_until: the same greedy continuations, cut at the same stop strings.
    texts_hf = [s["resps"][0][0] for s in hf["tiny_gen"]]
    texts_api = [s["resps"][0][0] for s in api["tiny_gen"]]
    assert texts_api == texts_hf
    assert any(t for t in texts_hf)
