"""`warmup serve` driven by the official `openai` Python client (PyPI) on loopback, every field
checked against a reference: raw log-probs and alternatives against transformers' forward pass on
the same model directory, streamed results against the non-streamed call, penalties and
logit_bias against OpenAI's documented formula applied to transformers' logits, and every request
field the client documents (its TypedDicts) either honoured or refused with a 400 naming it."""
import json
import typing

import openai
import pytest
import torch
from openai.types import completion_create_params
from openai.types.chat import completion_create_params as chat_create_params
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import serve, tiny_model, warmup

CONFIG = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 300, "hidden_size": 64,
          "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
          "max_position_embeddings": 256, "tie_word_embeddings": True, "torch_dtype": "float32",
          "initializer_range": 0.3}
TOL = 1e-4


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("oai"), CONFIG, 11)


@pytest.fixture(scope="module")
def server(model_dir):
    p, base = serve(model_dir, "--max-batch", "16")
    yield p, base
    p.terminate()
    p.wait(timeout=60)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[1] + "/v1", api_key="none", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def hf(model_dir):
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    return model, tok


def raw_logprobs(model, ids):
    """log_softmax of the model's logits at every position: (T, V)."""
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)


def test_models_reports_the_models_positions(client):
    m = client.models.list().data[0]
    assert m.id == "tiny" and m.model_extra["max_model_len"] == CONFIG["max_position_embeddings"]


def test_completion_logprobs_echo_and_alternatives_match_transformers(client, hf):
    model, tok = hf
    prompt = [5, 77, 104, 101, 108, 108, 111, 32, 200, 31]
    r = client.completions.create(model="tiny", prompt=prompt, max_tokens=6, temperature=0, logprobs=3, echo=True,
                                  extra_body={"ignore_eos": True})
    c = r.choices[0]
    lp = c.logprobs
    P = len(prompt)
    assert len(lp.tokens) == P + 6 and lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    gen = []
    for t in range(6):  # greedy continuation from transformers
        ref = raw_logprobs(model, prompt + gen)
        gen.append(int(ref[-1].argmax()))
    ref = raw_logprobs(model, prompt + gen)
    ids = prompt + gen
    for i in range(1, P + 6):
        want = ref[i - 1]
        assert abs(lp.token_logprobs[i] - want[ids[i]].item()) < TOL, i
        top = torch.topk(want, 3)
        # Keys are token strings: the top 3, plus the chosen token when it is not among them; on
        # equal strings (e.g. partial UTF-8 shown as U+FFFD) the more likely token's value stays.
        expect = {}
        for v, t in zip(top.values.tolist(), top.indices.tolist()):
            expect.setdefault(tok.decode([t]), v)
        expect.setdefault(tok.decode([ids[i]]), want[ids[i]].item())
        got = lp.top_logprobs[i]
        assert got.keys() == expect.keys(), i
        assert max(abs(got[k] - expect[k]) for k in got) < TOL, i
    # The text is the prompt's text then the completion's; text_offset walks the token strings.
    assert c.text == tok.decode(prompt) + tok.decode(gen)
    offs = [0]
    for s in lp.tokens[:-1]:
        offs.append(offs[-1] + len(s))
    assert lp.text_offset == offs
    assert r.usage.prompt_tokens == P and r.usage.completion_tokens == 6


def test_echo_with_max_tokens_zero_scores_the_prompt_only(client, hf):
    """lm-evaluation-harness's loglikelihood request shape (echo, logprobs 1, max_tokens 0 or 1)."""
    model, _ = hf
    prompts = [[3, 70, 71, 72, 73, 74], [9, 200, 201]]
    r = client.completions.create(model="tiny", prompt=prompts, max_tokens=0, temperature=0, logprobs=1, echo=True)
    assert [c.index for c in r.choices] == [0, 1]
    for ids, c in zip(prompts, r.choices):
        ref = raw_logprobs(model, ids)
        got = c.logprobs.token_logprobs
        assert len(got) == len(ids) and got[0] is None
        assert max(abs(got[i] - ref[i - 1][ids[i]].item()) for i in range(1, len(ids))) < TOL
        # is_greedy as lm-eval computes it: the chosen log-prob equals the best alternative's
        for i in range(1, len(ids)):
            assert (abs(got[i] - max(c.logprobs.top_logprobs[i].values())) < 1e-6) == (int(ref[i - 1].argmax()) == ids[i])
    assert r.usage.completion_tokens == 0 and r.usage.prompt_tokens == 9


