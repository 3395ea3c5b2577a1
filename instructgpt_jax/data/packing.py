"""Packing: several (prompt, response) examples per row of a fixed length, each attending to itself only.

A packed row lays its examples out right-aligned, one after another, each with its own positions and a
segment id (1, 2, ...; 0 is padding); model.packed_key_mask turns the segment ids into a block-diagonal
attention mask. SFT packs demonstrations greedily in order or best-fit within windows (`pack_rows`,
`best_fit_rows`, `packed_batches`); the reward model packs whole prompts, each with its K responses as
segments, so a step still holds every pair of a prompt (`pack_prompts`, `packed_rm_batches`); scoring packs
(prompt, response) texts as segments read at their last token (`pack_segments`). With `share_prompt` (the
RM's default), a prompt's responses follow one copy of the prompt in a row, each seeing the prompt and
itself only (`lay_row`): the same scores from about half the tokens. Every batch function is a pure
function of the step (exact resume).
"""

from __future__ import annotations

import math

import numpy as np

from instructgpt_jax.data import batching


def encode_examples(examples, tokenizer) -> list[tuple[list[int], list[int]]]:
    return [(tokenizer.encode_prompt(ex["prompt"]), tokenizer.encode_response(ex["response"])) for ex in examples]


def auto_seq_len(lengths, n_positions: int | None = None, multiple: int = 16) -> int:
    """The longest sequence rounded up to a multiple of 16 (one compiled shape, little padding), at most the
    model's `n_positions` (a longer sequence is an error)."""
    longest = max(lengths)
    seq_len = -(-longest // multiple) * multiple
    seq_len = seq_len if n_positions is None else min(seq_len, n_positions)
    if longest > seq_len:
        raise ValueError(f"the longest sequence has {longest} tokens, more than the model's n_positions={n_positions}")
    return seq_len


def pack_rows(lengths, seq_len: int, order) -> list[list[int]]:
    """Greedy packing in `order`: append examples to the current row while they fit, else start a new row."""
    rows, row, used = [], [], 0
    for i in order:
        if used + lengths[i] > seq_len and row:
            rows.append(row)
            row, used = [], 0
        row.append(int(i))
        used += lengths[i]
    rows.append(row)
    return rows


def best_fit_rows(lengths, seq_len: int, order, window: int, seed) -> list[list[int]]:
    """Best-fit-decreasing packing of consecutive windows of `order`: within each window of `window`
    examples, longest first, each example goes to the row it fills most tightly (a new row if none has room);
    the window's rows are then shuffled with `seed` (a list of ints), so a batch's lengths do not follow
    the sort. An example stays within `window` of its place in `order`, so epochs stay distinct. What it
    saves on the default world's demonstrations against `pack_rows`: docs/RESULTS.md, "SFT rows packed
    best-fit"."""
    rows = []
    order = [int(i) for i in order]
    for w, start in enumerate(range(0, len(order), window)):
        free, members = [], []  # per row: tokens still free, examples in it
        for i in sorted(order[start:start + window], key=lambda i: -lengths[i]):
            fits = [r for r, f in enumerate(free) if f >= lengths[i]]
            if fits:
                r = min(fits, key=lambda r: free[r])
            else:
                r = len(free)
                free.append(seq_len)
                members.append([])
            free[r] -= lengths[i]
            members[r].append(i)
        perm = np.random.default_rng([*seed, w]).permutation(len(members))
        rows += [members[r] for r in perm]
    return rows


def lay_row(encoded, members, share_prompt: bool = False):
    """The tokens of one packed row, unpadded: (tokens, positions, segment ids, branch ids, loss mask, ends),
    `ends` the last token of each member. Each member (prompt ids, response ids) is a segment (ids 1, 2, ...)
    with positions from 0. With `share_prompt`, a member whose prompt equals the previous member's joins its
    segment: the prompt is laid once, then each response in turn with positions continuing the prompt's, and
    branch ids (prompt 0, responses 1, 2, ...) keep the responses from seeing each other
    (model.packed_key_mask), so each reads exactly what it would alone."""
    tokens, positions, segs, branches, loss, ends = [], [], [], [], [], []
    seg, branch, last_prompt = 0, 0, None
    for j in members:
        prompt, response = encoded[j]
        if share_prompt and branch and list(prompt) == last_prompt:
            branch += 1
        else:
            seg, branch, last_prompt = seg + 1, 1, list(prompt)
            tokens += prompt
            positions += range(len(prompt))
            segs += [seg] * len(prompt)
            branches += [0] * len(prompt)
            loss += [False] * len(prompt)
        tokens += response
        positions += range(len(prompt), len(prompt) + len(response))
        segs += [seg] * len(response)
        branches += [branch] * len(response)
        loss += [True] * len(response)
        ends.append(len(tokens) - 1)
    return tokens, positions, segs, branches, loss, ends


def packed_batch(encoded, rows, seq_len: int, pad_id: int, share_prompt: bool = False) -> dict:
    """Rows of several examples each (`lay_row`), right-aligned like batching.sft_batch, with segment ids
    1, 2, ... (and branch_ids, with `share_prompt`)."""
    return _packed_rows(encoded, rows, seq_len, pad_id, share_prompt)[0]


def _packed_rows(encoded, rows, seq_len: int, pad_id: int, share_prompt: bool):
    """`packed_batch`'s arrays and, per row, the slot of each member's last token."""
    B, row_ends = len(rows), []
    out = {"tokens": np.full((B, seq_len), pad_id, np.int32), "positions": np.zeros((B, seq_len), np.int32),
           "attention_mask": np.zeros((B, seq_len), bool), "loss_mask": np.zeros((B, seq_len), bool),
           "segment_ids": np.zeros((B, seq_len), np.int32)}
    if share_prompt:
        out["branch_ids"] = np.zeros((B, seq_len), np.int32)
    for b, row in enumerate(rows):
        tokens, positions, segs, branches, loss, ends = lay_row(encoded, row, share_prompt)
        t = seq_len - len(tokens)
        row_ends.append([t + end for end in ends])
        out["tokens"][b, t:] = tokens
        out["positions"][b, t:] = positions
        out["attention_mask"][b, t:] = True
        out["loss_mask"][b, t:] = loss
        out["segment_ids"][b, t:] = segs
        if share_prompt:
            out["branch_ids"][b, t:] = branches
    return out, row_ends


def shared_units(encoded, seq_len: int, share_prompt: bool, groups=None) -> list[list[int]]:
    """`encoded` split into units that a row keeps together: without `share_prompt`, each (prompt, response);
    with it, runs of consecutive members with the same prompt (and the same `groups` entry, e.g. the record
    each came from), cut where the next response would not fit in seq_len with the prompt and the responses
    before it (the next unit lays the prompt again)."""
    units, used, last = [], 0, None
    for j, (prompt, response) in enumerate(encoded):
        key = (list(prompt), None if groups is None else groups[j])
        if share_prompt and units and key == last and used + len(response) <= seq_len:
            units[-1].append(j)
            used += len(response)
        else:
            units.append([j])
            used, last = len(prompt) + len(response), key
    return units


def unit_length(encoded, unit) -> int:
    """Tokens a unit of `shared_units` takes in a row: its prompt once, then every response."""
    return len(encoded[unit[0]][0]) + sum(len(encoded[j][1]) for j in unit)


def epoch_rows(lengths, seq_len: int, seed: int, epoch: int, window: int) -> list[list[int]]:
    """The rows of one SFT epoch: its seeded order packed best-fit within windows (0 = greedily in order)."""
    order = batching.epoch_order(len(lengths), seed, epoch)
    if window:
        return best_fit_rows(lengths, seq_len, order, window, [seed, epoch])
    return pack_rows(lengths, seq_len, order)


def packed_batches(encoded, batch_size: int, seq_len: int, seed: int, epochs: float, pad_id: int,
                   window: int = 0):
    """(batches(step), steps): each epoch a fresh seeded order packed greedily (`pack_rows`), or best-fit
    within windows of `window` examples (`best_fit_rows`); a pure function of step."""
    lengths = [len(p) + len(r) for p, r in encoded]
    rows = []
    for epoch in range(max(1, math.ceil(epochs))):
        rows += epoch_rows(lengths, seq_len, seed, epoch, window)
    per_epoch = len(rows) / max(1, math.ceil(epochs))
    steps = max(1, math.ceil(epochs * per_epoch / batch_size))

    def batches(step: int) -> dict:
        idx = (step * batch_size + np.arange(batch_size)) % len(rows)
        return packed_batch(encoded, batching.process_slice([rows[i] for i in idx]), seq_len, pad_id)

    return batches, steps


def _extend(n_rows: int, used: int, lengths, seq_len: int) -> tuple[int, int]:
    """Rows in use and tokens used in the last one after appending units of `lengths` row by row."""
    for n in lengths:
        n_rows, used = (n_rows, used + n) if used + n <= seq_len else (n_rows + 1, n)
    return n_rows, used


def prompt_rows(seg_lengths: list[list[int]], seq_len: int) -> int:
    """The most rows of `seq_len` tokens any one prompt's units take on their own: the fewest rows per step
    `pack_prompts` can pack these prompts into."""
    return max((_extend(0, seq_len, lengths, seq_len)[0] for lengths in seg_lengths), default=0)


def pack_prompts(seg_lengths: list[list[int]], order, rows: int, seq_len: int) -> list[list[int]]:
    """Batches of whole prompts taken in `order`: a prompt joins the current batch while its units
    (`shared_units`: a response with its prompt, or several sharing one), appended row by row as `pack_rows`
    lays them out, fit in `rows`."""
    extend = lambda n_rows, used, lengths: _extend(n_rows, used, lengths, seq_len)  # noqa: E731

    batches, batch, fill = [], [], (0, seq_len)
    for i in order:
        new = extend(*fill, seg_lengths[i])
        if new[0] > rows and batch:
            batches.append(batch)
            batch, new = [], extend(0, seq_len, seg_lengths[i])
        if new[0] > rows:
            raise ValueError(f"one prompt's responses need {new[0]} rows of {seq_len} tokens, "
                             f"more than config.rm.packed_rows={rows}; raise it")
        batch.append(int(i))
        fill = new
    batches.append(batch)
    return batches


def pack_segments(encoded, layout, rows: int, seq_len: int, pad_id: int, max_segments: int,
                  share_prompt: bool = False) -> dict:
    """Packed rows (`packed_batch`, `rows` of them) of the (prompt ids, response ids) segments `encoded`
    laid out as `layout` (lists of indices into `encoded` per row), with seg_row / seg_end (max_segments,),
    the row and last token of encoded[j] at j. `share_prompt`: consecutive members with one prompt share it."""
    out, row_ends = _packed_rows(encoded, layout + [[]] * (rows - len(layout)), seq_len, pad_id, share_prompt)
    del out["loss_mask"]
    seg_row, seg_end = np.zeros(max_segments, np.int32), np.zeros(max_segments, np.int32)
    for row, (members, ends) in enumerate(zip(layout, row_ends)):
        for j, end in zip(members, ends):
            seg_row[j], seg_end[j] = row, end
    return {**out, "seg_row": seg_row, "seg_end": seg_end}


def pack_units(encoded, seq_len: int, share_prompt: bool, groups=None) -> list[list[int]]:
    """Rows (lists of indices into `encoded`, in order) of `shared_units` laid greedily by `pack_rows`."""
    units = shared_units(encoded, seq_len, share_prompt, groups)
    rows = pack_rows([unit_length(encoded, u) for u in units], seq_len, range(len(units)))
    return [[j for u in row for j in units[u]] for row in rows]


def packed_rm_batch(records, encoded, prompt_ids, rows: int, seq_len: int, pad_id: int, max_prompts: int,
                    max_segments: int, k_max: int, share_prompt: bool = False) -> dict:
    """The packed batch (`packed_scores`) of records `prompt_ids`; padding rows, segments and prompt slots
    are empty (no key, dropped slot, k_mask False). `share_prompt`: a prompt's K responses follow one copy of
    it (`lay_row`), about half the tokens of K (prompt, response) segments on the default's comparisons."""
    flat = [encoded[p][k] for p in prompt_ids for k in range(len(encoded[p]))]
    owner = [p for p in prompt_ids for _ in encoded[p]]  # units as packed_rm_batches counted them: per record
    out = pack_segments(flat, pack_units(flat, seq_len, share_prompt, owner), rows, seq_len, pad_id, max_segments,
                        share_prompt)
    seg_slot = np.full(max_segments, max_prompts * k_max, np.int32)
    k_mask, ranks = np.zeros((max_prompts, k_max), bool), np.full((max_prompts, k_max), -1, np.int32)
    s = 0
    for slot, p in enumerate(prompt_ids):
        k = len(records[p]["responses"])
        seg_slot[s:s + k] = slot * k_max + np.arange(k)
        k_mask[slot, :k], ranks[slot, :k] = True, records[p]["ranks"]
        s += k
    return {**out, "seg_slot": seg_slot, "k_mask": k_mask, "ranks": ranks}


def packed_rm_batches(records: list, tokenizer, rows: int, seq_len: int, seed: int, epochs: float, multiple: int,
                      share_prompt: bool = False, grow: bool = False):
    """(batches(step), steps) of packed K-wise batches: each epoch a fresh seeded prompt order packed by
    `pack_prompts`; prompt and segment slots are sized to the fullest batch (rounded up to `multiple`,
    the batch's split over devices), so every step has one shape. A pure function of step (exact resume).
    `share_prompt`: see `packed_rm_batch`. A prompt whose responses need more than `rows` rows is an error, or
    with `grow` every step gets the rows that prompt needs (rounded up to `multiple`; `batches.rows` says how
    many), so data that fits packs exactly as before and data that does not still trains whole."""
    encoded = [[(tokenizer.encode_prompt(r["prompt"]), tokenizer.encode_response(y)) for y in r["responses"]]
               for r in records]
    batching.check_lengths([len(a) + len(b) for e in encoded for a, b in e], seq_len, "RM responses")
    unit_lengths = [[unit_length(e, u) for u in shared_units(e, seq_len, share_prompt)] for e in encoded]
    up = lambda n: -(-n // multiple) * multiple  # noqa: E731
    if grow:
        rows = max(rows, up(prompt_rows(unit_lengths, seq_len)))
    n_epochs = max(1, math.ceil(epochs))
    plan = [b for e in range(n_epochs)
            for b in pack_prompts(unit_lengths, batching.epoch_order(len(records), seed, e), rows, seq_len)]
    steps = max(1, math.ceil(epochs * len(plan) / n_epochs))
    max_prompts = up(max(len(b) for b in plan))
    max_segments = up(max(sum(len(encoded[p]) for p in b) for b in plan))
    k_max = max(len(e) for e in encoded)

    def batches(step: int) -> dict:
        batch = packed_rm_batch(records, encoded, plan[step % len(plan)], rows, seq_len, tokenizer.pad_id,
                                max_prompts, max_segments, k_max, share_prompt)
        return {k: batching.process_slice(v) for k, v in batch.items()}

    batches.rows = rows
    return batches, steps
