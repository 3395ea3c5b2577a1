"""Readers for the public RLHF benchmarks in their published layouts, converted to the project's records.

A data path names its layout with a prefix, as pretraining's "tfds:" does: `tldr:PATH` or `hh:PATH` anywhere
a stage reads SFT, RM or prompt files (`data.train`, `data.val`, `data.prompts`, `eval.prompts`, ...).
PATH is a JSONL file, a Parquet file, a folder written by Hugging Face `datasets`' `save_to_disk` (one
split: the folder holding state.json), or a glob of such files (`train-*.parquet`, read in sorted order).

  tldr  TL;DR SFT (the filtered Reddit TL;DR of Stiennon et al. 2020): {"subreddit", "title", "post",
        "summary"} -> prompt "SUBREDDIT: r/{subreddit}\\n\\nTITLE: {title}\\n\\nPOST: {post}\\n\\nTL;DR:",
        response " {summary}" (a leading space, as the reference recipe prepends).
        TL;DR comparisons (openai/summarize_from_feedback): {"info": {"id", "subreddit", "title", "post", ...},
        "summaries": [{"text", "policy", "note"}, {...}], "choice": 0 | 1, "worker", "batch", "split", "extra"}
        -> the same prompt and the two summaries as they are (their texts already start with a space, which
        the reference recipe keeps), ranked by `choice`; everything but the texts stays in the
        record's "meta" (worker, batch, split, extra, info.id, the summaries' policy/note) for analysis.
        Prompts for PPO come from either layout.
  hh    Anthropic HH-RLHF: {"chosen", "rejected"}, two whole dialogues of "\\n\\nHuman: ..." / "\\n\\nAssistant: ..."
        turns that differ only in the last Assistant turn -> the shared prompt (everything through the last
        "\\n\\nAssistant:"), and the two final responses. SFT reads the prompt and the chosen response.

The long-post rule of the reference recipe (Huang et al. 2024, "The N+ implementation details of RLHF with
PPO", their `process_query`): while the formatted query has more than the prompt budget (`max_prompt_tokens`,
counted as `tokenizer.encode_prompt` counts it), cut the post at its last newline; with no newline left,
cut it at its last whitespace (the reference drops one character at a time there, which is quadratic in the
post length and ends mid-word; the kept text differs at most by that partial word). Titles are never cut.

Every record is validated as formats.py validates its own: a bad one stops the read with a DataError
"PATH:LINE: field 'name': ..." (JSONL) or "PATH[ROW]: field 'name': ..." (Parquet, datasets folders: the
0-based row, as `dataset[ROW]` reads it). Parquet and datasets folders need `pyarrow`; the `datasets`
package is not needed. There is no TFDS builder for either dataset.
"""

from __future__ import annotations

import glob
import json
import os

from instructgpt_jax.data.records import BENCHMARK_PREFIXES, DataError, jsonl_records, string_field

PREFIXES = BENCHMARK_PREFIXES
TLDR_FORMAT = "SUBREDDIT: r/{subreddit}\n\nTITLE: {title}\n\nPOST: {post}\n\nTL;DR:"
HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"


def split_source(source: str) -> tuple[str, str]:
    """("tldr" | "hh", PATH) of a prefixed data path; ValueError for a path without a known prefix."""
    for prefix in PREFIXES:
        if source.startswith(prefix):
            return prefix[:-1], source[len(prefix):]
    raise ValueError(f"{source!r} names no benchmark layout; expected one of {[p + 'PATH' for p in PREFIXES]}")


def is_benchmark(source: str) -> bool:
    return isinstance(source, str) and source.startswith(PREFIXES)


# ---------------------------------------------------------------- raw rows: JSONL, Parquet, datasets folders

def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ImportError("reading Parquet files or `datasets` folders needs pyarrow: pip install pyarrow") from None
    return pyarrow


def _parquet_rows(path: str):
    pa = _pyarrow()
    i = 0
    for batch in pa.parquet.ParquetFile(path).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            yield f"{path}[{i}]", row
            i += 1


def _datasets_rows(folder: str):
    """Rows of one split saved by `Dataset.save_to_disk`: Arrow IPC streams listed in state.json."""
    if os.path.isfile(os.path.join(folder, "dataset_dict.json")):
        with open(os.path.join(folder, "dataset_dict.json")) as f:
            splits = json.load(f).get("splits", [])
        raise ValueError(f"{folder} is a DatasetDict with splits {splits}; name one split's folder, "
                         f"e.g. {os.path.join(folder, splits[0] if splits else 'train')}")
    state_path = os.path.join(folder, "state.json")
    if not os.path.isfile(state_path):
        raise FileNotFoundError(f"{folder} is not a `datasets` save_to_disk folder (no state.json)")
    with open(state_path) as f:
        files = [entry["filename"] for entry in json.load(f)["_data_files"]]
    pa = _pyarrow()
    i = 0
    for name in files:
        with pa.memory_map(os.path.join(folder, name)) as source:
            for batch in pa.ipc.open_stream(source):
                for row in batch.to_pylist():
                    yield f"{folder}[{i}]", row
                    i += 1


