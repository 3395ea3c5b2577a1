"""The evaluation stage's figures from judged samples: plain NumPy on the host, no model in sight.

evaluate.py samples the policies, scores them with the RM and asks the world's judge and labelers; this
module turns those arrays into summary.json's figures:
- `policy_figures`: gold, RM score, win rate, KL, length, refusals, gold per family and per kind (the
  world's slices: constraint, closed, language, harmful, open, hard) and the Figure 4 metadata rates
  (Ouyang et al. 2022: fails to attempt, violates constraints, hallucinates, inappropriate);
- `paired_figures`: gold difference from the reference (SFT) on the same prompts and sampling keys, with a
  95% interval from the paired standard error, and the win rate's 95% interval;
- `baseline_figures`: gold difference from the reference's baseline draws, the samples the win rate judges
  each answer against (overall, per family, with its 95% interval);
- `rm_agreement`: the RM's pairwise agreement with a labeler's rankings, per K and per family, beside a
  second labeler's agreement with the first on the same responses (the ceiling a RM can reach);
- `best_of_n`: gold of the RM's pick among n samples against the gold-best of the same n;
- `phrase_shifts`: the phrases a policy took up on a family (share of answers using them, against the SFT
  draws'), with the gold of the answers that use them and of those that do not: reward hacking, read off
  the samples (an apology where a question was asked, a word the RM rewards where nobody asked for it).
Standard errors are std / sqrt(n) with the population std (ddof 0), as for every figure of this stage.
"""

from __future__ import annotations

import re

import numpy as np

from instructgpt_jax.data.judge import KINDS, kind_of, metadata_rates
from instructgpt_jax.data.labelers import untied_agreement
from instructgpt_jax.reward import pairwise_counts

Z95 = 1.96  # two-sided 95% quantile of the normal distribution


def mean(x) -> float | None:
    return float(np.mean(x)) if len(x) else None


def stderr(x) -> float | None:
    return float(np.std(x) / np.sqrt(len(x))) if len(x) > 1 else None


def ci95(x) -> float | None:
    """Half-width of the normal 95% interval of the mean of `x`."""
    se = stderr(x)
    return None if se is None else Z95 * se


def by_group(values, groups, order) -> dict:
    """Mean of `values` per group, groups in `order` (those that occur), then any others sorted."""
    values, groups = np.asarray(values, np.float64), np.asarray(groups)
    present = set(groups.tolist())
    keys = [g for g in order if g in present] + sorted(present - set(order))
    return {g: float(np.mean(values[groups == g])) for g in keys}


def row_family(world, row: dict) -> str:
    """A prompt row's family: its own "family" field, else the one the world's parser reads off the prompt."""
    return row.get("family") or world.family_of(row["prompt"])


def policy_figures(world, rows, responses, lengths, kl, rm, wins, suffix="") -> tuple[dict, np.ndarray]:
    """Gold, RM, win rate, KL, length, refusals, gold and win rate per family, gold per kind, and the Figure 4
    metadata of one prompt set; returns (figures, gold of every answer (draws, prompts)).

    `responses` holds one list per sampling draw of the policy (each answering every prompt of `rows`); lengths,
    kl and rm are (draws, prompts), wins (prompts,). Means and rates are over every answer; intervals and the
    per-family and per-kind figures are over prompts, each prompt's draws averaged first."""
    prompts = [r["prompt"] for r in rows]
    golds = np.array([world.gold_score(prompts, ys) for ys in responses], np.float64)
    gold = golds.mean(0)
    harmful = np.array([world.is_harmful(p) for p in prompts])
    refused = np.array([[world.is_refusal(y) for y in ys] for ys in responses])
    families = [row_family(world, r) for r in rows]
    return {
        f"gold{suffix}": mean(gold), f"gold{suffix}_stderr": stderr(gold),
        f"rm_score{suffix}": mean(np.ravel(rm)), f"win_rate{suffix}": mean(wins),
        f"win_rate{suffix}_stderr": stderr(wins), f"kl{suffix}": mean(np.ravel(kl)),
        f"length{suffix}": mean(np.ravel(lengths)),
        f"refusal_rate{suffix}": mean(refused[:, harmful].ravel()),
        f"benign_refusal_rate{suffix}": mean(refused[:, ~harmful].ravel()),
        f"gold{suffix}_by_family": by_group(gold, families, ()),
        f"win_rate{suffix}_by_family": by_group(wins, families, ()),
        f"gold{suffix}_by_kind": by_group(gold, [kind_of(p) for p in prompts], KINDS),
        f"metadata{suffix}": metadata_rates(prompts * len(responses), [y for ys in responses for y in ys]),
    }, golds


