"""Stage 2 of InstructGPT: the reward model (RM), trained on K-wise rankings (Ouyang et al. 2022, eq. 1).

The RM is the SFT network with the unembedding replaced by a scalar head (model.GPT.score, initialised
N(0, 1/sqrt(d+1))) read at each response's last real token. One batch element is one prompt with its K
ranked responses, (B, K, T); the K responses are forwarded once, as (B*K, T), and every ordered pair
(i better than j, both real responses, ranks not tied) contributes -log sigmoid(r_i - r_j), averaged over
the prompt's pairs (the paper's 1/C(K,2), which becomes 1/#untied pairs when ties are skipped) and then
over prompts. The paper trains one epoch because the RM overfits after one, and explains why it keeps a
prompt's pairs together: shuffled into independent examples, each response is forwarded K-1 times in
different updates and the RM overfits within one epoch. `config.rm.pairs_shuffled` trains that way
(TRL / OpenRLHF style) on the same pairs, to test the claim. After training the reward is normalised by
a bias (and optionally a gain) so that SFT samples score mean 0 (std 1), written to reward_norm.json.

Packing (`config.rm.packed_rows`): responses average a third of the padded (K, T) slots, so a packed step
lays each prompt + response out as one segment of shared rows (block-diagonal attention, its own
positions, read at its last token) and takes whole prompts until the rows are full; the loss is the same
function of the same scores (tested against the padded batch, gradient included).

  instructgpt rm --config configs/rm.py --workdir W/rm   (config.init_from = W/sft, data.train = W/compare/rm.jsonl)
"""

from __future__ import annotations

import json
import logging
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from instructgpt_jax import folders, sharding, train
from instructgpt_jax.data import batching
from instructgpt_jax.sft import (auto_seq_len, fetch, final_figures, pack_rows, packed_batch, packed_key_mask,
                                 shard_global, split_val)

log = logging.getLogger(__name__)


def rm_scores(model, tokens, positions, attention_mask, last_index, dropout_rng=None) -> jax.Array:
    """Raw scalar rewards (N,) of N sequences (N, T), read at `last_index` (N,): one trunk forward."""
    h, _ = model.trunk(tokens, positions, attention_mask, dropout_rng=dropout_rng)
    return model.score(h, last_index)


def kwise_loss(scores: jax.Array, ranks: jax.Array, k_mask: jax.Array) -> tuple[jax.Array, dict]:
    """Eq. 1 of the paper over a (B, K) batch of scores; ranks (B, K), 0 = best, ties share a rank.

    Returns (loss, {accuracy: share of untied valid pairs the scores order correctly, pairs: their count}).
    """
    valid = k_mask[:, :, None] & k_mask[:, None, :]
    better = (ranks[:, :, None] < ranks[:, None, :]) & valid  # (B, K, K): response i preferred over j
    diff = scores[:, :, None] - scores[:, None, :]
    n_pairs = better.sum((1, 2)).astype(jnp.float32)
    per_prompt = -jnp.where(better, jax.nn.log_sigmoid(diff), 0.0).sum((1, 2)) / jnp.maximum(n_pairs, 1.0)
    has_pairs = (n_pairs > 0).astype(jnp.float32)  # a prompt whose responses all tie teaches nothing
    loss = (per_prompt * has_pairs).sum() / jnp.maximum(has_pairs.sum(), 1.0)
    accuracy = (better & (diff > 0)).sum() / jnp.maximum(better.sum(), 1)
    return loss, {"accuracy": accuracy, "pairs": better.sum().astype(jnp.float32)}


def segment_scores(model, batch, dropout_rng=None) -> jax.Array:
    """Raw rewards (S,) of the segments of packed rows: tokens, positions, segment_ids (R, T); seg_row and
    seg_end (S,), each segment's row and last token. One trunk forward; a token sees only its segment."""
    h, _ = model.trunk(batch["tokens"], batch["positions"], packed_key_mask(batch["segment_ids"]),
                       dropout_rng=dropout_rng)
    return model.score(h[batch["seg_row"], batch["seg_end"]][:, None, :])[:, 0]