def rows(path: str):
    """(location, dict) per record of a JSONL file, a Parquet file, a datasets folder, or a glob of them."""
    if glob.has_magic(path):
        matches = sorted(glob.glob(path))
        if not matches:
            raise FileNotFoundError(f"{path}: no file matches")
        for match in matches:
            yield from rows(match)
        return
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file or folder")
    if os.path.isdir(path):
        yield from _datasets_rows(path)
    elif path.endswith(".parquet"):
        yield from _parquet_rows(path)
    else:
        yield from jsonl_records(path)


# ---------------------------------------------------------------- TL;DR

def _text(where: str, value, field: str) -> str:
    return string_field(where, {field: value}, field)


def _field(where: str, record: dict, key: str, name: str) -> str:
    """The non-empty string record[key], errors naming the field `name` (e.g. 'info.post')."""
    if key not in record:
        raise DataError(where, name, "missing")
    return _text(where, record[key], name)


def _post_fields(where: str, info: dict, prefix: str) -> dict:
    """subreddit, title and post of a TL;DR record (fields named with `prefix`, e.g. 'info.')."""
    if prefix and info.get("post") is None and info.get("article") is not None:
        raise DataError(where, prefix + "post", f"null: a CNN/DM article (site {info.get('site')!r}), not a Reddit "
                        "post; keep only the TL;DR records (batch not in batch0_cnndm, cnndm0, cnndm2)")
    return {k: _field(where, info, k, prefix + k) for k in ("subreddit", "title", "post")}


def _checked(where: str, record: dict, field: str):
    if field not in record:
        raise DataError(where, field, "missing")
    return record[field]


def tldr_query(where: str, fields: dict, tokenizer=None, max_prompt_tokens: int | None = None) -> str:
    """The reference recipe's TL;DR prompt, the post cut (see the module docstring) until it fits the budget."""
    post = fields["post"]

    def query(p):
        return TLDR_FORMAT.format(subreddit=fields["subreddit"], title=fields["title"], post=p)

    if tokenizer is None or max_prompt_tokens is None:
        return query(post)
    while len(tokenizer.encode_prompt(query(post))) > max_prompt_tokens:
        if not post:
            n = len(tokenizer.encode_prompt(query("")))
            raise DataError(where, "title", f"the prompt without its post has {n} tokens, more than "
                            f"max_prompt_tokens={max_prompt_tokens}")
        cut = post.rfind("\n")
        if cut < 0:
            cut = max(post.rfind(" "), post.rfind("\t"))
        post = post[:cut] if cut >= 0 else post[:-1]  # one word has no whitespace to cut at: one character
    return query(post)


def _tldr_sft(where, record, tokenizer, budget) -> dict:
    if record.get("summary") is None and record.get("summaries") is not None:
        raise DataError(where, "summary", "missing: a TL;DR comparison record; SFT reads the TL;DR SFT layout "
                        "{subreddit, title, post, summary}")
    fields = {k: string_field(where, record, k) for k in ("subreddit", "title", "post")}
    summary = string_field(where, record, "summary")
    meta = {k: v for k, v in record.items() if k not in ("subreddit", "title", "post", "summary")}
    return {"prompt": tldr_query(where, fields, tokenizer, budget), "response": " " + summary, "meta": meta}


def _tldr_comparison(where, record, tokenizer, budget) -> dict:
    info = _checked(where, record, "info")
    if not isinstance(info, dict):
        raise DataError(where, "info", f"expected an object with subreddit, title and post, got {type(info).__name__}")
    prompt = tldr_query(where, _post_fields(where, info, "info."), tokenizer, budget)
    summaries = _checked(where, record, "summaries")
    if not isinstance(summaries, list) or len(summaries) != 2:
        got = f"{len(summaries)} entries" if isinstance(summaries, list) else type(summaries).__name__
        raise DataError(where, "summaries", f"expected a list of 2 summaries, got {got}")
    texts = []
    for i, s in enumerate(summaries):
        if not isinstance(s, dict):
            raise DataError(where, f"summaries[{i}]", f"expected an object with 'text', got {type(s).__name__}")
        texts.append(_field(where, s, "text", f"summaries[{i}].text"))
    choice = _checked(where, record, "choice")
    if choice not in (0, 1) or isinstance(choice, bool):
        raise DataError(where, "choice", f"expected 0 or 1 (the index of the preferred summary), got {json.dumps(choice)}")
    meta = {k: v for k, v in record.items() if k not in ("info", "summaries")}
    meta["info"] = {k: v for k, v in info.items() if k not in ("subreddit", "title", "post")}
    meta["summaries"] = [{k: v for k, v in s.items() if k != "text"} for s in summaries]
    return {"prompt": prompt, "responses": texts, "ranking": [choice, 1 - choice], "meta": meta}


