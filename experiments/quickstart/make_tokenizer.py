"""Builds experiments/quickstart/tokenizer/: a small byte-level BPE tokenizer (at most 1,024 tokens;
Qwen2's normaliser and decoder) trained on Knights & Knaves puzzles and solver traces of all styles.
Its pre-tokenizer keeps runs of lower-case words together ("phrase" pieces: " is a knight and",
" said that", the fixed preamble), while names and other capitalised words, the truth-table case
codes (" KKN", " knk") and " yes" / " no" stay pieces of their own, so each carries one fact. The
quickstart's tiny model sees ~2x shorter prompts and ~20% shorter traces than with Qwen2's word-level
pre-tokenizer, and ~5x shorter than with raw bytes. Run once by a developer (needs the `tokenizers`
package and a built `warmup-knights_knaves`); the output is committed, and warmup itself never needs Python.

    python experiments/quickstart/make_tokenizer.py --kk build/bin/warmup-knights_knaves
"""
import argparse
import json
import os
import subprocess
import tempfile

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

# Split pieces, first match wins: case codes (all K/N or all k/n, 1-8 letters), yes/no marks,
# capitalised words, runs of lower-case words with one closing mark, then Qwen2's rules for digits,
# punctuation and whitespace.
PHRASE_SPLIT = (r" ?(?:[KN]{1,8}|[kn]{1,8})(?![\p{L}\p{N}])|"
                r" ?(?:yes|no)(?![\p{L}\p{N}])|"
                r" ?\p{Lu}\p{Ll}*|"
                r"(?: ?\p{Ll}+)+[:,.;?!]?|"
                r"\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def corpus(kk, tmp):
    # All of the kk_solver teacher's styles; truth tables and vectors (2^n cases per line) only for
    # small puzzles, so their case codes do not crowd the words out of the vocabulary.
    for cot, people in (("backtracking", "2-8"), ("truth_table", "2-4"), ("truth_vectors", "2-4")):
        path = os.path.join(tmp, cot + ".jsonl")
        subprocess.run([kk, "generate", "--people", people, "--count", "150", "--seed", "20251126", "--out", path,
                        "--cot", cot], check=True, capture_output=True)
        for line in open(path):
            r = json.loads(line)
            if cot == "backtracking":
                yield r["quiz"]
                yield "</think>\n<answer>\n" + r["solution_text_format"] + "\n</answer>"
            yield "\n".join([r["cot_head"], *r["cot_repeat_steps"], r["cot_foot"]])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kk", default="build/bin/warmup-knights_knaves")
    ap.add_argument("--vocab", type=int, default=1024)  # quickstart/model.json's vocab_size
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "tokenizer"))
    a = ap.parse_args()
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PHRASE_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=a.vocab, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    with tempfile.TemporaryDirectory() as tmp:
        tok.train_from_iterator(list(corpus(a.kk, tmp)), trainer)
    os.makedirs(a.out, exist_ok=True)
    tok.save(os.path.join(a.out, "tokenizer.json"))
    with open(os.path.join(a.out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None, "eos_token": SPECIALS[0],
                   "pad_token": SPECIALS[0], "add_bos_token": False, "clean_up_tokenization_spaces": False}, f, indent=2)
        f.write("\n")
    print(f"wrote {a.out}: {tok.get_vocab_size()} tokens")


if __name__ == "__main__":
    main()
