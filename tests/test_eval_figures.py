"""eval_figures against slow, obviously-correct loops: RM agreement per K and family (with labeler ties and RM
score ties), the second labeler's agreement, best-of-n, and the paired difference."""

import numpy as np
import pytest

from instructgpt_jax import eval_figures


def _slow_agreement(groups, scores):
    """Pair by pair, as eval_rm.rm_accuracy counted before the per-family figures."""
    out = {}
    for k, sl, ranks, ranks_b, gold, family in groups:
        s = scores[sl]
        for key in (("k", k), ("family", family)):
            acc = out.setdefault(key, {"right": 0, "pairs": 0, "labeler": 0, "gold_right": 0, "gold_pairs": 0})
            for i in range(k):
                for j in range(i + 1, k):
                    if ranks[i] != ranks[j]:
                        acc["pairs"] += 1
                        acc["right"] += int((s[i] - s[j]) * (ranks[j] - ranks[i]) > 0)
                        acc["labeler"] += int(np.sign(ranks[i] - ranks[j]) == np.sign(ranks_b[i] - ranks_b[j]))
                    if abs(gold[i] - gold[j]) > 1e-6:
                        acc["gold_pairs"] += 1
                        acc["gold_right"] += int((s[i] - s[j]) * (gold[i] - gold[j]) > 0)
    return out


def test_rm_agreement_matches_a_pairwise_loop():
    rng = np.random.default_rng(0)
    groups, n = [], 0
    for g in range(40):
        k = (2, 4, 9)[g % 3]
        ranks, ranks_b = rng.integers(0, 3, k).astype(np.int32), rng.integers(0, 3, k).astype(np.int32)  # many ties
        gold = rng.choice([0.0, 0.5, 1.0], k).astype(np.float32)
        groups.append((k, slice(n, n + k), ranks, ranks_b, gold, ("reverse", "use_word", "harmful")[g % 5 % 3]))
        n += k
    scores = rng.integers(0, 4, n).astype(np.float64)  # RM ties count as wrong
    out = eval_figures.rm_agreement(groups, scores, (2, 4, 6, 9))
    slow = _slow_agreement(groups, scores)
    ks = [("k", k) for k in (2, 4, 9)]
    assert np.isclose(out["accuracy"], sum(slow[k]["right"] for k in ks) / sum(slow[k]["pairs"] for k in ks))
    assert np.isclose(out["gold_accuracy"],
                      sum(slow[k]["gold_right"] for k in ks) / sum(slow[k]["gold_pairs"] for k in ks))
    assert np.isclose(out["labeler_agreement"], sum(slow[k]["labeler"] for k in ks) / sum(slow[k]["pairs"] for k in ks))
    assert set(out["accuracy_by_k"]) == {"2", "4", "9"}  # no prompt at K = 6
    for _, k in ks:
        assert np.isclose(out["accuracy_by_k"][str(k)], slow["k", k]["right"] / slow["k", k]["pairs"])
    assert list(out["accuracy_by_family"]) == ["harmful", "reverse", "use_word"]
    for family, acc in out["accuracy_by_family"].items():
        f = slow["family", family]
        assert np.isclose(acc, f["right"] / f["pairs"]) and out["pairs_by_family"][family] == f["pairs"]
        assert np.isclose(out["labeler_agreement_by_family"][family], f["labeler"] / f["pairs"])


def test_labelers_who_agree_reach_one():
    ranks = np.array([0, 1, 1, 2], np.int32)
    out = eval_figures.rm_agreement([(4, slice(0, 4), ranks, ranks, np.zeros(4), "sort")],
                                    np.array([3.0, 2.0, 1.0, 0.0]), (4,))
    # 5 untied pairs; the RM orders all of them as the labeler (the tied pair 1-2 is not counted).
    assert out["pairs_by_family"] == {"sort": 5} and out["labeler_agreement"] == 1.0 and out["accuracy"] == 1.0


