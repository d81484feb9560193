"""One long pre-token (issue 15): `warmup tokenize` vs HF tokenizers on 1 MiB inputs that the
pre-tokenizer leaves as a single piece (a run of one letter, a repeated word without spaces, CJK,
emoji). Runs alternate (ours, peer) per input; ours is the CLI's wall time minus its time on an
empty input (loading the tokenizer). Checks the ids are equal. Prints JSON."""
import argparse
import json
import os
import subprocess
import time

os.environ["RAYON_NUM_THREADS"] = "1"  # before tokenizers is imported
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402

MIB = 1 << 20


def inputs():
    def fill(unit):
        return unit * (MIB // len(unit.encode()))
    return {"a_run": fill("a"), "ab_run": fill("ab"), "phrase_no_spaces": fill("thequickbrownfoxjumpsoverthelazydog"),
            "cjk_run": fill("\u4e2d\u6587\u5b57"), "emoji_run": fill("\U0001F600"), "digits_run": fill("7")}


def run_ours(binary, tok_dir, text):
    t0 = time.perf_counter()
    out = subprocess.run([binary, "tokenize", "--tokenizer", tok_dir], input=text.encode(), capture_output=True,
                         check=True)
    return time.perf_counter() - t0, json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", default="build/tests/fixtures/qwen3")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--warmup-bin", default="build/bin/warmup")
    a = ap.parse_args()
    tok = Tokenizer.from_file(os.path.join(a.tokenizer, "tokenizer.json"))
    load = min(run_ours(a.warmup_bin, a.tokenizer, "")[0] for _ in range(3))
    results = {}
    for name, text in inputs().items():
        ours, peer = [], []
        for _ in range(a.repeat):
            secs, ids = run_ours(a.warmup_bin, a.tokenizer, text)
            ours.append(secs - load)
            t0 = time.perf_counter()
            ref = tok.encode(text, add_special_tokens=False).ids
            peer.append(time.perf_counter() - t0)
            assert ids == ref, f"{name}: ids differ from HF tokenizers"
        pieces = len(tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(text)))
        results[name] = {"bytes": len(text.encode()), "pre_tokens": pieces, "tokens": len(ref),
                         "ours_seconds": min(ours), "peer_seconds": min(peer), "ratio": min(peer) / min(ours)}
    print(json.dumps({"bench": "tokenizer_long_piece", "tokenizer": a.tokenizer, "ours_load_seconds": load,
                      "peer": "hf-tokenizers", "results": results}, indent=2))


if __name__ == "__main__":
    main()