def test_list_prompts_and_n_order_choices_prompt_major(client):
    single = [client.completions.create(model="tiny", prompt=p, max_tokens=5, temperature=0).choices[0].text
              for p in ["Alice", "Bob says"]]
    r = client.completions.create(model="tiny", prompt=["Alice", "Bob says"], max_tokens=5, temperature=0, n=2)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    assert [c.text for c in r.choices] == [single[0], single[0], single[1], single[1]]


def collect(stream):
    chunks = list(stream)
    return chunks


@pytest.mark.parametrize("chat", [False, True])
def test_streaming_equals_the_non_streamed_call(client, chat):
    kw = dict(model="tiny", max_tokens=24, temperature=1.0, top_p=0.9, n=2, seed=123, stop=["zz", "\n\n"])
    if chat:
        msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who is a knight?"}]
        full = client.chat.completions.create(messages=msgs, logprobs=True, top_logprobs=2, **kw)
        chunks = collect(client.chat.completions.create(messages=msgs, logprobs=True, top_logprobs=2, stream=True,
                                                        stream_options={"include_usage": True}, **kw))
    else:
        full = client.completions.create(prompt="Knights and knaves:", logprobs=2, **kw)
        chunks = collect(client.completions.create(prompt="Knights and knaves:", logprobs=2, stream=True,
                                                   stream_options={"include_usage": True}, **kw))
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert all(c.usage is None for c in chunks[:-1])
    assert usage.model_dump() == full.usage.model_dump()
    for choice in full.choices:
        mine = [c.choices[0] for c in chunks[:-1] if c.choices[0].index == choice.index]
        finish = [m.finish_reason for m in mine if m.finish_reason]
        assert finish == [choice.finish_reason]
        if chat:
            assert mine[0].delta.role == "assistant"
            assert "".join(m.delta.content or "" for m in mine) == choice.message.content
            entries = [e for m in mine if m.logprobs for e in m.logprobs.content]
            want = choice.logprobs.content
            assert [e.token for e in entries] == [e.token for e in want]
            assert [e.bytes for e in entries] == [e.bytes for e in want]
            assert max(abs(a.logprob - b.logprob) for a, b in zip(entries, want)) < 1e-5
            assert [[t.token for t in e.top_logprobs] for e in entries] == [[t.token for t in e.top_logprobs] for e in want]
            assert all(len(e.top_logprobs) == 2 for e in entries)
        else:
            assert "".join(m.text for m in mine) == choice.text
            lp = [m.logprobs for m in mine if m.logprobs]
            assert sum((l.tokens for l in lp), []) == choice.logprobs.tokens
            # The second call finds the prompt's first block in the prefix cache and computes the
            # rest after it: the same values up to float rounding, not bit for bit.
            got = sum((l.token_logprobs for l in lp), [])
            assert len(got) == len(choice.logprobs.token_logprobs)
            assert max(abs(a - b) for a, b in zip(got, choice.logprobs.token_logprobs)) < 1e-5
            assert sum((l.text_offset for l in lp), []) == choice.logprobs.text_offset
            tops = sum((l.top_logprobs for l in lp), [])
            assert [sorted(t) for t in tops] == [sorted(t) for t in choice.logprobs.top_logprobs]
            assert all(abs(t[k] - w[k]) < 1e-5 for t, w in zip(tops, choice.logprobs.top_logprobs) for k in t)


def test_streamed_echo_carries_the_prompt_and_its_logprobs(client):
    kw = dict(model="tiny", prompt=[4, 90, 91, 92], max_tokens=3, temperature=0, logprobs=1, echo=True)
    full = client.completions.create(**kw).choices[0]
    chunks = collect(client.completions.create(stream=True, **kw))
    assert "".join(c.choices[0].text for c in chunks) == full.text
    assert sum((c.choices[0].logprobs.token_logprobs for c in chunks if c.choices[0].logprobs), []) == \
        full.logprobs.token_logprobs