def test_best_of_n_matches_a_loop():
    rng = np.random.default_rng(1)
    rm, gold = rng.integers(0, 3, (7, 16)).astype(float), rng.random((7, 16))
    out = eval_figures.best_of_n(rm, gold, (1, 2, 4, 8, 16))
    for t, n in enumerate((1, 2, 4, 8, 16)):
        pick = [gold[p, max(range(n), key=lambda i: (rm[p, i], -i))] for p in range(7)]  # first of the RM's best
        assert np.isclose(out["rm"][t], np.mean(pick))
        assert np.isclose(out["oracle"][t], np.mean([max(gold[p, :n]) for p in range(7)]))
    assert out["rm"][0] == out["oracle"][0] and np.isclose(out["sample_gold"], gold.mean())
    assert np.isclose(out["recovered"], (out["rm"][-1] - out["rm"][0]) / (out["oracle"][-1] - out["oracle"][0]))
    assert eval_figures.best_of_n(np.zeros((2, 4)), np.ones((2, 4)), (1, 4))["recovered"] is None
    assert "rm_win_rate" not in out and "oracle_win_rate" not in out


def test_best_of_n_by_family_matches_a_loop_and_adds_up_to_the_last_step():
    rng = np.random.default_rng(3)
    rm, gold = rng.integers(0, 3, (11, 8)).astype(float), rng.random((11, 8))
    families = np.array(["a", "b", "a", "c", "b", "a", "a", "c", "b", "a", "c"])
    ns = (1, 2, 4, 8)
    out = eval_figures.best_of_n(rm, gold, ns, families=families)
    assert sorted(out["by_family"]) == ["a", "b", "c"]
    for family, f in out["by_family"].items():
        at = [p for p in range(11) if families[p] == family]
        assert f["prompts"] == len(at)
        for t, n in enumerate(ns):
            pick = [gold[p, max(range(n), key=lambda i: (rm[p, i], -i))] for p in at]
            assert np.isclose(f["rm"][t], np.mean(pick))
            assert np.isclose(f["oracle"][t], np.mean([max(gold[p, :n]) for p in at]))
        assert np.isclose(f["rm_change"], (f["rm"][-1] - f["rm"][-2]) * len(at) / 11)
    # Weighted by their share of the prompts, the families' last steps are the overall curve's.
    assert np.isclose(sum(f["rm_change"] for f in out["by_family"].values()), out["rm"][-1] - out["rm"][-2])
    assert "by_family" not in eval_figures.best_of_n(rm, gold, ns)
    with pytest.raises(ValueError, match="10 families for 11 prompts"):
        eval_figures.best_of_n(rm, gold, ns, families=families[:10])


def test_best_of_n_win_rates_judge_the_picked_samples():
    """The labelers' verdicts are asked about exactly the sample each rule picks (first of ties for both), once."""
    rng = np.random.default_rng(2)
    rm, gold = rng.integers(0, 3, (9, 8)).astype(float), rng.integers(0, 4, (9, 8)) / 4
    reference = rng.random(9)
    asked = []

    def wins(picks):
        asked.append(np.array(picks))
        return (gold[np.arange(9), picks] > reference).astype(float)

    out = eval_figures.best_of_n(rm, gold, (1, 2, 8), wins)
    for t, n in enumerate((1, 2, 8)):
        by_rm = [max(range(n), key=lambda i: (rm[p, i], -i)) for p in range(9)]
        by_gold = [max(range(n), key=lambda i: (gold[p, i], -i)) for p in range(9)]
        assert np.isclose(out["rm_win_rate"][t], np.mean([gold[p, by_rm[p]] > reference[p] for p in range(9)]))
        assert np.isclose(out["oracle_win_rate"][t], np.mean([gold[p, by_gold[p]] > reference[p] for p in range(9)]))
        assert tuple(by_rm) in map(tuple, asked) and tuple(by_gold) in map(tuple, asked)
    assert out["rm_win_rate"][0] == out["oracle_win_rate"][0]
    # Each distinct set of picks is judged once: n = 1's (the first sample for both rules) is shared.
    assert len(set(map(tuple, asked))) == len(asked) == 5


