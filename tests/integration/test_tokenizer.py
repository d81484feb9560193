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
        "😀🎉👍🏽✨🔥", "\u00a0\u3000\u2028\u0085\u180e\u2029\u000b", "αβγδεζηθ", "'s 't 're 've 'm 'll 'd",
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


def long_pieces(seed=15):
    """Texts the pre-tokenizer leaves as one piece of 20k-100k characters: runs of one letter,
    repeated words, random letters from small alphabets (many equal-rank pairs and merges that
    change their neighbours), CJK, mixed scripts and emoji."""
    rng = random.Random(seed)
    out = ["a" * 20000, "ab" * 25000, "thequickbrownfox" * 4000, "\u4e2d" * 30000, "\U0001F600" * 20000,
           "e" * 257, "e" * 256]  # around the cache's length bound
    for alphabet in ["ab", "aeiou", "abcdefghijklmnopqrstuvwxyz", "\u4e00\u4e8c\u4e09\u56db", "аб\u0432гд",
                     "ab\u00e9\u4e2d\u0430"]:
        for n in (20000, 100000):
            out.append("".join(rng.choice(alphabet) for _ in range(n)))
    return out


def test_long_single_pieces_match_hf_tokenizers(hf):
    texts = long_pieces()
    for t in texts:  # each really is one pre-token
        assert len(hf.pre_tokenizer.pre_tokenize_str(hf.normalizer.normalize_str(t))) == 1, t[:20]
    texts += [t[:300] + " " + t[:300] + " " + t[:300] for t in texts]  # the same piece again: from the cache
    ours = ours_lines(texts)
    mismatches = [(t[:40], len(t)) for t, o in zip(texts, ours) if o != hf.encode(t, add_special_tokens=False).ids]
    assert not mismatches, mismatches[:3]


def test_quickstart_phrase_tokenizer_matches_hf_tokenizers():
    """The quickstart's tokenizer has its own Split pattern (phrase pieces, case codes, yes/no):
    parity on real K&K puzzles and solver traces as well as on the general corpus."""
    from conftest import REPO
    qs = REPO / "experiments/quickstart/tokenizer"
    ref = Tokenizer.from_file(str(qs / "tokenizer.json"))
    texts = CORPUS + random_texts(200, seed=3)
    for f in ("3ppl_test.jsonl", "7ppl_test.jsonl"):
        for line in open(REPO / "plugins/knights_knaves/tests/data" / f):
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


# ---- added-token flags (lstrip, rstrip, single_word, normalized, special) -------------------

def _added(content, **flags):
    from tokenizers import AddedToken
    return AddedToken(content, single_word=flags.get("sw", False), lstrip=flags.get("l", False),
                      rstrip=flags.get("r", False), normalized=flags.get("n", False), special=flags.get("s", False))


# Each flag alone and in combination, on special and non-special tokens; contents that are words
# (so single_word matters), punctuation, a prefix of another token, one that starts with a space,
# one already in the model vocab, and NFC-sensitive ones (normalized true matches the NFC form;
# false only the raw bytes).
FLAGGED = [
    ("<L>", dict(l=True)), ("<R>", dict(r=True)), ("<LR>", dict(l=True, r=True)),
    ("<sL>", dict(l=True, s=True)), ("<sR>", dict(r=True, s=True)), ("<sLR>", dict(l=True, r=True, s=True)),
    ("mask", dict(sw=True)), ("smask", dict(sw=True, s=True)), ("wordy", dict(sw=True, l=True, r=True)),
    ("maskable", dict()), ("<|x|>", dict(sw=True, s=True, l=True)),
    ("Cafe\u0301", dict(n=True)), ("Caf\u00e9s", dict(n=True, s=True, r=True)), ("n\u0303o", dict(n=False)),
    ("Ω", dict(n=True, sw=True)), ("hello", dict(n=True, l=True)), ("zz top", dict(n=True, r=True, sw=True)),
    (" pad", dict(s=True, r=True)), ("Xe\u0301", dict(s=True, n=True)), ("__", dict(n=True, sw=True)), ("\u00e9t\u00e9", dict(n=False, sw=True, s=True)),
]
# U+180E: not White_Space since Unicode 6.3 (HF's Oniguruma), but in PCRE2's \s.
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\u0085", "\u2003", "\u200b", "\u2029",
          "\u180e", "\u1680", "\u000b\u000c", ""]