def _tldr_prompt(where, record, tokenizer, budget) -> dict:
    if record.get("info") is not None:
        info = record["info"]
        if not isinstance(info, dict):
            raise DataError(where, "info", f"expected an object, got {type(info).__name__}")
        return {"prompt": tldr_query(where, _post_fields(where, info, "info."), tokenizer, budget)}
    fields = {k: string_field(where, record, k) for k in ("subreddit", "title", "post")}
    return {"prompt": tldr_query(where, fields, tokenizer, budget)}


# ---------------------------------------------------------------- HH-RLHF

def hh_split(where: str, chosen: str, rejected: str) -> tuple[str, str, str]:
    """(prompt, chosen response, rejected response) of two HH dialogues sharing all but the last turn."""
    parts = []
    for field, dialogue in (("chosen", chosen), ("rejected", rejected)):
        cut = dialogue.rfind(ASSISTANT)
        if cut < 0:
            raise DataError(where, field, f"no {ASSISTANT!r} turn (expected a dialogue of {HUMAN!r} / {ASSISTANT!r} turns)")
        prompt, response = dialogue[:cut + len(ASSISTANT)], dialogue[cut + len(ASSISTANT):]
        if HUMAN not in prompt:
            raise DataError(where, field, f"no {HUMAN!r} turn before the last {ASSISTANT!r}")
        if not response.strip():
            raise DataError(where, field, f"empty final response after the last {ASSISTANT!r}")
        parts.append((prompt, response))
    (p_chosen, r_chosen), (p_rejected, r_rejected) = parts
    if p_chosen != p_rejected:
        at = next((i for i, (a, b) in enumerate(zip(p_chosen, p_rejected)) if a != b), min(len(p_chosen), len(p_rejected)))
        raise DataError(where, "rejected", f"does not share 'chosen''s prompt (the dialogue through the last "
                        f"{ASSISTANT!r}): they differ at character {at} ({p_chosen[at:at + 30]!r} vs "
                        f"{p_rejected[at:at + 30]!r})")
    return p_chosen, r_chosen, r_rejected


def _hh(where, record, kind) -> dict:
    prompt, chosen, rejected = hh_split(where, string_field(where, record, "chosen"), string_field(where, record, "rejected"))
    if kind == "sft":
        return {"prompt": prompt, "response": chosen}
    if kind == "ppo":
        return {"prompt": prompt}
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


# ---------------------------------------------------------------- records in the project's layout

def records(source: str, kind: str, tokenizer=None, max_prompt_tokens: int | None = None):
    """(location, record) per record of a prefixed source, in the layout formats.py reads for `kind`.

    kind "sft": {"prompt", "response"}; "rm": {"prompt", "responses", "ranking"} (TL;DR) or {"prompt",
    "chosen", "rejected"} (HH); "ppo": {"prompt"}. TL;DR records carry "meta". The tokenizer and budget
    only drive the TL;DR long-post rule; formats.py checks every budget afterwards.
    """
    layout, path = split_source(source)
    if kind not in ("sft", "rm", "ppo"):
        raise ValueError(f"kind {kind!r}; expected 'sft', 'rm' or 'ppo'")
    for where, record in rows(path):
        if not isinstance(record, dict):
            raise DataError(where, None, f"expected an object, got {type(record).__name__}")
        if layout == "hh":
            yield where, _hh(where, record, kind)
        elif kind == "sft":
            yield where, _tldr_sft(where, record, tokenizer, max_prompt_tokens)
        elif kind == "rm":
            if record.get("info") is None and record.get("summary") is not None:  # (columnar files: absent = None)
                raise DataError(where, "summaries", "missing: a TL;DR SFT record; the reward model reads TL;DR "
                                "comparisons {info, summaries, choice}")
            yield where, _tldr_comparison(where, record, tokenizer, max_prompt_tokens)
        else:
            yield where, _tldr_prompt(where, record, tokenizer, max_prompt_tokens)
