"""Tokenizer parity with Hugging Face `tokenizers` (the oracle) on the Qwen tokenizer: a corpus of
English, code, LaTeX, CJK, emoji, whitespace runs, digits, special tokens in text, NFC-sensitive
text, seeded random Unicode, and invalid UTF-8."""
import json
import os
import random
import subprocess
import unicodedata
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from conftest import WARMUP, warmup

TOK_DIR = Path(os.environ.get("WARMUP_QWEN_TOKENIZER", "build/tests/fixtures/qwen3"))

CORPUS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog. It's 5 o'clock; we'll see, they've gone, I'm here, you'd know.",
    "IT'S LOUD, WE'LL SHOUT, THEY'VE GONE",
    "def f(x):\n    return x ** 2  # square\n\n\nclass A:\n\tpass\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }\r\n",
    r"Let $f(x) = \frac{1}{2}x^2 + \sqrt{3}$. Then $\int_0^1 f(x)\,dx = \boxed{\frac{1}{6}+\sqrt{3}}$.",
    r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}, 10^{-3}, 3.14159, 1,234,567",
    "你好，世界！这是一个测试。日本語のテキストも。한국어 문장입니다.",
    "Emoji: 😀🎉👍🏽 👨‍👩‍👧‍👦 🇫🇷 ✨",
    " " * 1 + "a" + " " * 17 + "b" + "\t" * 5 + "c" + "\n" * 7 + "d" + " \n \n  \n" + "e   ",
    "1234567890 12 345 6789 0.5 -42 +7 1e10 2024-11-26",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more<|im_end|><|im_end|>",
    "<think>\nAssume Alice is a knight.\n</think>\n<answer> (1) Alice is a knight </answer>",
    "Cafe\u0301 vs Café, n\u0303, A\u030a, \u1e0b\u0323",  # NFC composes these
    "\u00a0non-breaking\u3000ideographic\u2028line sep\u0085nel\u200bzwsp",
    "mixed:abc123def!!!???...---___***",
    "   leading and trailing   ",
    "",
    "a",
    "x" * 3000,
    " " * 500 + "y",
    "Ω≈ç√∫˜µ≤≥÷ åß∂ƒ©˙∆˚¬… ¡™£¢∞§¶•ªº–≠",
    "Ελληνικά, Русский текст, עברית, العربية, हिन्दी, ไทย",
]


def random_texts(n, seed=20251126):
    rng = random.Random(seed)
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " \t\n\r  ",
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", "你好世界学习数学逻辑骑士无赖", "éèêëçñöüßæø", "\u0301\u0308\u0323",
        "😀🎉👍🏽✨🔥", "\u00a0\u3000\u2028\u0085", "αβγδεζηθ", "'s 't 're 've 'm 'll 'd",
    ]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 40)):
            pool = rng.choice(pools)
            parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 6))))
        if rng.random() < 0.2:
            parts.insert(rng.randint(0, len(parts)), rng.choice(["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>"]))
        out.append("".join(parts))
    return out


@pytest.fixture(scope="module")
def hf():
    return Tokenizer.from_file(str(TOK_DIR / "tokenizer.json"))