def test_chat_logprob_entries_have_bytes_and_alternatives(client, hf):
    model, tok = hf
    msgs = [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "there"}]}]
    r = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=5, temperature=0, logprobs=True,
                                       top_logprobs=3, extra_body={"ignore_eos": True})
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi\nthere"}], add_generation_prompt=True,
                                     tokenize=False) if tok.chat_template else None
    entries = r.choices[0].logprobs.content
    assert len(entries) == 5
    for e in entries:
        assert e.bytes is not None and len(e.top_logprobs) == 3
        assert e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob >= e.top_logprobs[2].logprob
        assert e.top_logprobs[0].logprob == e.logprob  # greedy: the chosen token is the best
    assert r.usage.prompt_tokens > 3
    del prompt


def greedy_with_penalties(model, prompt, steps, presence, frequency, bias):
    """OpenAI's documented formula (platform.openai.com, 'parameter details'):
    mu[j] -> mu[j] - c[j] * frequency_penalty - float(c[j] > 0) * presence_penalty, plus logit_bias,
    with c[j] the count of token j in the completion so far."""
    out = []
    for _ in range(steps):
        with torch.no_grad():
            logits = model(torch.tensor([prompt + out])).logits[0, -1].float().clone()
        for t, b in bias.items():
            logits[t] += b
        counts = torch.bincount(torch.tensor(out, dtype=torch.long), minlength=logits.numel()).float() if out else \
            torch.zeros_like(logits)
        logits -= counts * frequency + (counts > 0).float() * presence
        out.append(int(logits.argmax()))
    return out


@pytest.mark.parametrize("presence,frequency,bias", [
    (1.5, 0.0, {}), (0.0, 1.2, {}), (0.7, 0.9, {"40": 3.5, "41": -100}), (-2.0, 0.0, {}),
])
def test_penalties_and_logit_bias_follow_openais_formula(client, hf, presence, frequency, bias):
    model, _ = hf
    prompt = [12, 40, 41, 40, 41, 99]
    plain = client.completions.create(model="tiny", prompt=prompt, max_tokens=24, temperature=0,
                                      extra_body={"ignore_eos": True}, logprobs=0)
    r = client.completions.create(model="tiny", prompt=prompt, max_tokens=24, temperature=0, presence_penalty=presence,
                                  frequency_penalty=frequency, logit_bias=bias, extra_body={"ignore_eos": True},
                                  logprobs=0)
    want = greedy_with_penalties(model, prompt, 24, presence, frequency, {int(k): v for k, v in bias.items()})
    ref_plain = greedy_with_penalties(model, prompt, 24, 0, 0, {})
    _, tok = hf
    got = r.choices[0].logprobs.tokens
    assert got == [tok.decode([t]) if t < len(tok) else "" for t in want]
    assert plain.choices[0].logprobs.tokens == [tok.decode([t]) if t < len(tok) else "" for t in ref_plain]
    assert want != ref_plain  # the setting changes the output, so the comparison means something


def test_min_tokens_keeps_eos_away(client, hf, model_dir):
    _, tok = hf
    eos = tok.eos_token_id
    r = client.completions.create(model="tiny", prompt="x", max_tokens=20, temperature=0, logit_bias={str(eos): 100})
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens == 1
    r = client.completions.create(model="tiny", prompt="x", max_tokens=20, temperature=0, logit_bias={str(eos): 100},
                                  extra_body={"min_tokens": 5})
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens == 6


# Values for each documented field: one the server honours or one it must refuse by name.
SAMPLE = {
    "audio": {"voice": "alloy", "format": "mp3"}, "best_of": 3, "echo": True, "frequency_penalty": 0.5,
    "function_call": "auto", "functions": [{"name": "f", "parameters": {}}], "logit_bias": {"5": 1.0},
    "logprobs": 2, "max_completion_tokens": 3, "max_tokens": 3, "metadata": {"k": "v"}, "modalities": ["text", "audio"],
    "n": 2, "parallel_tool_calls": True, "prediction": {"type": "content", "content": "x"}, "presence_penalty": 0.5,
    "moderation": {"enabled": True}, "prompt_cache_key": "k", "prompt_cache_options": {"ttl": "1h"},
    "prompt_cache_retention": "24h", "reasoning_effort": "low",
    "response_format": {"type": "json_object"}, "safety_identifier": "u1", "seed": 3, "service_tier": "flex",
    "stop": ["q"], "store": True, "stream": False, "stream_options": {"include_usage": True}, "suffix": "end",
    "temperature": 0.5, "tool_choice": "auto", "tools": [{"type": "function", "function": {"name": "f"}}],
    "top_logprobs": 2, "top_p": 0.5, "user": "u1", "verbosity": "low",
    "web_search_options": {"search_context_size": "low"},
}
# Fields the server must honour with the values above (the rest must be refused by name).
HONOURED = {"echo", "frequency_penalty", "logit_bias", "logprobs", "max_completion_tokens", "max_tokens", "metadata",
            "n", "parallel_tool_calls", "presence_penalty", "prompt_cache_key", "safety_identifier", "seed", "stop",
            "stream", "temperature", "top_logprobs", "top_p", "user"}


