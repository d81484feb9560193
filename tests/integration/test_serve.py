"""`warmup serve` on 127.0.0.1 with a tiny model, driven by a real HTTP client (urllib) from
several threads at once: completions, n, stop, chat, streaming, the OpenAI error shape for bad
requests (the server survives them), and draining on SIGTERM."""
import concurrent.futures
import json
import signal
import time
import urllib.error
import urllib.request

import pytest

from conftest import serve, tiny_model, wait_for, warmup

CONFIG = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 300, "hidden_size": 64,
          "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
          "max_position_embeddings": 512, "tie_word_embeddings": True, "torch_dtype": "float32",
          "initializer_range": 0.3}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("serve"), CONFIG, 3)


@pytest.fixture(scope="module")
def server(model_dir):
    p, base = serve(model_dir, "--max-model-len", "128", "--max-batch", "16")
    yield p, base
    if p.poll() is None:
        p.terminate()
        p.wait(timeout=30)


def call(base, path, body=None, raw=None, timeout=60):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_health_and_models(server):
    _, base = server
    assert call(base, "/health") == (200, '{"status":"ok"}')
    status, body = call(base, "/v1/models")
    m = json.loads(body)
    assert status == 200 and m["data"][0]["id"] == "tiny" and m["data"][0]["max_model_len"] == 128