NEIGHBOURS = ["a", "Z", "é", "e\u0301", "\u0301", "_", "-", "7", "²", "Ⅻ", "你", "😀", ".", "'s", "\u200d", "Ⓐ", "ـ"]


def flagged_texts(seed=14, n=1500):
    contents = [c for c, _ in FLAGGED] + ["<|im_end|>", "<think>", "Café", "Cafe", "ñ", "n\u0303"]
    out = []
    for c in contents:
        out += [c, c + c, " " + c + " ", "  " + c + "  x", "x" + c + "y", "x " + c + " y", "word" + c, c + "word",
                "\t\n" + c + "\u3000\u3000z", c + "\n\n", "a" + c + " " + c + "b", "Cafe\u0301" + c]
        for sp in SPACES:
            out += [sp + c + sp, "q" + sp + sp + c + sp + "q"]
        for nb in NEIGHBOURS:
            out += [nb + c, c + nb, nb + " " + c + " " + nb]
    for a in contents:  # adjacent tokens, with and without whitespace between
        for b in contents:
            out += [a + b, a + " " + b, a + "  \t" + b + " "]
    rng = random.Random(seed)
    pieces = contents + SPACES + NEIGHBOURS + ["the ", "mas", "k", "word", "y", "Caf", "e", "\u0301", "s", "\n"]
    for _ in range(n):
        out.append("".join(rng.choice(pieces) for _ in range(rng.randint(1, 25))))
    return out


def write_variant(tmp_path, name, tok):
    d = tmp_path / name
    d.mkdir()
    (d / "tokenizer.json").write_text(tok.to_str())
    return d


@pytest.fixture(scope="module")
def flagged(tmp_path_factory):
    """The Qwen tokenizer with FLAGGED added by HF tokenizers itself (so the file is what HF writes)."""
    tok = Tokenizer.from_file(str(TOK_DIR / "tokenizer.json"))
    tok.add_tokens([_added(c, **f) for c, f in FLAGGED])
    return tok, write_variant(tmp_path_factory.mktemp("flagged"), "qwen_flagged", tok)


def test_added_token_flags_match_hf_tokenizers(flagged):
    hf_tok, d = flagged
    saved = json.loads((d / "tokenizer.json").read_text())["added_tokens"]
    for c, f in FLAGGED:  # the file really sets each flag
        a = next(a for a in saved if a["content"] == c)
        assert (a["lstrip"], a["rstrip"], a["single_word"], a["normalized"], a["special"]) == \
            (f.get("l", False), f.get("r", False), f.get("sw", False), f.get("n", False), f.get("s", False)), a
    texts = flagged_texts() + CORPUS
    ours = ours_lines(texts, tokenizer=d)
    ref = [e.ids for e in hf_tok.encode_batch(texts, add_special_tokens=False)]
    mismatches = [(t, o, r) for t, o, r in zip(texts, ours, ref) if o != r]
    assert not mismatches, (len(mismatches), mismatches[:3])
    # The corpus reaches each behaviour: every flagged token is found, some only because of a
    # flag (whitespace taken in, a single_word match refused, a normalized match on NFC text).
    found = {i for r in ref for i in r}
    assert all(hf_tok.token_to_id(c) in found for c, _ in FLAGGED)
    plain = Tokenizer.from_file(str(TOK_DIR / "tokenizer.json"))
    plain.add_tokens([_added(c) for c, _ in FLAGGED])  # the same tokens, no flags
    differ = sum(r != e.ids for r, e in zip(ref, plain.encode_batch(texts, add_special_tokens=False)))
    assert differ > 1000, differ
    # decode, with and without the special tokens
    for skip in (False, True):
        decoded = ours_lines(ref, "--decode", *(["--skip-special-tokens"] if skip else []), tokenizer=d)
        bad = [(i, o) for i, o in zip(ref, decoded) if o != hf_tok.decode(i, skip_special_tokens=skip)]
        assert not bad, (skip, len(bad), bad[:3])


