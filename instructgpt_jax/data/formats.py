"""JSONL and TFDS readers that stream and validate, JSONL writers, and `write_world`.

Formats (one JSON object per line, UTF-8; other keys are ignored so files may carry metadata):
  SFT         {"prompt": str, "response": str}
  RM K-wise   {"prompt": str, "responses": [str, ...], "ranking": [...]} with 2 <= K <= k_max; `ranking` lists
              response indices best first and a nested list marks a tie: [2, [0, 3], 1] means 2 > 0 = 3 > 1
  RM pairwise {"prompt": str, "chosen": str, "rejected": str}            (read as K = 2)
  PPO / eval  {"prompt": str}
  pretraining {"text": str}, or a TFDS dataset "tfds:name[/config]:split" with a text feature
  benchmarks  "tldr:PATH" (TL;DR SFT or comparisons) and "hh:PATH" (HH-RLHF), JSONL / Parquet / a `datasets`
              folder in the dataset's own layout, read by data/benchmarks.py into the records above
Every bad record stops the read with a DataError naming file:line and field, because a silently skipped
or mangled record changes what a run learns. Prompts longer than `max_prompt_tokens` are rejected or, with
overflow="truncate", cut from the left (keeping the text nearest the response) with a logged warning.
`write_world` writes the embedded world's splits in these formats, so the world and real data share one path.
"""

import dataclasses
import json
import logging
import os
import re
import tempfile

import numpy as np

from instructgpt_jax.data import benchmarks
from instructgpt_jax.data import world as world_lib
from instructgpt_jax.data.records import BENCHMARK_PREFIXES, DataError, jsonl_records, string_field
from instructgpt_jax.tokenizer import check_vocab, make_tokenizer

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class _Limits:
    """Token budgets shared by the readers; a budget of None is not checked."""
    tokenizer: object = None
    max_prompt_tokens: int | None = None
    max_response_tokens: int | None = None
    overflow: str = "error"

    def __post_init__(self):
        if self.overflow not in ("error", "truncate"):
            raise ValueError(f"overflow must be 'error' or 'truncate', got {self.overflow!r}")
        if self.tokenizer is None and (self.max_prompt_tokens or self.max_response_tokens):
            raise ValueError("token budgets need a tokenizer to count tokens with")

    def prompt(self, where: str, prompt: str) -> str:
        """`prompt` if it fits max_prompt_tokens; else raise, or cut it from the left and log a warning."""
        if self.max_prompt_tokens is None:
            return prompt
        n = len(self.tokenizer.encode_prompt(prompt))
        if n <= self.max_prompt_tokens:
            return prompt
        if self.overflow == "error":
            raise DataError(where, "prompt", f"{n} tokens, more than max_prompt_tokens={self.max_prompt_tokens} "
                            "(set overflow='truncate' to cut it)")
        # Left truncation keeps the text nearest the response, as generation continues from the prompt's end.
        ids = self.tokenizer.encode(prompt)
        keep, cut = self.max_prompt_tokens - (len(self.tokenizer.encode_prompt("")) - len(self.tokenizer.encode(""))), ""
        while keep > 0:
            # Re-encoding a decoded suffix can merge differently (BPE), so shrink until it really fits.
            cut = self.tokenizer.decode(ids[len(ids) - keep:]).lstrip("\ufffd")
            if len(self.tokenizer.encode_prompt(cut)) <= self.max_prompt_tokens:
                break
            keep -= 1
        if keep <= 0 or not cut.strip():
            raise DataError(where, "prompt", f"max_prompt_tokens={self.max_prompt_tokens} leaves no room for text")
        log.warning("%s: field 'prompt': truncated from %d to %d tokens (overflow='truncate')",
                        where, n, len(self.tokenizer.encode_prompt(cut)))
        return cut

    def response(self, where: str, field: str, response: str) -> str:
        """`response` if it fits max_response_tokens; else raise, or cut its end (and log a warning)."""
        if self.max_response_tokens is None:
            return response
        ids = self.tokenizer.encode_response(response)
        if len(ids) <= self.max_response_tokens:
            return response
        if self.overflow == "error":
            raise DataError(where, field, f"{len(ids)} tokens, more than max_response_tokens="
                            f"{self.max_response_tokens} (set overflow='truncate' to cut it)")
        cut = self.tokenizer.decode(ids[: self.max_response_tokens - 1]).rstrip("\ufffd")
        while cut and len(self.tokenizer.encode_response(cut)) > self.max_response_tokens:
            cut = cut[:-1]
        if not cut.strip():
            raise DataError(where, field, f"max_response_tokens={self.max_response_tokens} leaves no room for text")
        log.warning("%s: field %r: truncated from %d to %d tokens (overflow='truncate')", where, field,
                        len(ids), len(self.tokenizer.encode_response(cut)))
        return cut