def packed_scores(model, batch, dropout_rng=None) -> jax.Array:
    """(P, K) scores of a packed RM batch (`segment_scores`); seg_slot (S,) is each segment's flat grid slot
    prompt * K + response (P * K for padding segments: dropped)."""
    P, K = batch["k_mask"].shape
    scores = segment_scores(model, batch, dropout_rng)
    return jnp.zeros(P * K, scores.dtype).at[batch["seg_slot"]].set(scores, mode="drop").reshape(P, K)


def rm_loss(model, batch, rng):
    """K-wise loss of an RM batch {tokens, positions, attention_mask (B, K, T), last_index, k_mask, ranks (B, K)},
    or of a packed one (`packed_scores`, with k_mask and ranks (P, K))."""
    if "segment_ids" in batch:
        scores = packed_scores(model, batch, dropout_rng=rng)
    else:
        B, K, T = batch["tokens"].shape
        flat = lambda x: x.reshape((B * K,) + x.shape[2:])  # noqa: E731 - (B, K, ...) -> (B*K, ...): one forward
        scores = rm_scores(model, flat(batch["tokens"]), flat(batch["positions"]), flat(batch["attention_mask"]),
                           flat(batch["last_index"]), dropout_rng=rng).reshape(B, K)
    loss, aux = kwise_loss(scores, batch["ranks"], batch["k_mask"])
    aux["batch_accuracy"] = aux.pop("accuracy")  # rm/accuracy is the held-out figure written by evaluate
    real = batch["k_mask"].astype(jnp.float32)
    aux["reward_mean"] = (scores * real).sum() / real.sum()
    return loss, aux


# ---------------------------------------------------------------- data

# Salt of the responses subsample_k keeps (with the run's seed), apart from split_val's sft.VAL_STREAM.
SUBSAMPLE_STREAM = 23


def subsample_k(records: list, k: int, response_budget: int, seed: int) -> list:
    """Each record cut to k random responses (the labeler's ranking restricted to them), records with fewer
    than k dropped; with a budget, only the first ceil(budget / k) records: equal labelling effort across K."""
    rng = np.random.default_rng([seed, SUBSAMPLE_STREAM])
    out = []
    need = math.ceil(response_budget / k) if response_budget else None
    for r in records:
        if need is not None and len(out) == need:
            break
        if len(r["responses"]) < k:
            continue
        keep = np.sort(rng.choice(len(r["responses"]), k, replace=False))
        ranks = np.unique(np.asarray(r["ranks"])[keep], return_inverse=True)[1]  # dense again
        out.append({"prompt": r["prompt"], "responses": [r["responses"][i] for i in keep], "ranks": ranks.tolist()})
    if need is not None and len(out) < need:
        raise ValueError(f"config.data.response_budget={response_budget} with config.data.k={k} needs {need} prompts "
                         f"with K >= {k}; the training data has {len(out)}")
    return out


def pack_prompts(seg_lengths: list[list[int]], order, rows: int, seq_len: int) -> list[list[int]]:
    """Batches of whole prompts taken in `order`: a prompt joins the current batch while its responses'
    segments (prompt + response each), appended row by row as `sft.pack_rows` lays them out, fit in `rows`."""

    def extend(n_rows, used, lengths):  # rows in use and tokens used in the last one, after appending `lengths`
        for n in lengths:
            n_rows, used = (n_rows, used + n) if used + n <= seq_len else (n_rows + 1, n)
        return n_rows, used

    batches, batch, fill = [], [], (0, seq_len)
    for i in order:
        new = extend(*fill, seg_lengths[i])
        if new[0] > rows and batch:
            batches.append(batch)
            batch, new = [], extend(0, seq_len, seg_lengths[i])
        if new[0] > rows:
            raise ValueError(f"one prompt's {len(seg_lengths[i])} responses need {new[0]} rows of {seq_len} tokens, "
                             f"more than config.rm.packed_rows={rows}; raise it")
        batch.append(int(i))
        fill = new
    batches.append(batch)
    return batches


