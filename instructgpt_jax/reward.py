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
The stage that trains it: stages/rm.py.

Packing (`config.rm.packed_rows`): responses average a third of the padded (K, T) slots, so a packed step
lays each prompt + response out as one segment of shared rows (block-diagonal attention, its own
positions, read at its last token) and takes whole prompts until the rows are full; the loss is the same
function of the same scores (tested against the padded batch, gradient included).
"""

from __future__ import annotations

import json
import logging
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from instructgpt_jax import sharding
from instructgpt_jax.data import batching
from instructgpt_jax.data.packing import auto_seq_len, pack_segments, pack_units
from instructgpt_jax.model import packed_key_mask

log = logging.getLogger(__name__)


def rm_scores(model, tokens, positions, key_mask, last_index, rows=None, dropout_rng=None) -> jax.Array:
    """The RM read: raw scalar rewards from one trunk forward, the head read at each sequence's last token.

    Without `rows`: one score per sequence (N,) of N sequences (N, T), read at `last_index` (N,). With
    `rows` (S,): S scores read at (rows[s], last_index[s]): the segments of packed rows. Training, the RM
    stage's scoring, evaluation and PPO's rollouts all read the RM through this function.
    """
    h, _ = model.trunk(tokens, positions, key_mask, dropout_rng=dropout_rng)
    if rows is None:
        return model.score(h, last_index)
    return model.score(h[rows, last_index][:, None, :])[:, 0]


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
    seg_end (S,), each segment's row and last token. One trunk forward; a token sees only its segment (and
    with branch_ids, of responses sharing a prompt, the prompt and its own response)."""
    key_mask = packed_key_mask(batch["segment_ids"], batch.get("branch_ids"))
    return rm_scores(model, batch["tokens"], batch["positions"], key_mask,
                     batch["seg_end"], rows=batch["seg_row"], dropout_rng=dropout_rng)


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

# Salt of the responses subsample_k keeps (with the run's seed), apart from split_val's batching.VAL_STREAM.
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

def make_score_texts(graphdef, mesh, tokenizer, seq_len: int | None, batch_rows: int, share_prompt: bool = True):
    """score_texts(params, prompts, responses) -> raw rewards (N,) as numpy: the RM read of texts, used by the
    RM stage, evaluation and the probes. The (prompt, response) sequences, each encoded as the RM's training
    data is, are packed as segments of `batch_rows` rows of seq_len per call (at most 4 * batch_rows
    segments: one compiled shape); `seq_len=None` fits each call's longest sequence (packing.auto_seq_len).
    `share_prompt`: consecutive texts with one prompt share a copy of it (packing.lay_row; same scores)."""

    @jax.jit
    def score(params, batch):
        return segment_scores(nnx.merge(graphdef, params), batch)

    def score_texts(params, prompts, responses) -> np.ndarray:
        encoded = [(tokenizer.encode_prompt(p), tokenizer.encode_response(y)) for p, y in zip(prompts, responses)]
        if not encoded:
            return np.zeros(0, np.float32)
        lengths = [len(a) + len(b) for a, b in encoded]
        row_len = seq_len or auto_seq_len(lengths)
        batching.check_lengths(lengths, row_len, "scored sequences")
        layout = pack_units(encoded, row_len, share_prompt)
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
            batch = pack_segments(encoded[first:first + n_segs], local, batch_rows, row_len, tokenizer.pad_id, cap,
                                  share_prompt)
            out.append(np.asarray(sharding.to_host(score(params, sharding.put_global(batch, mesh))))[:n_segs])
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


def pairwise_counts(a: np.ndarray, b: np.ndarray, k_mask: np.ndarray) -> tuple[int, int]:
    """(agreeing, pairs) over (R, K) arrays: the pairs ordered strictly by b (b_i > b_j + 1e-6), and how many of
    them a orders the same way (a_i > a_j; a tie in a disagrees)."""
    valid = k_mask[:, :, None] & k_mask[:, None, :] & (b[:, :, None] > b[:, None, :] + 1e-6)
    return int((valid & (a[:, :, None] > a[:, None, :])).sum()), int(valid.sum())


def pairwise_agreement(a: np.ndarray, b: np.ndarray, k_mask: np.ndarray) -> float:
    """Share of pairs ordered strictly by b (b_i > b_j) that a orders the same way (a_i > a_j)."""
    agree, pairs = pairwise_counts(a, b, k_mask)
    return agree / max(pairs, 1)


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