def _start(path: str, tokenizer, model_vocab_size: int | None):
    """File-level checks before streaming: the file exists and the tokenizer fits the model's vocab."""
    if not path.startswith(BENCHMARK_PREFIXES) and not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if tokenizer is not None and model_vocab_size is not None:
        try:
            check_vocab(tokenizer, model_vocab_size)
        except ValueError as e:
            raise DataError(path, "tokenizer", str(e)) from None


def _records(path: str, kind: str, limits: "_Limits"):
    """(location, record) of a JSONL file in the formats above, or of a prefixed benchmark source."""
    if not path.startswith(BENCHMARK_PREFIXES):
        return jsonl_records(path)
    return benchmarks.records(path, kind, limits.tokenizer, limits.max_prompt_tokens)


# ---------------------------------------------------------------- readers

def read_sft(path: str, tokenizer=None, *, max_prompt_tokens=None, max_response_tokens=None, overflow="error",
             model_vocab_size=None):
    """Stream validated {"prompt", "response"} dicts from an SFT JSONL file."""
    limits = _Limits(tokenizer, max_prompt_tokens, max_response_tokens, overflow)
    _start(path, tokenizer, model_vocab_size)
    for where, record in _records(path, "sft", limits):
        prompt = limits.prompt(where, string_field(where, record, "prompt"))
        out = {"prompt": prompt, "response": limits.response(where, "response", string_field(where, record, "response"))}
        yield {**out, "meta": record["meta"]} if "meta" in record and path.startswith(BENCHMARK_PREFIXES) else out


def read_ppo(path: str, tokenizer=None, *, max_prompt_tokens=None, overflow="error", model_vocab_size=None):
    """Stream validated prompt strings from a PPO / eval JSONL file ({"prompt"} per line)."""
    limits = _Limits(tokenizer, max_prompt_tokens, None, overflow)
    _start(path, tokenizer, model_vocab_size)
    for where, record in _records(path, "ppo", limits):
        yield limits.prompt(where, string_field(where, record, "prompt"))


def ranking_to_ranks(ranking, k: int, where: str = "<ranking>") -> list[int]:
    """Dense ranks (0 = best, ties share) from a best-first ranking with nested lists for ties."""
    if not isinstance(ranking, list) or not ranking:
        raise DataError(where, "ranking", f"expected a non-empty list, got {json.dumps(ranking)}")
    ranks = [None] * k
    flat = []
    for rank, group in enumerate(ranking):
        members = group if isinstance(group, list) else [group]
        for i in members:
            if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < k:
                raise DataError(where, "ranking", f"entry {json.dumps(i)} is not a response index in 0..{k - 1}")
            flat.append(i)
            ranks[i] = rank
    if sorted(flat) != list(range(k)):
        raise DataError(where, "ranking", f"{json.dumps(ranking)} is not a permutation of 0..{k - 1}")
    return ranks


