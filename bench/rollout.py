"""RL rollout throughput on a real trained model (issue 16): `warmup generate` as a whole process
(model load included) vs transformers `generate(num_return_sequences=N)` with the model already
loaded, in useful tokens/s: the tokens of each completion up to and including its EOS, never the
padding after it.

Workload (the defaults): the quickstart's warmed-up K&K model, 16 held-out prompts x 8 samples,
temperature 0.7, top-p 0.95, top-k off, stop at EOS, at most 600 new tokens, 2 threads. Rounds
alternate the sides (ours first in even rounds, the peer first in odd ones); medians over rounds.

Model (--model): /work/bench_models/kk_warmup_sft240, experiments/quickstart.toml's warmup arm
(sft-warmup on the K&K solver's truth-vector CoT, then eval-warmup) run with the old engine and
`--set stages.sft-warmup.sft.max_steps=240` (of its 1,800 steps: the full arm takes over 30 min on
the 2 shared cores); its greedy completions of these 16 prompts are well formed (kk_paper format
1.0), all end at EOS, 224 tokens on average, but none is right (accuracy 0/16). A full quickstart
model is a drop-in replacement. /work/bench_models/kk_warmup (a test run's 2 SFT steps) writes
noise that rarely hits EOS (490 tokens mean at 600) and is no rollout workload.

Prompts: bench/kk_heldout_prompts.jsonl holds the first 16 of the quickstart's 100 held-out
puzzles (task kk, split test: kk/3ppl/test/0..15) exactly as its eval-warmup stage renders them
(prompt = "plain": no chat template, the text ends in "<think>"). They were copied from the run
store's samples table (`SELECT example_id, prompt FROM samples WHERE stage = 'eval-warmup'`) of a
run of experiments/quickstart.toml's [tasks.kk] (seed 7, generate_train = 7200, generate_test =
100: the split depends on both counts) with only its eval-warmup stage, `--set
stages.eval-warmup.eval.limit=16 --set stages.eval-warmup.evaluate.max_new_tokens=1`.
Ours is given the prompt text (it tokenizes it itself, as a rollout would); the peer gets the HF
tokenizer's ids of the same text; the prompt token counts of both sides are checked equal.

  PY=~/.cache/warmup/venv/bin/python
  $PY bench/rollout.py --model /work/bench_models/kk_warmup_sft240 --warmup-bin build/bin/warmup \\
      --threads 2 --rounds 3 --dtype float32
  # a quick check: --num-prompts 2 --n 2 --max-new-tokens 50 --rounds 1
"""
import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from generate import run_generate  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def load_tokenizer(model_dir):
    """The model directory's tokenizer.json as is. Not AutoTokenizer first: transformers 5 maps
    model_type qwen2 to Qwen2Tokenizer, which rebuilds the tokenizer from the vocabulary and merges
    with Qwen's pre-tokenizer, so the quickstart's K&K tokenizer gives 106 tokens for a prompt
    whose tokenizer.json (and `warmup generate`) gives 40."""
    path = os.path.join(model_dir, "tokenizer.json")
    if not os.path.exists(path):
        return AutoTokenizer.from_pretrained(model_dir)
    special = {}
    cfg = os.path.join(model_dir, "tokenizer_config.json")
    if os.path.exists(cfg):
        with open(cfg) as f:
            c = json.load(f)
        special = {k: c[k] for k in ("eos_token", "pad_token", "bos_token") if isinstance(c.get(k), str)}
    return PreTrainedTokenizerFast(tokenizer_file=path, **special)


def eos_ids(model):
    e = model.generation_config.eos_token_id
    if e is None:
        e = model.config.eos_token_id
    if e is None:
        raise SystemExit("the model has no eos_token_id (generation_config.json or config.json)")
    return [e] if isinstance(e, int) else list(e)