@pytest.mark.parametrize("chat", [False, True])
def test_every_documented_request_field_is_honoured_or_refused_by_name(server, chat):
    import urllib.error
    import urllib.request
    _, base = server
    params = (chat_create_params if chat else completion_create_params).CompletionCreateParamsBase
    fields = set(typing.get_type_hints(params, include_extras=False).keys())
    required = {"messages", "model"} if chat else {"prompt", "model"}
    assert required <= fields and len(fields) > 15  # the client's schema is what we walk
    base_body = {"model": "tiny", "max_tokens": 2, "temperature": 0}
    base_body.update({"messages": [{"role": "user", "content": "hi"}]} if chat else {"prompt": "hi"})
    path = "/v1/chat/completions" if chat else "/v1/completions"
    seen = []
    for f in sorted(fields - required):
        assert f in SAMPLE, f"the openai client documents a new field '{f}': give it a sample value and decide"
        body = dict(base_body)
        body[f] = SAMPLE[f]
        if f == "stream_options":
            body["stream"] = True
        if f == "top_logprobs":
            body["logprobs"] = True
        if f == "max_completion_tokens":
            del body["max_tokens"]
        if f == "logprobs" and chat:
            body["logprobs"] = True
        req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                status, raw = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read().decode()
        if f in HONOURED or f == "stream_options":
            assert status == 200, (f, raw)
        else:
            assert status == 400, (f, raw)
            err = json.loads(raw)["error"]
            assert err["param"] == f and f in err["message"], (f, err)
        seen.append(f)
    assert len(seen) == len(fields - required)


def test_unknown_and_unhonourable_values_are_refused(client):
    cases = [
        (dict(prompt="x", max_tokens=2, extra_body={"guided_json": {}}), "guided_json"),
        (dict(prompt="x", max_tokens=2, logprobs=21), "logprobs"),
        (dict(prompt="x", max_tokens=300), "max_tokens"),
        (dict(prompt="x", max_tokens=2, presence_penalty=2.5), "presence_penalty"),
        (dict(prompt="x", max_tokens=2, logit_bias={"7": 101}), "logit_bias"),
        (dict(prompt="x", max_tokens=2, logit_bias={"9999": 1}), "logit_bias"),
        (dict(prompt="x", max_tokens=2, stream_options={"include_usage": True}), "stream_options"),
    ]
    for kw, param in cases:
        with pytest.raises(openai.BadRequestError) as e:
            client.completions.create(model="tiny", **kw)
        assert e.value.body["param"] == param, (kw, e.value.body)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x", "name": "bob"}])
    assert "messages[0].name" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], top_logprobs=2)
    assert e.value.body["param"] == "top_logprobs"


def test_tokenize_and_detokenize_match_the_tokenizer(server, hf):
    import urllib.request
    _, base = server
    _, tok = hf

    def post(path, body):
        req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    text = "Knights and knaves: Alice says Bob lies."
    t = post("/tokenize", {"prompt": text})
    assert t["tokens"] == tok(text)["input_ids"] and t["count"] == len(t["tokens"]) and t["max_model_len"] == 256
    assert post("/detokenize", {"tokens": t["tokens"]})["prompt"] == text


def test_max_model_len_above_the_models_positions_is_refused(model_dir):
    r = warmup("serve", "--model", model_dir, "--port", "0", "--max-model-len", "1000", timeout=60)
    assert r.returncode == 2, r.stderr
    assert "--max-model-len 1000 is more than the model's 256 positions" in r.stderr
    assert "config.json max_position_embeddings" in r.stderr
