"""The evaluation's checks of the reward model: its agreement with the labelers' rankings of fresh K-wise
comparisons (per K and per family, beside a second labeler's), and best-of-n, the RM's pick among n samples
against the gold judge's (figures: eval_figures.rm_agreement, eval_figures.best_of_n).

`ec` is config.eval as evaluate.EvalConfig; evaluate.run calls these on the held-out eval prompts, and
experiments/rm_probe.py on samples of its own.
"""

from __future__ import annotations

import logging

import numpy as np

from instructgpt_jax import eval_figures
from instructgpt_jax.reward import make_score_texts
from instructgpt_jax.sampling import generate_texts

log = logging.getLogger(__name__)


def rm_text_scores(rm_graphdef, rm_params, norm, tokenizer, items, ec, mesh) -> np.ndarray:
    """Normalised RM scores of (prompt, response) texts, each encoded as the RM's training data is."""
    score_texts = make_score_texts(rm_graphdef, mesh, tokenizer, None, ec.batch_size)
    raw = score_texts(rm_params, [p for p, _ in items], [y for _, y in items])
    return (np.asarray(raw, np.float64) - norm["mean"]) / norm["std"]


# Salts of rm_accuracy's NumPy streams of config.eval.seed: the candidates and first labeler, the second labeler.
RM_LABELER_STREAM, RM_SECOND_LABELER_STREAM = 7, 8


def rm_accuracy(world, rm_graphdef, rm_params, norm, tokenizer, rows, ec, mesh, samples=None) -> dict:
    """RM agreement with labeler rankings of K responses per held-out prompt, for each K of `ec.rm_k`, and per
    family beside a second, different labeler's agreement with the first (eval_figures.rm_agreement).

    The responses are the first K of `samples[i]` (distinct policy samples for rows[i]; a prompt with fewer
    than K is left out of that K, and counted), else K world-made candidates.
    """
    rng = np.random.default_rng([ec.seed, RM_LABELER_STREAM])
    # The second labeler draws from a stream of its own, so the first labeler's figures are as without it.
    rng_b = np.random.default_rng([ec.seed, RM_SECOND_LABELER_STREAM])
    n_labelers = world.labelers.n
    items, groups = [], []  # items: (prompt, response); groups: (K, slice, ranks, second ranks, gold, family)
    for k in ec.rm_k:
        for i, r in enumerate(rows[:ec.rm_prompts]):
            if samples is not None and len(samples[i]) < k:
                continue
            responses = world.candidates(r["prompt"], k, rng) if samples is None else samples[i][:k]
            labeler = int(rng.integers(n_labelers))
            ranks = world.rank(r["prompt"], responses, labeler, rng)
            other = (labeler + 1 + int(rng_b.integers(n_labelers - 1))) % n_labelers
            ranks_b = world.rank(r["prompt"], responses, other, rng_b)
            family = eval_figures.row_family(world, r)
            groups.append((k, slice(len(items), len(items) + k), ranks, ranks_b,
                           world.gold_score([r["prompt"]] * k, responses), family))
            items += [(r["prompt"], y) for y in responses]
    if not items:  # a policy that repeats itself: no prompt with 2 distinct samples
        log.warning("RM accuracy: none of %d held-out prompts has %d distinct samples", len(rows), min(ec.rm_k))
        return {"accuracy": None, "gold_accuracy": None, "accuracy_by_k": {}, "top1_by_k": {}, "prompts_per_k": {},
                "labeler_agreement": None, "accuracy_by_family": {}, "labeler_agreement_by_family": {},
                "pairs_by_family": {}}
    scores = rm_text_scores(rm_graphdef, rm_params, norm, tokenizer, items, ec, mesh)
    return eval_figures.rm_agreement(groups, scores, ec.rm_k)


def sample_draws(generate, params, tokenizer, prompts, n: int, prompt_len, ec, mesh,
                 rng) -> list[list[str]]:
    """n raw samples per prompt (duplicates and blanks kept), in sampling order, as the compare stage draws them."""
    texts, _ = generate_texts(generate, params, tokenizer, [p for p in prompts for _ in range(n)], prompt_len,
                              ec.batch_size, rng, mesh)
    return [texts[i * n:(i + 1) * n] for i in range(len(prompts))]


def best_of_n(world, rm_graphdef, rm_params, norm, tokenizer, prompts, draws, ec, mesh,
              judge=None, families=None) -> dict:
    """Best-of-n figures (eval_figures.best_of_n) of the raw samples `draws[i]` of prompts[i], all of one count.
    `judge` (responses -> the labelers' verdicts against the reference's answers to `prompts`) adds the win
    rates of the RM's and the oracle's picks; `families` (one per prompt) the curves per family."""
    items = [(p, y) for p, ys in zip(prompts, draws) for y in ys]
    shape = (len(prompts), len(draws[0]))
    rm = rm_text_scores(rm_graphdef, rm_params, norm, tokenizer, items, ec, mesh).reshape(shape)
    gold = world.gold_score([p for p, _ in items], [y for _, y in items]).reshape(shape)
    wins = None if judge is None else lambda picks: judge([d[i] for d, i in zip(draws, picks)])  # noqa: E731
    return eval_figures.best_of_n(rm, gold, ec.best_of_n, wins, families)