def ours_lines(values, *flags, tokenizer=TOK_DIR):
    inp = "".join(json.dumps(v) + "\n" for v in values)
    r = subprocess.run([WARMUP, "tokenize", "--tokenizer", tokenizer, "--lines", *flags], input=inp,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return [json.loads(l) for l in r.stdout.split("\n")[:-1]]  # not splitlines: U+2028 is data


def test_encode_matches_hf_tokenizers(hf):
    texts = CORPUS + random_texts(600)
    ours = ours_lines(texts)
    assert len(ours) == len(texts)
    mismatches = [(t, o, hf.encode(t).ids) for t, o in zip(texts, ours) if o != hf.encode(t).ids]
    assert not mismatches, mismatches[:3]


def test_quickstart_phrase_tokenizer_matches_hf_tokenizers():
    """The quickstart's tokenizer has its own Split pattern (phrase pieces, case codes, yes/no):
    parity on real K&K puzzles and solver traces as well as on the general corpus."""
    from conftest import REPO
    qs = REPO / "experiments/quickstart/tokenizer"
    ref = Tokenizer.from_file(str(qs / "tokenizer.json"))
    texts = CORPUS + random_texts(200, seed=3)
    for f in ("3ppl_test.jsonl", "7ppl_test.jsonl"):
        for line in open(REPO / "plugins/task/knights_knaves/tests/data" / f):
            r = json.loads(line)
            texts += [r["quiz"], "\n".join([r["cot_head"], *r["cot_repeat_steps"], r["cot_foot"]]), r["solution_text_format"]]
    texts.append("Liam is a knave: kkk kkn KNK KNN nkk nkn NNK NNN.\nSo far: KKK yes KKN no knk yes.")
    ours = ours_lines(texts, tokenizer=qs)
    mismatches = [(t, o, ref.encode(t).ids) for t, o in zip(texts, ours) if o != ref.encode(t).ids]
    assert not mismatches, mismatches[:3]
    assert ref.encode(" Liam is a knave:").tokens == ["ĠLiam", "ĠisĠaĠknave:"]  # a phrase piece


def test_decode_matches_hf_and_roundtrips(hf):
    texts = CORPUS + random_texts(200, seed=7)
    ids = [hf.encode(t).ids for t in texts]
    decoded = ours_lines(ids, "--decode")
    for t, i, d in zip(texts, ids, decoded):
        assert d == hf.decode(i, skip_special_tokens=False)
        assert d == unicodedata.normalize("NFC", t)  # decode(encode(x)) == x for (NFC) valid text
    skipped = ours_lines(ids[:20], "--decode", "--skip-special-tokens")
    assert skipped == [hf.decode(i, skip_special_tokens=True) for i in ids[:20]]


def test_partial_utf8_tokens_decode_lossily_like_hf(hf):
    ids = hf.encode("😀 你").ids
    for k in range(1, len(ids) + 1):
        assert ours_lines([ids[:k]], "--decode")[0] == hf.decode(ids[:k])


def test_invalid_utf8_is_replaced_like_python(hf):
    raw = b"ok \xff\xfe bad \xe4\xbd half \xed\xa0\x80 surrogate \xf0\x9f\x98 cut \xc0\xaf overlong"
    r = subprocess.run([WARMUP, "tokenize", "--tokenizer", TOK_DIR], input=raw, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == hf.encode(raw.decode("utf-8", errors="replace")).ids


def test_special_token_ids_and_errors(tmp_path):
    r = warmup("tokenize", "--tokenizer", TOK_DIR, input="")
    assert r.returncode == 0 and json.loads(r.stdout) == []
    bad = tmp_path / "tok"
    bad.mkdir()
    j = json.loads((TOK_DIR / "tokenizer.json").read_text())
    j["model"]["type"] = "WordPiece"
    (bad / "tokenizer.json").write_text(json.dumps(j))
    r = warmup("tokenize", "--tokenizer", bad, input="x")
    assert r.returncode != 0 and "unsupported tokenizer model 'WordPiece'" in r.stderr
    (bad / "tokenizer.json").write_text('{"model": {"type": "BPE", "vocab": ')
    r = warmup("tokenize", "--tokenizer", bad, input="x")
    assert r.returncode != 0 and "tokenizer.json: not valid JSON" in r.stderr


def test_hostile_tokenizer_files_refused_like_hf_tokenizers(tmp_path):
    """Ids past u32 or negative, ids and merges of the wrong JSON type: HF tokenizers refuses each
    (the oracle); we exit 2 within 5 s with one line naming tokenizer.json and the place."""
    import time
    from tokenizers import decoders, models, pre_tokenizers
    # A small byte-level BPE built by HF tokenizers itself (the Qwen file would make each run
    # spend its time parsing 7 MB).
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    vocab["ĠĠ"] = len(vocab)
    small = Tokenizer(models.BPE(vocab=vocab, merges=[("Ġ", "Ġ")]))
    small.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    small.decoder = decoders.ByteLevel()
    small.add_special_tokens(["<|endoftext|>"])
    base = json.loads(small.to_str())
    (tmp_path / "base").mkdir()
    (tmp_path / "base/tokenizer.json").write_text(json.dumps(base))
    r = warmup("tokenize", "--tokenizer", tmp_path / "base", input="a  b", timeout=5)
    assert r.returncode == 0 and json.loads(r.stdout) == small.encode("a  b").ids, r.stderr
    cases = {
        "id_2^40": (lambda j: j["model"]["vocab"].__setitem__("a", 2**40), "/model/vocab/a: id 1099511627776"),
        "id_-1": (lambda j: j["model"]["vocab"].__setitem__("a", -1), "/model/vocab/a: id -1 is not a token id"),
        "id_string": (lambda j: j["model"]["vocab"].__setitem__("a", "65"), '/model/vocab/a: id "65"'),
        "id_float": (lambda j: j["model"]["vocab"].__setitem__("a", 65.5), "/model/vocab/a: id 65.5"),
        "added_id_-1": (lambda j: j["added_tokens"][0].__setitem__("id", -1), "/added_tokens/0/id: id -1"),
        "added_content_number": (lambda j: j["added_tokens"][0].__setitem__("content", 5), "/added_tokens/0: must be"),
        "merge_numbers": (lambda j: j["model"]["merges"].insert(0, [1, 2]), "/model/merges/0: a merge is"),
        "merge_three": (lambda j: j["model"]["merges"].insert(0, ["a", "b", "c"]), "/model/merges/0: a merge is"),
        "merges_string": (lambda j: j["model"].__setitem__("merges", "a b"), "/model/merges: must be an array"),
    }
    for name, (mutate, needle) in cases.items():
        j = json.loads(json.dumps(base))
        mutate(j)
        d = tmp_path / name
        d.mkdir()
        (d / "tokenizer.json").write_text(json.dumps(j))
        with pytest.raises(Exception):
            Tokenizer.from_file(str(d / "tokenizer.json"))
        start = time.monotonic()
        r = warmup("tokenize", "--tokenizer", d, input="x", timeout=5)
        assert time.monotonic() - start < 5
        assert r.returncode == 2, (name, r.returncode, r.stderr)
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and f"{d}/tokenizer.json: {needle}" in lines[0], (name, r.stderr)