def ranks_to_ranking(ranks) -> list:
    """Inverse of ranking_to_ranks: best-first response indices, tied indices grouped in a list."""
    ranks = [int(r) for r in ranks]
    groups = [[i for i, r in enumerate(ranks) if r == rank] for rank in sorted(set(ranks))]
    return [g[0] if len(g) == 1 else g for g in groups]


def read_rm(path: str, tokenizer=None, *, k_max: int = 9, max_prompt_tokens=None, max_response_tokens=None,
            overflow="error", model_vocab_size=None):
    """Stream validated {"prompt", "responses", "ranks"} dicts from K-wise or pairwise RM JSONL.

    `ranks` are dense (0 = best, ties share a rank); a pairwise record becomes K = 2 with ranks [0, 1].
    """
    limits = _Limits(tokenizer, max_prompt_tokens, max_response_tokens, overflow)
    _start(path, tokenizer, model_vocab_size)
    for where, record in _records(path, "rm", limits):
        prompt = limits.prompt(where, string_field(where, record, "prompt"))
        if "responses" not in record and "chosen" in record:
            chosen, rejected = string_field(where, record, "chosen"), string_field(where, record, "rejected")
            if chosen == rejected:
                raise DataError(where, "rejected", "duplicate response: same text as 'chosen'")
            yield {"prompt": prompt, "responses": [limits.response(where, "chosen", chosen),
                                                   limits.response(where, "rejected", rejected)], "ranks": [0, 1]}
            continue
        if "responses" not in record:
            raise DataError(where, "responses", "missing (K-wise records need 'responses' and 'ranking', "
                            "pairwise ones 'chosen' and 'rejected')")
        responses = record["responses"]
        if not isinstance(responses, list):
            raise DataError(where, "responses", f"expected a list, got {type(responses).__name__}")
        if not 2 <= len(responses) <= k_max:
            raise DataError(where, "responses", f"K={len(responses)} responses, need 2 <= K <= k_max={k_max}")
        texts = [string_field(where, {f"responses[{i}]": r}, f"responses[{i}]") for i, r in enumerate(responses)]
        first = {}
        for i, text in enumerate(texts):
            if text in first:
                raise DataError(where, f"responses[{i}]", f"duplicate response: same text as responses[{first[text]}]")
            first[text] = i
        if "ranking" not in record:
            raise DataError(where, "ranking", "missing")
        ranks = ranking_to_ranks(record["ranking"], len(texts), where)
        texts = [limits.response(where, f"responses[{i}]", t) for i, t in enumerate(texts)]
        out = {"prompt": prompt, "responses": texts, "ranks": ranks}
        yield {**out, "meta": record["meta"]} if "meta" in record and path.startswith(BENCHMARK_PREFIXES) else out


def _tfds_records(spec: str, data_dir: str | None):
    """(location, record) per example of "tfds:name[/config]:split", read with tfds.data_source.

    data_source reads array_record files by random access and does not need TensorFlow.
    """
    import tensorflow_datasets as tfds   # imported here: ~0.5 s that JSONL-only runs should not pay

    m = re.fullmatch(r"tfds:([\w/.-]+):([\w\[\]:%+-]+)", spec)
    if not m:
        raise ValueError(f"bad TFDS source {spec!r}; expected 'tfds:name[/config]:split'")
    source = tfds.data_source(m.group(1), split=m.group(2), data_dir=data_dir)
    for i in range(len(source)):
        yield f"{spec}[{i}]", source[i]