def test_paired_figures():
    gold, ref, wins = np.array([0.5, 1.0, 0.0, 0.25]), np.array([0.5, 0.5, 0.5, 0.5]), np.array([0.5, 1.0, 0.0, 1.0])
    out = eval_figures.paired_figures(gold, ref, wins, "_heldout")
    d = gold - ref
    assert np.isclose(out["gold_diff_heldout"], d.mean())
    assert np.isclose(out["gold_diff_heldout_ci95"], 1.96 * np.sqrt(np.sum((d - d.mean()) ** 2) / 4) / 2)
    assert np.isclose(out["win_rate_heldout_ci95"], 1.96 * wins.std() / 2)
    assert eval_figures.paired_figures([1.0], [0.0], [1.0])["gold_diff_ci95"] is None


def test_phrases_are_the_lower_case_word_uni_and_bigrams():
    assert eval_figures.phrases("The cat, near the Mat!") == {
        "the", "cat", "near", "mat", "the cat", "cat near", "near the", "the mat"}
    assert eval_figures.phrases("") == set()


def test_phrase_shifts_finds_what_the_policy_took_up():
    """Family "write" (8 prompts): the policy says "near the bed" in 6 answers, the reference's two draws never
    ("is loud" is in every answer and every draw: no rise); "near", "the", "bed", "loud near", "near the" and
    "the bed" rise alike in the same answers and count once, a bigram first. "frog" rises by 4/8 minus the
    draws' 1/8, but in 4 answers: under min_answers=5 it is left out, at min_answers=4 it is in. Shares, golds
    with and without, and the order by rise are checked."""
    fam = ["write"] * 8 + ["select"] * 8
    responses = ["A dog is loud near the bed."] * 6 + ["A dog is loud."] * 2 + ["frog"] * 4 + ["cat"] * 4
    gold = [0.8] * 6 + [1.0] * 2 + [1.0] * 4 + [0.0] * 4
    draws = [["A dog is loud."] * 8 + ["frog", "cat", "cat", "cat", "cat", "cat", "cat", "cat"],
             ["A dog is loud and warm."] * 8 + ["frog", "cat", "cat", "cat", "cat", "cat", "cat", "cat"]]
    out = eval_figures.phrase_shifts(fam, responses, gold, draws)
    assert len(out) == 1
    e = out[0]
    assert e["family"] == "write" and e["phrase"] in ("near the", "the bed", "loud near") and e["prompts"] == 8
    assert e["ref_share"] == 0.0 and e["share"] == 0.75
    assert e["gold_with"] == pytest.approx(0.8) and e["gold_without"] == pytest.approx(1.0)
    both = eval_figures.phrase_shifts(fam, responses, gold, draws, min_answers=4)
    assert [(x["family"], x["phrase"]) for x in both][1] == ("select", "frog")
    assert both[1]["ref_share"] == pytest.approx(1 / 8) and both[1]["share"] == 0.5
    assert both[1]["gold_with"] == 1.0 and both[1]["gold_without"] == 0.0
    # Phrases in different answers are each reported (at equal rise, bigrams first, then alphabetically); a rise
    # under min_rise is not.
    responses2 = ["near the bed"] * 3 + ["so very sorry"] * 3 + ["x"] * 2
    out2 = eval_figures.phrase_shifts(["write"] * 8, responses2, [1.0] * 8, [["x"] * 8], min_answers=3)
    assert [x["phrase"] for x in out2] == ["near the", "so very"] and out2[0]["share"] == 3 / 8
    assert not eval_figures.phrase_shifts(["write"] * 8, responses2, [1.0] * 8, [["x"] * 8], min_answers=3,
                                          min_rise=0.4)