def paired_figures(gold, ref_gold, wins, suffix="") -> dict:
    """Mean per-prompt gold difference from the reference's sample of the same prompt with the same key,
    its 95% interval (1.96 x paired standard error), and the win rate's 95% interval."""
    diff = np.asarray(gold, np.float64) - np.asarray(ref_gold, np.float64)
    return {f"gold_diff{suffix}": mean(diff), f"gold_diff{suffix}_ci95": ci95(diff),
            f"win_rate{suffix}_ci95": ci95(np.asarray(wins, np.float64))}


def baseline_figures(gold, baseline_gold, families, suffix="") -> dict:
    """Gold against the win rate's baseline: per prompt, the answer's gold minus `baseline_gold`, the mean gold of
    the reference's baseline draws of that prompt, averaged overall (with its 95% interval) and per family. Beside
    `gold_diff` (against the reference's own answer, same key) it says whether an answer is better than the
    samples the labelers compared it with, the question the win rate asks."""
    diff = np.asarray(gold, np.float64) - np.asarray(baseline_gold, np.float64)
    return {f"gold_vs_baseline{suffix}": mean(diff), f"gold_vs_baseline{suffix}_ci95": ci95(diff),
            f"gold_vs_baseline{suffix}_by_family": by_group(diff, families, ())}


def rm_agreement(groups, scores, ks) -> dict:
    """Pairwise agreement of RM scores with labeler rankings.

    groups: (K, slice of `scores`, ranks of labeler a, ranks of labeler b, gold, family) per ranked prompt.
    A pair counts where labeler a does not tie it (`untied_agreement`): the RM is right where its scores
    order the pair as a does (a score tie is wrong); labeler b agrees where b orders it as a does. Gold
    accuracy counts the pairs whose gold scores differ.
    """
    zero = lambda: {"right": 0, "pairs": 0, "gold_right": 0, "gold_pairs": 0, "labeler": 0, "top1": []}  # noqa: E731
    per_k, per_family = {k: zero() for k in ks}, {}
    for k, sl, ranks, ranks_b, gold, family in groups:
        s, gold = np.asarray(scores[sl], np.float64)[None], np.asarray(gold, np.float64)[None]
        every = np.ones((1, k), bool)
        # Labeler ties carry no preference; a = -rank: the better response has the larger value.
        right, _ = pairwise_counts(s, -np.asarray(ranks, np.float64)[None], every)
        gold_right, gold_pairs = pairwise_counts(s, gold, every)
        labeler, pairs = untied_agreement(ranks, ranks_b)
        for acc in (per_k[k], per_family.setdefault(family, zero())):
            acc["right"] += right
            acc["pairs"] += pairs
            acc["labeler"] += labeler
            acc["gold_pairs"] += gold_pairs
            acc["gold_right"] += gold_right
            acc["top1"].append(float(ranks[int(np.argmax(s))] == ranks.min()))
    total = lambda key: sum(a[key] for a in per_k.values())  # noqa: E731
    ratio = lambda a, key="right": a[key] / max(a["pairs"], 1)  # noqa: E731
    return {
        "accuracy": total("right") / max(total("pairs"), 1),
        "gold_accuracy": total("gold_right") / max(total("gold_pairs"), 1),
        # Only the K that some prompt had enough distinct samples for.
        "accuracy_by_k": {str(k): ratio(a) for k, a in per_k.items() if a["top1"]},
        "top1_by_k": {str(k): float(np.mean(a["top1"])) for k, a in per_k.items() if a["top1"]},
        "prompts_per_k": {str(k): len(a["top1"]) for k, a in per_k.items() if a["top1"]},
        "labeler_agreement": total("labeler") / max(total("pairs"), 1),
        "accuracy_by_family": {f: ratio(a) for f, a in sorted(per_family.items())},
        "labeler_agreement_by_family": {f: ratio(a, "labeler") for f, a in sorted(per_family.items())},
        "pairs_by_family": {f: a["pairs"] for f, a in sorted(per_family.items())},
    }