def pack_segments(encoded, layout, rows: int, seq_len: int, pad_id: int, max_segments: int) -> dict:
    """Packed rows (sft.packed_batch, `rows` of them) of the (prompt ids, response ids) segments `encoded`
    laid out as `layout` (lists of indices into `encoded` per row), with seg_row / seg_end (max_segments,),
    the row and last token of encoded[j] at j."""
    out = packed_batch(encoded, layout + [[]] * (rows - len(layout)), seq_len, pad_id)
    del out["loss_mask"]
    seg_row, seg_end = np.zeros(max_segments, np.int32), np.zeros(max_segments, np.int32)
    for row, members in enumerate(layout):
        t = seq_len - sum(len(encoded[j][0]) + len(encoded[j][1]) for j in members)  # right-aligned, as packed_batch
        for j in members:
            t += len(encoded[j][0]) + len(encoded[j][1])
            seg_row[j], seg_end[j] = row, t - 1
    return {**out, "seg_row": seg_row, "seg_end": seg_end}


def packed_rm_batch(records, encoded, prompt_ids, rows: int, seq_len: int, pad_id: int, max_prompts: int,
                    max_segments: int, k_max: int) -> dict:
    """The packed batch (`packed_scores`) of records `prompt_ids`; padding rows, segments and prompt slots
    are empty (no key, dropped slot, k_mask False)."""
    flat = [encoded[p][k] for p in prompt_ids for k in range(len(encoded[p]))]
    out = pack_segments(flat, pack_rows([len(a) + len(b) for a, b in flat], seq_len, range(len(flat))), rows,
                        seq_len, pad_id, max_segments)
    seg_slot = np.full(max_segments, max_prompts * k_max, np.int32)
    k_mask, ranks = np.zeros((max_prompts, k_max), bool), np.full((max_prompts, k_max), -1, np.int32)
    s = 0
    for slot, p in enumerate(prompt_ids):
        k = len(records[p]["responses"])
        seg_slot[s:s + k] = slot * k_max + np.arange(k)
        k_mask[slot, :k], ranks[slot, :k] = True, records[p]["ranks"]
        s += k
    return {**out, "seg_slot": seg_slot, "k_mask": k_mask, "ranks": ranks}