def test_concurrent_completions_join_the_batch_and_are_deterministic(server, model_dir, tmp_path):
    _, base = server
    prompts = [f"Puzzle {i}: who is a knight?" for i in range(12)]
    body = lambda p: {"model": "tiny", "prompt": p, "max_tokens": 12, "temperature": 0, "n": 2}
    with concurrent.futures.ThreadPoolExecutor(12) as ex:
        results = list(ex.map(lambda p: call(base, "/v1/completions", body(p)), prompts))
    texts = []
    for status, raw in results:
        assert status == 200, raw
        r = json.loads(raw)
        assert r["object"] == "text_completion" and len(r["choices"]) == 2
        assert r["choices"][0]["text"] == r["choices"][1]["text"]  # greedy
        assert r["usage"]["completion_tokens"] == 24 and r["choices"][0]["finish_reason"] == "length"
        texts.append(r["choices"][0]["text"])
    # The same prompts through `warmup generate` give the same greedy text.
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    g = warmup("generate", "--model", model_dir, "--prompts", tmp_path / "p.jsonl", "--out", tmp_path / "o.jsonl",
               "--temperature", "0", "--max-new-tokens", "12")
    assert g.returncode == 0, g.stderr
    ref = [json.loads(l)["completions"][0]["text"] for l in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert texts == ref


def test_sampling_n_seed_and_stop(server):
    _, base = server
    body = {"prompt": "Alice says", "max_tokens": 16, "temperature": 1.0, "top_p": 0.95, "n": 4, "seed": 7}
    a = json.loads(call(base, "/v1/completions", body)[1])
    b = json.loads(call(base, "/v1/completions", body)[1])
    assert [c["text"] for c in a["choices"]] == [c["text"] for c in b["choices"]]  # seeded
    assert len({c["text"] for c in a["choices"]}) > 1
    full = json.loads(call(base, "/v1/completions", {"prompt": "Bob", "max_tokens": 20, "temperature": 0})[1])
    text = full["choices"][0]["text"]
    stop = text[5:7]
    cut = json.loads(call(base, "/v1/completions", {"prompt": "Bob", "max_tokens": 20, "temperature": 0, "stop": [stop]})[1])
    assert cut["choices"][0]["text"] == text[:text.index(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"


def test_chat_and_streaming(server):
    _, base = server
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10, "temperature": 0}
    status, raw = call(base, "/v1/chat/completions", body)
    r = json.loads(raw)
    assert status == 200 and r["object"] == "chat.completion"
    assert r["choices"][0]["message"]["role"] == "assistant"
    req = urllib.request.Request(base + "/v1/chat/completions", data=json.dumps({**body, "stream": True}).encode())
    with urllib.request.urlopen(req, timeout=60) as resp:
        events = [l[6:] for l in resp.read().decode().split("\n") if l.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert streamed == r["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("raw,needle", [
    (b"{not json", "not valid JSON"),
    (json.dumps({"model": "gpt-4", "prompt": "x"}).encode(), "model 'gpt-4' does not exist"),
    (json.dumps({"prompt": "x", "max_tokens": -5}).encode(), "max_tokens must be >= 0"),
    (json.dumps({"prompt": "x" * 400, "max_tokens": 5}).encode(), "max_model_len is 128"),
    (json.dumps({"prompt": "x", "temperature": "hot"}).encode(), "'temperature' has the wrong type"),
    (json.dumps({"prompt": "x", "top_p": 0}).encode(), "top_p must be in (0, 1]"),
    (json.dumps({"max_tokens": 3}).encode(), "'prompt' is required"),
])
def test_bad_requests_get_openai_errors_and_the_server_survives(server, raw, needle):
    p, base = server
    status, body = call(base, "/v1/completions", raw=raw)
    assert status == 400, body
    err = json.loads(body)["error"]
    assert needle in err["message"] and err["type"] == "invalid_request_error"
    assert call(base, "/health")[0] == 200 and p.poll() is None


def test_sigterm_drains_in_flight_requests(model_dir):
    p, base = serve(model_dir, "--threads", "1")
    body = {"prompt": "long", "max_tokens": 500, "temperature": 0, "ignore_eos": True, "n": 64}

    def timed():
        out = call(base, "/v1/completions", body, None, 300)
        return out, time.time()

    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(timed)
        # Signal once the request is being decoded (not by a fixed sleep: the engine may be fast).
        assert wait_for(lambda: metrics(base)["vllm:generation_tokens_total"] > 0, timeout=60, interval=0.005)
        signalled = time.time()
        p.send_signal(signal.SIGTERM)
        (status, raw), answered = fut.result()
    assert status == 200, raw
    assert answered > signalled  # it was in flight when the signal came, and still answered
    choices = json.loads(raw)["choices"]
    assert len(choices) == 64 and all(c["finish_reason"] == "length" for c in choices)
    assert p.wait(timeout=60) == 0


@pytest.mark.parametrize("extra", [
    {"temperature": 1e-45}, {"temperature": 5e-324}, {"temperature": 1e-300, "top_p": 0.5},
    {"repetition_penalty": 1e-45, "temperature": 1.0}, {"repetition_penalty": 1e-45, "temperature": 0},
])
@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions", "stream"])
def test_extreme_sampling_values_fail_only_their_request(server, extra, path):
    """vLLM's rule: temperatures below 1e-5 sample greedily; values whose arithmetic overflows fail
    that request (a JSON error), never the server."""
    p, base = server
    body = {"max_tokens": 6, **extra}
    if path == "/v1/completions":
        body["prompt"] = "Alice says Bob"
    else:
        body["messages"] = [{"role": "user", "content": "Alice says Bob"}]
    if path == "stream":
        body["stream"] = True
        path = "/v1/chat/completions"
    status, raw = call(base, path, body)
    if status == 200 and not body.get("stream"):
        json.loads(raw)
    elif status == 200:
        assert raw.rstrip().endswith("data: [DONE]")
    else:
        assert status == 500 and "not finite" in json.loads(raw)["error"]["message"], raw
    if extra.get("temperature", 1) < 1e-5:  # greedy: the same text as temperature 0
        assert status == 200
        if not body.get("stream"):
            greedy = call(base, path, {**body, "temperature": 0})[1]
            assert json.loads(raw)["choices"][0] == json.loads(greedy)["choices"][0]
    assert call(base, "/health")[0] == 200 and p.poll() is None


def test_a_model_with_nan_weights_fails_requests_not_the_server(tmp_path, model_dir):
    import shutil
    import torch
    from safetensors.torch import load_file, save_file
    bad = tmp_path / "nan"
    shutil.copytree(model_dir, bad)
    w = load_file(bad / "model.safetensors")
    w["model.layers.0.mlp.down_proj.weight"][:] = float("nan")
    save_file(w, bad / "model.safetensors", metadata={"format": "pt"})
    p, base = serve(bad)
    try:
        for body in [{"prompt": "x", "max_tokens": 4, "temperature": 1.0}, {"prompt": "x", "max_tokens": 4, "n": 3, "temperature": 0.7}]:
            status, raw = call(base, "/v1/completions", body)
            assert status == 500 and "not finite" in json.loads(raw)["error"]["message"], raw
        status, raw = call(base, "/v1/completions", {"prompt": "x", "max_tokens": 4, "temperature": 1.0, "stream": True})
        # Either the request failed before the stream started (a 500), or the stream carries the error.
        if status == 500:
            assert "not finite" in json.loads(raw)["error"]["message"], raw
        else:
            assert status == 200 and '"error"' in raw and raw.rstrip().endswith("data: [DONE]"), raw
        assert call(base, "/health")[0] == 200 and p.poll() is None
    finally:
        p.terminate()
        p.wait(timeout=60)


def metrics(base):
    out = {}
    for line in call(base, "/metrics")[1].splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name.split("{")[0]] = float(value)
    return out


def test_dropped_requests_are_cancelled_and_free_their_slots(tmp_path):
    """100 clients (non-streaming and streaming) that go away mid-generation: the engine stops
    their work (vLLM aborts a request on disconnect), so the running count returns to 0 and the
    token counter stops."""
    import socket
    # 100 x 4,000 tokens: far more than can finish before the clients go away, on any machine.
    long_model = tiny_model(tmp_path, {**CONFIG, "max_position_embeddings": 4096}, 3)
    p, base = serve(long_model, "--max-batch", "128")
    port = int(base.rsplit(":", 1)[1])
    try:
        socks = []
        for i in range(100):
            body = json.dumps({"prompt": f"drop {i}", "max_tokens": 4000, "ignore_eos": True, "temperature": 1.0,
                               "stream": i % 2 == 0}).encode()
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            socks.append(s)
        seen = []
        assert wait_for(lambda: seen.append(metrics(base)) or seen[-1]["vllm:num_requests_running"] > 50,
                        timeout=120), seen[-3:]
        for s in socks:
            s.close()
        closed = time.time()
        assert wait_for(lambda: metrics(base)["vllm:num_requests_running"] == 0, timeout=30, interval=0.02)
        freed = time.time() - closed
        print(f"100 dropped requests freed in {freed:.2f} s")
        tokens = metrics(base)["vllm:generation_tokens_total"]
        time.sleep(0.5)
        assert metrics(base)["vllm:generation_tokens_total"] == tokens  # no work goes on
        assert tokens < 100 * 4000  # they did not run to the end
        status, raw = call(base, "/v1/completions", {"prompt": "after", "max_tokens": 4})
        assert status == 200, raw
    finally:
        p.terminate()
        p.wait(timeout=60)


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])


def test_huge_bodies_get_413_and_idle_connections_do_not_block(server):
    import socket
    p, base = server
    port = int(base.rsplit(":", 1)[1])
    assert call(base, "/v1/completions", {"prompt": "warm", "max_tokens": 2})[0] == 200  # first-use allocations
    before = rss_kb(p.pid)
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 268435456\r\n\r\n")
    chunk = b"x" * (1 << 20)
    try:
        for _ in range(256):
            s.sendall(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed without reading the body
    s.settimeout(30)
    try:
        head = s.recv(4096).decode(errors="replace")
    except ConnectionResetError:
        head = ""
    s.close()
    assert head == "" or "413" in head.split("\r\n")[0], head
    assert rss_kb(p.pid) - before < 10 * 1024
    # The same through a real client: the status and the JSON error.
    status, raw = call(base, "/v1/completions", raw=json.dumps({"prompt": "x" * (33 << 20)}).encode())
    assert status == 413 and "limit" in json.loads(raw)["error"]["message"]
    # 64 idle connections do not hold /health up.
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
    t = time.time()
    assert call(base, "/health")[0] == 200
    waited = time.time() - t
    for s in idle:
        s.close()
    assert waited < 5, waited
    assert p.poll() is None