def read_text(source: str, *, data_dir: str | None = None, field: str = "text"):
    """Stream the validated text of each pretraining document of a JSONL file or a "tfds:..." dataset.

    TFDS text features arrive as bytes and are decoded strictly, like JSONL lines.
    """
    is_tfds = source.startswith("tfds:")
    if not is_tfds and not os.path.exists(source):
        raise FileNotFoundError(f"{source}: no such file (pretraining sources: 'shakespeare', a JSONL path, "
                                "or 'tfds:name[/config]:split')")
    for where, record in _tfds_records(source, data_dir) if is_tfds else jsonl_records(source):
        if field not in record:
            raise DataError(where, field, f"missing (record has {sorted(record)})")
        text = record[field]
        if isinstance(text, (bytes, np.bytes_)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(where, field, "not valid UTF-8") from None
        yield string_field(where, {field: text}, field)


# ---------------------------------------------------------------- writers

def write_jsonl(path: str, records) -> str:
    """Write records one JSON object per line (UTF-8, keys in insertion order); atomic via a rename."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def write_json(path: str, value: dict) -> str:
    """One JSON document (markers, summaries, normalisation), atomic via a rename: a reader never sees half."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(value, f, indent=2, default=float)  # numpy scalars as numbers
    os.replace(path + ".tmp", path)
    return path


# Salt of write_world's first file stream; file i draws from [seed, FILE_STREAM + i].
FILE_STREAM = 100


def write_world(cfg, out_dir: str) -> dict[str, str]:
    """Write the embedded world's splits as JSONL; returns split name -> path.

    sft.jsonl (demonstrations), rm_prompts.jsonl (prompts the RM stage samples K SFT responses for),
    rm.jsonl (K-wise rankings of world-made candidates by the simulated labelers, a ready-made RM set),
    ppo.jsonl, eval.jsonl and eval_heldout.jsonl (with "family" and "reference" for analysis), plus
    world.json with the resolved config. The same config and seed give byte-identical files.
    """
    world = world_lib.make_world(cfg)
    c = world.config
    tokenizer = make_tokenizer(c.tokenizer)
    limits = _Limits(tokenizer, c.max_prompt_tokens, c.max_response_tokens, c.overflow)

    def rng(i):
        return np.random.default_rng([c.seed, FILE_STREAM + i])   # one stream per file: files do not shift each other

    def prompts(split):
        return [limits.prompt(f"world:{split}[{i}]", p) for i, p in enumerate(world.prompts(split))]

    sft_rng, rm_rng = rng(0), rng(1)
    sft = ({"prompt": p, "response": limits.response(f"world:sft[{i}]", "response", world.demonstration(p, sft_rng))}
           for i, p in enumerate(prompts("sft")))

    def rm_records():
        for i, p in enumerate(prompts("rm")):
            k = int(rm_rng.integers(c.k_min, c.k_max + 1))
            responses = [limits.response(f"world:rm[{i}]", f"responses[{j}]", y)
                         for j, y in enumerate(world.candidates(p, k, rm_rng))]
            labeler = int(rm_rng.integers(world.labelers.n))
            ranks = world.rank(p, responses, labeler, rm_rng)
            yield {"prompt": p, "responses": responses, "ranking": ranks_to_ranking(ranks), "labeler": labeler}

    def evals(split):
        return ({"prompt": p, "family": world.family_of(p), "reference": world.reference(p)} for p in prompts(split))

    os.makedirs(out_dir, exist_ok=True)
    paths = {
        "sft": write_jsonl(os.path.join(out_dir, "sft.jsonl"), sft),
        "rm_prompts": write_jsonl(os.path.join(out_dir, "rm_prompts.jsonl"), ({"prompt": p} for p in prompts("rm"))),
        "rm": write_jsonl(os.path.join(out_dir, "rm.jsonl"), rm_records()),
        "ppo": write_jsonl(os.path.join(out_dir, "ppo.jsonl"), ({"prompt": p} for p in prompts("ppo"))),
        "eval": write_jsonl(os.path.join(out_dir, "eval.jsonl"), evals("eval")),
        "eval_heldout": write_jsonl(os.path.join(out_dir, "eval_heldout.jsonl"), evals("eval_heldout")),
    }
    meta = {"config": dataclasses.asdict(c), "files": {k: os.path.basename(v) for k, v in paths.items()}}
    with open(os.path.join(out_dir, "world.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    return paths