def packed_rm_batches(records: list, tokenizer, rows: int, seq_len: int, seed: int, epochs: float, multiple: int):
    """(batches(step), steps) of packed K-wise batches: each epoch a fresh seeded prompt order packed by
    `pack_prompts`; prompt and segment slots are sized to the fullest batch (rounded up to `multiple`,
    the batch's split over devices), so every step has one shape. A pure function of step (exact resume)."""
    encoded = [[(tokenizer.encode_prompt(r["prompt"]), tokenizer.encode_response(y)) for y in r["responses"]]
               for r in records]
    batching.check_lengths([len(a) + len(b) for e in encoded for a, b in e], seq_len, "RM responses")
    seg_lengths = [[len(a) + len(b) for a, b in e] for e in encoded]
    n_epochs = max(1, math.ceil(epochs))
    plan = [b for e in range(n_epochs) for b in pack_prompts(seg_lengths, batching.epoch_order(len(records), seed, e),
                                                              rows, seq_len)]
    steps = max(1, math.ceil(epochs * len(plan) / n_epochs))
    up = lambda n: -(-n // multiple) * multiple  # noqa: E731
    max_prompts = up(max(len(b) for b in plan))
    max_segments = up(max(sum(len(seg_lengths[p]) for p in b) for b in plan))
    k_max = max(len(s) for s in seg_lengths)

    def batches(step: int) -> dict:
        batch = packed_rm_batch(records, encoded, plan[step % len(plan)], rows, seq_len, tokenizer.pad_id,
                                max_prompts, max_segments, k_max)
        return {k: batching.process_slice(v) for k, v in batch.items()}

    return batches, steps


def shuffled_pairs(records: list) -> list:
    """Every untied pair of every record as its own K = 2 example [better, worse] (TRL / OpenRLHF style)."""
    out = []
    for r in records:
        for i, (ri, yi) in enumerate(zip(r["ranks"], r["responses"])):
            for rj, yj in zip(r["ranks"], r["responses"]):
                if ri < rj:
                    out.append({"prompt": r["prompt"], "responses": [yi, yj], "ranks": [0, 1]})
    return out


# ---------------------------------------------------------------- scoring, evaluation, normalisation

def make_score_texts(setup: train.Setup, tokenizer, seq_len: int, batch_rows: int):
    """score_texts(params, prompts, responses) -> raw rewards (N,) as numpy. The sequences are packed as
    segments of `batch_rows` rows of seq_len per call (at most 4 * batch_rows segments: one compiled shape)."""

    @jax.jit
    def score(params, batch):
        return segment_scores(nnx.merge(setup.graphdef, params), batch)

    def score_texts(params, prompts, responses) -> np.ndarray:
        encoded = [(tokenizer.encode_prompt(p), tokenizer.encode_response(y)) for p, y in zip(prompts, responses)]
        if not encoded:
            return np.zeros(0, np.float32)
        lengths = [len(a) + len(b) for a, b in encoded]
        batching.check_lengths(lengths, seq_len, "scored sequences")
        layout = pack_rows(lengths, seq_len, range(len(encoded)))
        cap = batch_rows * max(4, -(-max(map(len, layout)) // batch_rows))
        out = []
        while layout:
            n_rows, n_segs = 0, 0
            while n_rows < min(batch_rows, len(layout)) and n_segs + len(layout[n_rows]) <= cap:
                n_segs += len(layout[n_rows])
                n_rows += 1
            chunk, layout = layout[:n_rows], layout[n_rows:]
            first = chunk[0][0]
            local = [[j - first for j in row] for row in chunk]
            batch = pack_segments(encoded[first:first + n_segs], local, batch_rows, seq_len, tokenizer.pad_id, cap)
            out.append(np.asarray(fetch(score(params, shard_global(batch, setup.mesh))))[:n_segs])
        return np.concatenate(out)

    return score_texts


def _grid(records, flat_values, k_max: int):
    """Flat per-response values -> (R, k_max) array, with the k_mask and ranks of the records."""
    R = len(records)
    grid, k_mask, ranks = np.zeros((R, k_max), np.float32), np.zeros((R, k_max), bool), np.full((R, k_max), -1)
    start = 0
    for i, r in enumerate(records):
        k = len(r["responses"])
        grid[i, :k], k_mask[i, :k], ranks[i, :k] = flat_values[start:start + k], True, r["ranks"]
        start += k
    return grid, k_mask, ranks


def pairwise_agreement(a: np.ndarray, b: np.ndarray, k_mask: np.ndarray) -> float:
    """Share of pairs ordered strictly by b (b_i > b_j) that a orders the same way (a_i > a_j)."""
    valid = k_mask[:, :, None] & k_mask[:, None, :] & (b[:, :, None] > b[:, None, :] + 1e-6)
    return float((valid & (a[:, :, None] > a[:, None, :])).sum() / max(valid.sum(), 1))


def evaluate_records(score_texts, params, records: list, prefix: str, gold=None, tokenizer=None) -> dict:
    """Loss and pair accuracy of the RM on K-wise records; with `gold`, agreement with the gold judge and
    length correlations (of the RM's scores, and of the gold scores for reference)."""
    prompts = [r["prompt"] for r in records for _ in r["responses"]]
    responses = [y for r in records for y in r["responses"]]
    flat = score_texts(params, prompts, responses)
    k_max = max(len(r["responses"]) for r in records)
    scores, k_mask, ranks = _grid(records, flat, k_max)
    loss, aux = kwise_loss(jnp.asarray(scores), jnp.asarray(ranks), jnp.asarray(k_mask))
    out = {f"{prefix}loss": float(loss), f"{prefix}accuracy": float(aux["accuracy"])}
    if gold is not None:
        gold_flat = np.asarray(gold(prompts, responses), np.float32)
        gold_grid = _grid(records, gold_flat, k_max)[0]
        lengths = np.array([len(tokenizer.encode_response(y)) for y in responses], np.float64)
        out[f"{prefix}gold_accuracy"] = pairwise_agreement(scores, gold_grid, k_mask)
        # The labels' own agreement with the gold judge: the most an RM fitted to these labels can expect.
        out[f"{prefix}label_gold_accuracy"] = pairwise_agreement(-ranks.astype(np.float32), gold_grid, k_mask)
        out[f"{prefix}length_corr"] = float(np.corrcoef(flat, lengths)[0, 1])
        out[f"{prefix}gold_length_corr"] = float(np.corrcoef(gold_flat, lengths)[0, 1])
    return out


def reward_norm(raw: np.ndarray, gain: bool) -> dict:
    """Bias (and gain) so that (raw - mean) / std has mean 0 (and std 1) on `raw`."""
    return {"mean": float(np.mean(raw)), "std": float(np.std(raw)) if gain else 1.0, "gain": bool(gain), "n": len(raw)}


def load_reward_norm(rm_dir: str) -> dict:
    """{"mean", "std"} of an RM stage folder: normalised reward = (raw - mean) / std."""
    path = os.path.join(rm_dir, "reward_norm.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no reward normalisation; run (or finish) the RM stage in {rm_dir}")
    with open(path) as f:
        norm = json.load(f)
    for key in ("mean", "std"):
        if not isinstance(norm.get(key), (int, float)) or not math.isfinite(norm[key]):
            raise ValueError(f"{path}: field {key!r} must be a finite number, got {norm.get(key)!r}")
    if norm["std"] <= 0:
        raise ValueError(f"{path}: field 'std' must be > 0, got {norm['std']}")
    return norm


# ---------------------------------------------------------------- the stage

def read_comparisons(path: str, data_cfg, tokenizer, model_vocab_size: int) -> list[dict]:
    """K-wise RM JSONL as config.data says (k_max, token limits, overflow), validated against the model vocab."""
    from instructgpt_jax.data import formats

    d = data_cfg
    return list(formats.read_rm(path, tokenizer, k_max=d.k_max, max_prompt_tokens=d.max_prompt_tokens,
                                max_response_tokens=d.max_response_tokens, overflow=d.overflow,
                                model_vocab_size=model_vocab_size))


def fit_seq_len(records: list[dict], tokenizer, seq_len: int, n_positions: int) -> int:
    """`seq_len`, or with 0 the longest prompt + response of `records` rounded up (sft.auto_seq_len)."""
    lengths = [len(tokenizer.encode_prompt(r["prompt"])) + len(tokenizer.encode_response(y))
               for r in records for y in r["responses"]]
    return seq_len or auto_seq_len(lengths, n_positions)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Train the RM from `config.init_from` (SFT) on `config.data.train` into `workdir`; returns the figures."""
    from instructgpt_jax.data import formats
    from instructgpt_jax.data.world import gold_judge
    from instructgpt_jax.tokenizer import check_vocab, make_tokenizer

    if not config.init_from:
        raise ValueError("config.init_from is empty; expected the SFT stage folder (e.g. W/sft)")
    if not config.data.train:
        raise ValueError("config.data.train is empty; expected K-wise RM JSONL (e.g. W/compare/rm.jsonl)")
    # The SFT network's architecture and tokenizer, with a scalar head (init_from may be an RM: a later round).
    config, model_cfg = folders.inferred(config, "init_from", scalar_head=True, policy=False)
    folders.check_rerun(workdir, config, "rm", model_cfg=model_cfg)
    d, t, rm = config.data, config.train, config.rm
    tokenizer = make_tokenizer(d.tokenizer)
    check_vocab(tokenizer, model_cfg.vocab_size)
    read = lambda path: read_comparisons(path, d, tokenizer, model_cfg.vocab_size)  # noqa: E731
    records = read(d.train)
    if d.val:
        train_recs, val_recs = records, read(d.val)
    else:
        train_recs, val_recs = split_val(records, d.val_fraction, t.seed, d.train)
    if d.k:
        train_recs = subsample_k(train_recs, d.k, d.response_budget, t.seed)
    elif d.response_budget:
        raise ValueError("config.data.response_budget needs config.data.k (the K every training prompt is cut to)")
    if d.get("max_prompts", 0):
        if d.max_prompts > len(train_recs):
            raise ValueError(f"config.data.max_prompts={d.max_prompts}: the training data has {len(train_recs)} prompts")
        train_recs = train_recs[:d.max_prompts]   # the data-scaling curve (configs/ablations/rm_data.py)
    seq_len = fit_seq_len(records + val_recs, tokenizer, t.seq_len, model_cfg.n_positions)

    if rm.pairs_shuffled:
        examples, batch_size = shuffled_pairs(train_recs), rm.pair_batch_size
    else:
        examples, batch_size = train_recs, t.batch_size
    k_max = max(len(r["responses"]) for r in examples)  # pad K only to what the data needs
    mesh = sharding.make_mesh(config.mesh.shape)
    if rm.packed_rows:
        if rm.pairs_shuffled:
            raise ValueError("config.rm.packed_rows packs whole prompts; set it to 0 with config.rm.pairs_shuffled")
        sharding.check_divisible(rm.packed_rows, mesh, "config.rm.packed_rows")
        batches, epoch_steps = packed_rm_batches(examples, tokenizer, rm.packed_rows, seq_len, t.seed, t.epochs,
                                                 mesh.shape["data"] * mesh.shape["fsdp"])
    else:
        sharding.check_divisible(batch_size, mesh, "config.rm.pair_batch_size" if rm.pairs_shuffled else "config.train.batch_size")
        batches = batching.rm_batches(examples, tokenizer, batch_size, seq_len, k_max, t.seed)
        epoch_steps = max(1, math.ceil(t.epochs * len(examples) / batch_size))
    steps = t.steps or epoch_steps
    setup = train.make_setup(model_cfg, config.mesh, train.make_optimizer(config.optim, steps))
    sharding.check_divisible(config.eval.batch_rows, setup.mesh, "config.eval.batch_rows")
    log.info("rm: %d train prompts (%d examples, K <= %d), %d val prompts, seq_len %d, %d steps%s", len(train_recs),
             len(examples), k_max, len(val_recs), seq_len, steps,
             f" (packed: {rm.packed_rows} rows per step)" if rm.packed_rows else "")

    gold = gold_judge(config.eval.gold_judge)
    score_texts = make_score_texts(setup, tokenizer, seq_len, config.eval.batch_rows)
    # The same training prompts (K-wise, whatever the batching) against held-out ones: the overfitting gap.
    train_probe = train_recs[:len(val_recs)]

    def evaluate(state, step):
        out = evaluate_records(score_texts, state["params"], val_recs, "rm/", gold, tokenizer)
        out = {("rm/val_loss" if k == "rm/loss" else k): v for k, v in out.items()}
        probe = evaluate_records(score_texts, state["params"], train_probe, "rm/train_")
        return {**out, "rm/train_eval_loss": probe["rm/train_loss"], "rm/train_eval_accuracy": probe["rm/train_accuracy"]}

    state = train.run(stage="rm", workdir=workdir, config=config, setup=setup, loss_fn=rm_loss, batches=batches,
                      total_steps=steps, init_params=lambda: train.params_from(setup, config.init_from),
                      evaluate=evaluate, meta={"tokenizer": d.tokenizer, "seq_len": seq_len})

    norm_path = os.path.join(workdir, "reward_norm.json")
    # Normalise on SFT samples: the responses of the RM data when the compare stage wrote it, or an SFT
    # JSONL's (prompt, response) pairs (the paper's wording: labeler demonstrations score mean 0).
    if config.norm.data:
        # The RM data's budgets: scored sequences must fit seq_len, and a TL;DR post is cut to fit them.
        pairs = [(ex["prompt"], ex["response"]) for ex in formats.read_sft(
            config.norm.data, tokenizer, max_prompt_tokens=d.max_prompt_tokens,
            max_response_tokens=d.max_response_tokens, overflow=d.overflow)]
    else:
        pairs = [(r["prompt"], y) for r in records for y in r["responses"]]
    pairs = pairs[:config.norm.num_responses]
    with jax.set_mesh(setup.mesh):
        raw = score_texts(state["params"], [p for p, _ in pairs], [y for _, y in pairs])
    norm = {**reward_norm(raw, config.norm.gain), "source": config.norm.data or d.train}
    if jax.process_index() == 0:
        formats.write_json(norm_path, norm)
    return {**final_figures(workdir, "rm"), "rm/norm_mean": load_reward_norm(workdir)["mean"],
            "rm/norm_std": load_reward_norm(workdir)["std"]}