def test_single_word_boundaries_match_hf_for_each_code_point(tmp_path):
    """single_word's word test (Rust regex \\w) and lstrip/rstrip's whitespace test (\\s), for every
    code point of the BMP and of the planes with letters: x<t> and <t>x for a single_word token,
    x<t> for an lstrip one. Our Unicode data (utf8proc) predates HF's (Unicode 16): code points
    assigned since are not word characters for us, so parity is asserted on the code points
    assigned in this Python's Unicode data; the others are counted. The same for the pre-tokenizer
    regex (PCRE2's Unicode data is older than HF's Oniguruma's)."""
    tok = Tokenizer.from_file(str(TOK_DIR / "tokenizer.json"))
    tok.add_tokens([_added("<t>", sw=True), _added("<u>", l=True)])
    d = write_variant(tmp_path, "sw", tok)
    cps = [c for c in list(range(0x20, 0x30000)) + list(range(0xE0000, 0xE0080)) if not 0xD800 <= c < 0xE000]
    texts = []
    for c in cps:
        ch = chr(c)
        texts += ["a" + ch + "<t>", "<t>" + ch + "a", "a" + ch + "<u>"]
    ours = ours_lines(texts, tokenizer=d)
    ref = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    diff = [(cps[i // 3], texts[i]) for i, (o, r) in enumerate(zip(ours, ref)) if o != r]
    bad = [(hex(c), t) for c, t in diff if unicodedata.category(chr(c)) != "Cn"]
    assert not bad, (len(bad), bad[:10])
    assert len({c for c, _ in diff}) < 6000, len(diff)  # Unicode 15-16 additions only
    # The pre-tokenizer's \\s (PCRE2 here, Oniguruma in HF) around each code point, no added tokens
    texts = [f"a{chr(c)}{chr(c)}b{chr(c)}'s {chr(c)}" for c in cps]
    ours = ours_lines(texts)
    ref = [e.ids for e in Tokenizer.from_file(str(TOK_DIR / "tokenizer.json")).encode_batch(texts)]
    diff = [c for c, o, r in zip(cps, ours, ref) if o != r]
    bad = [hex(c) for c in diff if unicodedata.category(chr(c)) != "Cn"]
    assert not bad, (len(bad), bad[:10])
    assert len(diff) < 6000, len(diff)  # PCRE2's \\p{L} is older than Oniguruma's too


def test_accepted_options_match_hf_tokenizers(tmp_path, flagged):
    """Options the loader honours or that cannot change ids: ByteLevel add_prefix_space (per piece
    between added tokens, or per Split piece), ignore_merges, dropout 0, unk_token/fuse_unk (no character lacks a token), trim_offsets,
    and a TemplateProcessing whose special_tokens give the ids."""
    hf_tok, d0 = flagged
    j = json.loads((d0 / "tokenizer.json").read_text())
    j["pre_tokenizer"]["pretokenizers"][1].update(add_prefix_space=True, trim_offsets=True)
    j["model"].update(dropout=0.0, unk_token="<|endoftext|>", fuse_unk=True)
    j["post_processor"] = {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [151644, 872], "tokens": ["<|im_start|>", "user"]},
                                              "</s>": {"id": "</s>", "ids": [151645], "tokens": ["<|im_end|>"]}}}
    d = tmp_path / "opts"
    d.mkdir()
    (d / "tokenizer.json").write_text(json.dumps(j))
    ref_tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    texts = flagged_texts(seed=5, n=300)[::3]
    for flags, special in (((), False), (("--add-special-tokens",), True)):
        ours = ours_lines(texts, *flags, tokenizer=d)
        ref = [e.ids for e in ref_tok.encode_batch(texts, add_special_tokens=special)]
        bad = [(t, o, r) for t, o, r in zip(texts, ours, ref) if o != r]
        assert not bad, (flags, len(bad), bad[:3])
    assert ref_tok.encode("a<|im_end|>b").tokens[-3:] == ["<|im_end|>", "Ġb", "<|im_end|>"]  # a prefix space per piece
    # A Split regex with \\s and \\S in and out of classes, around U+180E (White_Space for PCRE2
    # but not for HF's Oniguruma)
    j = json.loads((d0 / "tokenizer.json").read_text())
    j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"[\s\S]{1,4}?\S|\s+\S?|[^\S]+"
    (d / "tokenizer.json").write_text(json.dumps(j))
    ref_tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    ours = ours_lines(texts, tokenizer=d)
    bad = [(t, o, r.ids) for t, o, r in zip(texts, ours, ref_tok.encode_batch(texts, add_special_tokens=False)) if o != r.ids]
    assert not bad, ("\\s", len(bad), bad[:3])
    assert sum("\u180e" in t for t in texts) > 20
    # ignore_merges: a piece that is a vocab token is that token, whatever the merges make of it
    j = json.loads((d0 / "tokenizer.json").read_text())
    j["model"]["ignore_merges"] = True
    (d / "tokenizer.json").write_text(json.dumps(j))
    ref_tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    ours = ours_lines(texts + CORPUS, tokenizer=d)
    ref = [e.ids for e in ref_tok.encode_batch(texts + CORPUS, add_special_tokens=False)]
    bad = [(t, o, r) for t, o, r in zip(texts + CORPUS, ours, ref) if o != r]
    assert not bad, ("ignore_merges", len(bad), bad[:3])
    # ByteLevel with its own regex (no Split): the prefix space goes before each piece between
    # added tokens, then the regex runs.
    small = Tokenizer.from_str(json.dumps(_small_base()))
    small.add_tokens([_added(c, **f) for c, f in FLAGGED])
    j = json.loads(small.to_str())
    j["pre_tokenizer"].update(add_prefix_space=True, use_regex=True)
    (d / "tokenizer.json").write_text(json.dumps(j))
    ref_tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    ours = ours_lines(texts, tokenizer=d)
    bad = [(t, o, r.ids) for t, o, r in zip(texts, ours, ref_tok.encode_batch(texts, add_special_tokens=False)) if o != r.ids]
    assert not bad, (len(bad), bad[:3])


def _small_base():
    from tokenizers import decoders, models, pre_tokenizers
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    vocab["ĠĠ"] = len(vocab)
    small = Tokenizer(models.BPE(vocab=vocab, merges=[("Ġ", "Ġ")]))
    small.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    small.decoder = decoders.ByteLevel()
    small.add_special_tokens(["<|endoftext|>"])
    small.add_tokens([_added("<a>", l=True)])
    return json.loads(small.to_str())


REFUSED = {
    # field: (mutation, message needle, whether HF tokenizers refuses it too; "encode": HF loads it
    # but panics on the first encode with special tokens)
    "lstrip_missing": (lambda j: j["added_tokens"][1].pop("lstrip"), "/added_tokens/1/lstrip: must be true or false, got nothing", True),
    "single_word_string": (lambda j: j["added_tokens"][0].__setitem__("single_word", "yes"), '/added_tokens/0/single_word: must be true or false, got "yes"', True),
    "normalized_missing": (lambda j: j["added_tokens"][0].pop("normalized"), "/added_tokens/0/normalized: must be true or false", True),
    "added_id_gap": (lambda j: j["added_tokens"][1].__setitem__("id", 300), "/added_tokens/1/id: token '<a>' has id 300 but HF tokenizers gives it id 258", False),
    "added_same_nfc": (lambda j: (j.__setitem__("normalizer", {"type": "NFC"}), j["added_tokens"].extend([dict(j["added_tokens"][1], id=259, content="Cafe\u0301", normalized=True), dict(j["added_tokens"][1], id=260, content="Caf\u00e9", normalized=True)])),
                       "/added_tokens/3/content: normalises to 'Caf\u00e9' as /added_tokens/2 does (HF tokenizers would match either at random)", False),
    "added_duplicate": (lambda j: j["added_tokens"].append(dict(j["added_tokens"][1], id=259)), "/added_tokens/2/content: '<a>' is already /added_tokens/1", False),
    "dropout": (lambda j: j["model"].__setitem__("dropout", 0.1), "/model/dropout: BPE dropout is not supported (must be null or 0, got 0.1)", False),
    "byte_fallback": (lambda j: j["model"].__setitem__("byte_fallback", True), "/model/byte_fallback: byte_fallback is not supported", False),
    "continuing_subword_prefix": (lambda j: j["model"].__setitem__("continuing_subword_prefix", "##"), '/model/continuing_subword_prefix: continuing_subword_prefix is not supported (must be null or "", got "##")', False),
    "end_of_word_suffix": (lambda j: j["model"].__setitem__("end_of_word_suffix", "</w>"), "/model/end_of_word_suffix: end_of_word_suffix is not supported", False),
    "ignore_merges_string": (lambda j: j["model"].__setitem__("ignore_merges", "no"), '/model/ignore_merges: must be true or false, got "no"', True),
    "truncation": (lambda j: j.__setitem__("truncation", {"direction": "Right", "max_length": 3, "strategy": "LongestFirst", "stride": 0}), "/truncation: truncation is not supported (must be null", False),
    "padding": (lambda j: j.__setitem__("padding", {"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": 8, "pad_id": 0, "pad_type_id": 0, "pad_token": "<|endoftext|>"}), "/padding: padding is not supported", False),
    "version": (lambda j: j.__setitem__("version", "2.0"), '/version: unknown tokenizer version "2.0"', True),
    "decoder_null": (lambda j: j.__setitem__("decoder", None), "/decoder: a ByteLevel decoder is required, got null", False),
    "normalizer_lowercase": (lambda j: j.__setitem__("normalizer", {"type": "Lowercase"}), "/normalizer: unsupported normalizer 'Lowercase' (supported: NFC)", False),
    "normalizer_in_sequence": (lambda j: j.__setitem__("normalizer", {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "NFKC"}]}), "/normalizer/normalizers/1: unsupported normalizer 'NFKC'", False),
    "split_after_byte_level": (lambda j: j.__setitem__("pre_tokenizer", {"type": "Sequence", "pretokenizers": [j["pre_tokenizer"], {"type": "Split", "pattern": {"Regex": "a"}, "behavior": "Isolated", "invert": False}]}), "/pre_tokenizer/pretokenizers/1: a Split after the ByteLevel pre-tokenizer is not supported", False),
    "add_prefix_space_missing": (lambda j: j["pre_tokenizer"].pop("add_prefix_space"), "/pre_tokenizer/add_prefix_space: must be true or false, got nothing", True),
    "template_token_unlisted": (lambda j: j.__setitem__("post_processor", {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<x>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}], "pair": [], "special_tokens": {}}), "/post_processor/special_tokens: template token '<x>' is not listed", "encode"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_unsupported_tokenizer_fields_are_refused(tmp_path, name):
    base = _small_base()
    mutate, needle, hf_refuses = REFUSED[name]
    j = json.loads(json.dumps(base))
    mutate(j)
    f = tmp_path / "tokenizer.json"
    f.write_text(json.dumps(j))
    if hf_refuses == "encode":
        with pytest.raises(BaseException, match="no entry found"):
            Tokenizer.from_file(str(f)).encode("x", add_special_tokens=True)
    elif hf_refuses:
        with pytest.raises(Exception):
            Tokenizer.from_file(str(f))
    else:  # HF reads it, so the field would change what we encode or decode: refused, not ignored
        Tokenizer.from_file(str(f))
    r = warmup("tokenize", "--tokenizer", tmp_path, input="x <a>", timeout=10)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and f"{f}: {needle}" in lines[0], r.stderr
    f.write_text(json.dumps(base))  # and the unmutated file loads
    assert warmup("tokenize", "--tokenizer", tmp_path, input="x <a>").returncode == 0