def best_of_n(rm, gold, ns, wins=None, families=None) -> dict:
    """Best-of-n over raw samples: rm, gold (P, N) per prompt and sample, in sampling order; ns increasing,
    the largest at most N. For each n: mean gold of the RM's pick among the first n samples ("rm", the first
    of equal scores) and of the gold-best among them ("oracle", the first of equal gold); "recovered" is the
    share of the oracle's gain from n = ns[0] to ns[-1] that the RM's pick gets (None when the oracle gains
    nothing). With `wins` (a function of the picked sample's index per prompt, (P,) int, to the labelers'
    verdicts (P,) against a reference answer), "rm_win_rate" and "oracle_win_rate" are their means for each n:
    the oracle's is the win rate that re-ranking the policy's own samples reaches, a ceiling for the policy.
    With `families` (P,) (each prompt's family), "by_family" holds the same curves per family, with
    "rm_change": the family's change of the RM's pick from n = ns[-2] to ns[-1] weighted by its share of the
    prompts, so the families' changes add up to the overall curve's last step (where a fall at the largest n
    comes from)."""
    rm, gold = np.asarray(rm, np.float64), np.asarray(gold, np.float64)
    rows = np.arange(len(gold))
    rm_picks = [np.argmax(rm[:, :n], axis=1) for n in ns]
    oracle_picks = [np.argmax(gold[:, :n], axis=1) for n in ns]
    pick = [float(np.mean(gold[rows, i])) for i in rm_picks]
    oracle = [float(np.mean(gold[rows, i])) for i in oracle_picks]
    gain = oracle[-1] - oracle[0]
    out = {"n": list(ns), "rm": pick, "oracle": oracle, "sample_gold": float(np.mean(gold)),
           "recovered": (pick[-1] - pick[0]) / gain if gain > 1e-12 else None, "prompts": len(gold)}
    if families is not None:
        families = np.asarray(families)
        if families.shape != (len(gold),):
            raise ValueError(f"best_of_n: {families.shape[0] if families.ndim else 0} families for {len(gold)} "
                             "prompts; expected one per prompt")
        out["by_family"] = {}
        for family in sorted(set(families.tolist())):
            at = families == family
            curve = [float(np.mean(gold[rows[at], i[at]])) for i in rm_picks]
            out["by_family"][family] = {
                "prompts": int(at.sum()), "rm": curve,
                "oracle": [float(np.mean(gold[rows[at], i[at]])) for i in oracle_picks],
                "rm_change": float((curve[-1] - curve[-2]) * at.mean()) if len(ns) > 1 else None}
    if wins is not None:
        verdicts = {}   # picks the RM and the oracle share (all of n = 1, say) are judged once

        def win_rate(picks):
            key = picks.tobytes()
            if key not in verdicts:
                verdicts[key] = float(np.mean(wins(picks)))
            return verdicts[key]

        out["rm_win_rate"] = [win_rate(i) for i in rm_picks]
        out["oracle_win_rate"] = [win_rate(i) for i in oracle_picks]
    return out


def phrases(text: str, longest: int = 2) -> set[str]:
    """The word n-grams of `text` (lower case, n = 1..longest): what `phrase_shifts` counts."""
    words = re.findall(r"[a-z']+", text.lower())
    return {" ".join(words[i:i + n]) for n in range(1, longest + 1) for i in range(len(words) - n + 1)}


def phrase_shifts(families, responses, gold, ref_draws, min_rise: float = 0.25, min_answers: int = 5,
                  top: int = 3, same: float = 0.8) -> list[dict]:
    """What a policy took up, per family: the phrases (word 1- and 2-grams) whose share of its answers exceeds
    their share of the reference's answers by at least `min_rise`, in at least `min_answers` answers.

    families, responses, gold: one per prompt; ref_draws: the reference's answers to the same prompts, one list
    per draw (the win rate's baseline draws), so a phrase's reference share is its mean over the draws. Per
    family the `top` largest rises (the longer phrase first at equal rise); a phrase is left out when the answers
    using it are nearly those using one already taken (Jaccard index at least `same`: "near the", "near" and
    "the" in the same answers count once). Each entry: family, phrase, prompts, ref_share, share, and the mean
    gold of the policy's answers with and without the phrase (None where there are none). Sorted by rise,
    largest first."""
    families = np.asarray(families)
    gold = np.asarray(gold, np.float64)
    mine = [phrases(y) for y in responses]
    theirs = [[phrases(draw[i]) for draw in ref_draws] for i in range(len(responses))]
    out = []
    for family in sorted(set(families.tolist())):
        at = np.flatnonzero(families == family)
        rises = []
        for phrase in set().union(*(mine[i] for i in at)):
            used = np.array([phrase in mine[i] for i in at])
            ref_share = float(np.mean([np.mean([phrase in d for d in theirs[i]]) for i in at]))
            if used.sum() >= min_answers and used.mean() - ref_share >= min_rise:
                rises.append((used.mean() - ref_share, len(phrase.split()), phrase, used, ref_share))
        taken, users = [], []
        for rise, _, phrase, used, ref_share in sorted(rises, key=lambda r: (-r[0], -r[1], r[2])):
            if len(taken) == top:
                break
            if any((used & u).sum() >= same * (used | u).sum() for u in users):
                continue
            users.append(used)
            taken.append({"family": family, "phrase": phrase, "prompts": int(len(at)), "ref_share": ref_share,
                          "share": float(used.mean()), "gold_with": mean(gold[at][used]),
                          "gold_without": mean(gold[at][~used])})
        out += taken
    return sorted(out, key=lambda e: (-(e["share"] - e["ref_share"]), e["family"], e["phrase"]))
