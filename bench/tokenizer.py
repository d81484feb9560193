"""Encode throughput, one thread: `warmup bench tokenizer` vs HF tokenizers on the same corpus.
Prints JSON with both results and ours/peer ratios (cold: first pass; warm: best later pass)."""
import argparse
import json
import os
import subprocess
import time

os.environ["RAYON_NUM_THREADS"] = "1"  # before tokenizers is imported
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402


def read_corpus(path, field):
    docs = []
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line:
            continue
        if not line.startswith("{"):
            docs.append(line)
            continue
        j = json.loads(line)
        docs.append("\n".join(v for k, v in j.items() if isinstance(v, str) and (not field or k == field)))
    return docs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--field", default="")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--warmup-bin", default="build/bin/warmup")
    a = ap.parse_args()
    docs = read_corpus(a.corpus, a.field)
    tok = Tokenizer.from_file(os.path.join(a.tokenizer, "tokenizer.json"))
    times, tokens = [], 0
    for _ in range(max(2, a.repeat)):
        t0 = time.perf_counter()
        tokens = sum(len(tok.encode(d, add_special_tokens=False).ids) for d in docs)
        times.append(time.perf_counter() - t0)
    # encode_batch (still one thread with RAYON_NUM_THREADS=1) avoids per-call Python overhead.
    batch_times = []
    for _ in range(max(2, a.repeat)):
        t0 = time.perf_counter()
        batch_tokens = sum(len(e.ids) for e in tok.encode_batch(docs, add_special_tokens=False))
        batch_times.append(time.perf_counter() - t0)
    assert batch_tokens == tokens
    peer = {"impl": "hf-tokenizers", "tokens": tokens, "cold_seconds": times[0], "warm_seconds": min(times[1:]),
            "cold_tokens_per_s": tokens / times[0], "warm_tokens_per_s": tokens / min(times[1:]),
            "batch_warm_tokens_per_s": tokens / min(batch_times[1:])}
    out = subprocess.run([a.warmup_bin, "bench", "tokenizer", "--tokenizer", a.tokenizer, "--corpus", a.corpus,
                          "--field", a.field, "--repeat", str(a.repeat)], check=True, capture_output=True, text=True)
    ours = json.loads(out.stdout)
    assert ours["tokens"] == tokens, (ours["tokens"], tokens)  # same ids count: same work
    print(json.dumps({"bench": "tokenizer_encode_1thread", "corpus": a.corpus, "documents": len(docs),
                      "bytes": ours["bytes"], "peer": peer, "ours": ours,
                      "ratio_cold": ours["cold_tokens_per_s"] / peer["cold_tokens_per_s"],
                      "ratio_warm": ours["warm_tokens_per_s"] / peer["warm_tokens_per_s"],
                      "ratio_warm_vs_encode_batch": ours["warm_tokens_per_s"] / peer["batch_warm_tokens_per_s"]},
                     indent=2))


if __name__ == "__main__":
    main()