def ours(a, prompts, eos, tmp, seed):
    path = os.path.join(tmp, "prompts.jsonl")
    out = os.path.join(tmp, "out.jsonl")
    with open(path, "w") as f:
        for p in prompts:
            f.write(json.dumps({"prompt": p}) + "\n")
    args = ["--model", a.model, "--prompts", path, "--out", out, "--n", str(a.n),
            "--temperature", str(a.temperature), "--top-p", str(a.top_p), "--top-k", "0",
            "--max-new-tokens", str(a.max_new_tokens), "--threads", str(a.threads), "--seed", str(seed),
            "--device", a.device, "--dtype", a.dtype]
    if a.kv_cache_mb:
        args += ["--kv-cache-mb", str(a.kv_cache_mb)]
    args += shlex.split(a.ours_args)
    r = run_generate(a.warmup_bin, args, len(prompts) * a.n)
    lengths, eos_stops, eos_in_ids, prompt_tokens = [], 0, 0, []
    with open(out) as f:
        rows = [json.loads(line) for line in f]
    assert len(rows) == len(prompts), f"{len(rows)} output rows for {len(prompts)} prompts"
    for row in rows:
        if "error" in row:
            raise RuntimeError(f"warmup generate rejected a prompt: {row['error']}")
        prompt_tokens.append(row["prompt_tokens"])
        assert len(row["completions"]) == a.n
        for c in row["completions"]:
            ids = c["token_ids"]
            n = len(ids)
            if c["finish_reason"] == "stop":  # no stop strings here: a stop is an EOS
                eos_stops += 1
                if ids and ids[-1] in eos:
                    eos_in_ids += 1
                else:
                    n += 1  # the EOS is not in token_ids: count it, as the peer's is
            lengths.append(n)
    useful = sum(lengths)
    o = {"useful_tokens": useful, "wall_s": r["wall_s"], "tokens_per_s": useful / r["wall_s"],
         "engine_tokens_per_s": r["tokens_per_s"],  # its own rate: generation only, load excluded
         "mean_completion_len": useful / len(lengths), "eos_rate": eos_stops / len(lengths),
         "eos_stops": eos_stops, "eos_in_token_ids": eos_in_ids, "prompt_tokens": prompt_tokens}
    if "step_breakdown" in r:
        o["step_breakdown"] = r["step_breakdown"]
    return o


def peer(a, model, tok, prompts, eos, seed):
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    pad = model.generation_config.pad_token_id
    if pad is None:
        pad = tok.pad_token_id if tok.pad_token_id is not None else eos[0]
    torch.manual_seed(seed)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(**enc, do_sample=True, temperature=a.temperature, top_p=a.top_p, top_k=0,
                             max_new_tokens=a.max_new_tokens, num_return_sequences=a.n,
                             eos_token_id=eos, pad_token_id=pad)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    new = out[:, enc["input_ids"].shape[1]:].tolist()
    lengths, eos_stops = [], 0
    for row in new:
        n = next((i + 1 for i, t in enumerate(row) if t in eos), None)  # up to the first EOS, inclusive
        if n is None:
            n = len(row)
        else:
            eos_stops += 1
        lengths.append(n)
    useful = sum(lengths)
    return {"useful_tokens": useful, "seconds": dt, "tokens_per_s": useful / dt,
            "mean_completion_len": useful / len(lengths), "eos_rate": eos_stops / len(lengths),
            "prompt_tokens": enc["attention_mask"].sum(1).tolist()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="/work/bench_models/kk_warmup_sft240")
    ap.add_argument("--prompts", default=os.path.join(HERE, "kk_heldout_prompts.jsonl"))
    ap.add_argument("--warmup-bin", default="build/bin/warmup")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--device", default="cpu", help="cpu | cuda (both sides)")
    ap.add_argument("--num-prompts", type=int, default=16)
    ap.add_argument("--n", type=int, default=8, help="samples per prompt")
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--max-new-tokens", type=int, default=600)
    ap.add_argument("--kv-cache-mb", type=float, default=0, help="passed to warmup generate when > 0")
    ap.add_argument("--ours-args", default="", help="more `warmup generate` options, e.g. '--max-num-batched-tokens 4096'")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    with open(a.prompts) as f:
        prompts = [json.loads(line)["prompt"] for line in f if line.strip()][: a.num_prompts]
    if len(prompts) < a.num_prompts:
        raise SystemExit(f"{a.prompts}: {len(prompts)} prompts, fewer than --num-prompts {a.num_prompts}")
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[a.dtype]
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype).to(a.device).eval()
    tok = load_tokenizer(a.model)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    eos = eos_ids(model)
    with torch.no_grad():  # warm-up (first-call allocations, CUDA context): the peer's model is loaded and ready
        warm = tok(prompts[:1], return_tensors="pt", add_special_tokens=False).to(a.device)
        model.generate(**warm, do_sample=False, max_new_tokens=4, eos_token_id=eos, pad_token_id=eos[0])

    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            seed = 1000 + r
            res = {}
            for side in (("ours", "peer") if r % 2 == 0 else ("peer", "ours")):
                if side == "ours":
                    res["ours"] = ours(a, prompts, eos, tmp, seed)
                else:
                    res["peer"] = peer(a, model, tok, prompts, eos, seed)
            print(f"round {r}: ours {res['ours']['tokens_per_s']:.1f} tok/s, "
                  f"transformers {res['peer']['tokens_per_s']:.1f} tok/s", file=sys.stderr)
            rounds.append(res)

    po, pp = rounds[0]["ours"]["prompt_tokens"], rounds[0]["peer"]["prompt_tokens"]
    if po != pp:
        raise SystemExit(f"the sides tokenized the prompts differently: ours {po}, transformers {pp}")
    med = lambda side, k: statistics.median(x[side][k] for x in rounds)  # noqa: E731
    ours_med, peer_med = med("ours", "tokens_per_s"), med("peer", "tokens_per_s")
    summary = {
        "bench": "rollout_" + a.device, "model": a.model, "prompts": a.prompts, "dtype": a.dtype,
        "threads": a.threads, "torch": torch.__version__, "num_prompts": len(prompts), "n": a.n,
        "temperature": a.temperature, "top_p": a.top_p, "top_k": 0, "max_new_tokens": a.max_new_tokens,
        "prompt_tokens_equal": po == pp, "prompt_tokens_mean": sum(po) / len(po),
        "ours": {
            "tokens_per_s": [x["ours"]["tokens_per_s"] for x in rounds],
            "median_tokens_per_s": ours_med,
            "engine_tokens_per_s": [x["ours"]["engine_tokens_per_s"] for x in rounds],
            "wall_s": [x["ours"]["wall_s"] for x in rounds],
            "mean_completion_len": statistics.mean(x["ours"]["mean_completion_len"] for x in rounds),
            "eos_rate": statistics.mean(x["ours"]["eos_rate"] for x in rounds),
            # whether token_ids end in the EOS on every EOS stop (else one token was added per stop)
            "eos_in_token_ids": all(x["ours"]["eos_in_token_ids"] == x["ours"]["eos_stops"] for x in rounds),
        },
        "peer": {
            "tokens_per_s": [x["peer"]["tokens_per_s"] for x in rounds],
            "median_tokens_per_s": peer_med,
            "seconds": [x["peer"]["seconds"] for x in rounds],
            "mean_completion_len": statistics.mean(x["peer"]["mean_completion_len"] for x in rounds),
            "eos_rate": statistics.mean(x["peer"]["eos_rate"] for x in rounds),
        },
        "ratio": ours_med / peer_med,
    }
    steps = [x["ours"]["step_breakdown"] for x in rounds if "step_breakdown" in x["ours"]]
    if steps:
        summary["ours"]["step_breakdown"] = steps
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
