"""Evaluation with several sampling draws, and the figures read against them: each policy's draws and the win
rate's SFT baseline draws (every figure the records' means), gold against the baseline draws, the phrases a
policy took up, and experiments/sampling_spread.py (a policy's gold over sampling keys).
"""

import json
import os
import shutil

import numpy as np
import pytest

from instructgpt_jax import evaluate

from eval_workdir import SPLITS, evaluated_workdir, records as _records  # noqa: E402


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return evaluated_workdir(tmp_path_factory)


def test_several_policy_draws_average_every_figure(workdir, tmp_path):
    """With 3 draws of each policy (and 2 baseline draws) a record holds each draw: draw 0 is the one-draw
    evaluation's answer (its gold, its verdicts), the record's gold, rm_score, kl, length and win are the means
    over the draws, and the summary's figures are the records' means, intervals over prompts, Figure 4 over every
    answer; the paired difference and gold against the baseline are per prompt."""
    from instructgpt_jax.data import judge
    from instructgpt_jax.data.world import make_world

    w, config, single = workdir
    shutil.copytree(w, tmp_path / "w", ignore=shutil.ignore_patterns("eval", "summary.json"))
    config = config.copy_and_resolve_references()
    config.eval.policy_samples = 3
    summary = evaluate.run(config, str(tmp_path / "w"))
    world = make_world(config.world)
    for name, f in summary["policies"].items():
        one = _records(w, name, "eval") + _records(w, name, "heldout")
        recs = _records(tmp_path / "w", name, "eval") + _records(tmp_path / "w", name, "heldout")
        for a, b in zip(one, recs):
            assert b["response"] == b["responses"][0] == a["response"] and len(b["responses"]) == 3
            assert b["golds"][0] == a["gold"] and b["draw_wins"][0] == a["win"]
            np.testing.assert_allclose(b["golds"], world.gold_score([b["prompt"]] * 3, b["responses"]), rtol=1e-6)
            np.testing.assert_allclose([b["gold"], b["win"]], [np.mean(b["golds"]), np.mean(b["draw_wins"])])
        assert any(len(set(r["responses"])) > 1 for r in recs)  # the draws are new samples
        sft = _records(tmp_path / "w", "sft", "eval") + _records(tmp_path / "w", "sft", "heldout")
        for split, suffix in SPLITS:
            at = [i for i, r in enumerate(recs) if r["split"] == split]
            gold = np.array([recs[i]["gold"] for i in at])
            wins = np.array([recs[i]["win"] for i in at])
            np.testing.assert_allclose(f[f"gold{suffix}"], gold.mean(), rtol=1e-9)
            np.testing.assert_allclose(f[f"gold{suffix}_stderr"], gold.std() / np.sqrt(len(gold)), rtol=1e-6)
            np.testing.assert_allclose(f[f"win_rate{suffix}"], wins.mean(), rtol=1e-6)
            np.testing.assert_allclose(f[f"kl{suffix}"], np.mean([recs[i]["kl"] for i in at]), rtol=1e-6, atol=1e-9)
            diff = gold - np.array([sft[i]["gold"] for i in at])
            np.testing.assert_allclose(f[f"gold_diff{suffix}"], diff.mean(), atol=1e-9)
            rates = judge.metadata_rates([recs[i]["prompt"] for i in at for _ in range(3)],
                                         [y for i in at for y in recs[i]["responses"]])
            assert f[f"metadata{suffix}"] == rates
    _assert_gold_vs_baseline_matches_the_records(tmp_path / "w", config.world, summary)


def test_several_baseline_draws_average_the_verdicts(workdir, tmp_path):
    """With 3 baseline draws each answer gets 3 verdicts: draw 0 and its verdict are exactly the single-draw
    run's, the other draws are new samples, the win is the verdicts' mean and the summary's win rate (overall
    and per family) is the mean of those wins; gold, KL and RM scores do not depend on the baseline."""
    w, config, single = workdir
    shutil.copytree(w, tmp_path / "w", ignore=shutil.ignore_patterns("eval", "summary.json"))
    config = config.copy_and_resolve_references()
    config.eval.baseline_samples = 3
    summary = evaluate.run(config, str(tmp_path / "w"))
    for name, f in summary["policies"].items():
        one = [json.loads(line) for line in (w / "eval" / f"{name}.jsonl").read_text().splitlines()]
        three = [json.loads(line) for line in (tmp_path / "w" / "eval" / f"{name}.jsonl").read_text().splitlines()]
        assert [r["response"] for r in three] == [r["response"] for r in one]
        for a, b in zip(one, three):
            assert len(b["reference_responses"]) == len(b["wins"]) == 3
            assert b["reference_response"] == b["reference_responses"][0] == a["reference_response"]
            assert b["wins"][0] == a["win"] and np.isclose(b["win"], np.mean(b["wins"]))
            assert b["gold"] == a["gold"] and b["kl"] == a["kl"] and b["rm_score"] == a["rm_score"]
        assert any(r["reference_responses"][1] != r["reference_responses"][0] for r in three)
        assert any(r["wins"][1] != r["wins"][0] for r in three)
        for split, suffix in SPLITS:
            recs = [r for r in three if r["split"] == split]
            np.testing.assert_allclose(f[f"win_rate{suffix}"], np.mean([r["win"] for r in recs]), rtol=1e-6)
            assert f[f"gold{suffix}"] == single["policies"][name][f"gold{suffix}"]
    _assert_gold_vs_baseline_matches_the_records(tmp_path / "w", config.world, summary)


def _assert_gold_vs_baseline_matches_the_records(w, world_config, summary):
    """gold_vs_baseline (overall, its interval, per family) and summary["baseline"] from the records: each answer's
    gold minus the mean gold of its baseline draws (`reference_responses`, or the one `reference_response`), the
    draws' gold recomputed by the world's judge."""
    from instructgpt_jax.data.world import make_world

    world = make_world(world_config)
    for name, f in summary["policies"].items():
        for split, suffix in SPLITS:
            recs = _records(w, name, split)
            prompts = [r["prompt"] for r in recs]
            draws = [r.get("reference_responses", [r["reference_response"]]) for r in recs]
            base = np.array([np.mean(np.asarray(world.gold_score([p] * len(d), d), np.float64))
                             for p, d in zip(prompts, draws)])
            diff = np.array([r["gold"] for r in recs]) - base
            np.testing.assert_allclose(f[f"gold_vs_baseline{suffix}"], diff.mean(), atol=1e-9)
            np.testing.assert_allclose(f[f"gold_vs_baseline{suffix}_ci95"], 1.96 * diff.std() / np.sqrt(len(diff)),
                                       atol=1e-9)
            np.testing.assert_allclose(summary["baseline"][f"gold{suffix}"], base.mean(), atol=1e-9)
            for family in set(r["family"] for r in recs):
                at = np.array([r["family"] == family for r in recs])
                np.testing.assert_allclose(f[f"gold_vs_baseline{suffix}_by_family"][family], diff[at].mean(),
                                           atol=1e-9)
                np.testing.assert_allclose(summary["baseline"][f"gold{suffix}_by_family"][family], base[at].mean(),
                                           atol=1e-9)
    assert summary["baseline"]["samples"] == len(draws[0])


def test_gold_vs_baseline_matches_the_records(workdir):
    w, config, summary = workdir
    _assert_gold_vs_baseline_matches_the_records(w, config.world, summary)


def test_phrase_shifts_are_read_off_the_records(workdir):
    """Every policy but the reference has phrase_shifts, eval_figures.phrase_shifts of its eval records against
    the baseline draws in those records; the reference has none."""
    from instructgpt_jax import eval_figures

    w, _, summary = workdir
    assert "phrase_shifts" not in summary["policies"]["sft"]
    for name, f in summary["policies"].items():
        if name == "sft":
            continue
        recs = _records(w, name, "eval")
        draws = [r.get("reference_responses", [r["reference_response"]]) for r in recs]
        expected = eval_figures.phrase_shifts([r["family"] for r in recs], [r["response"] for r in recs],
                                              [r["gold"] for r in recs], [list(d) for d in zip(*draws)])
        assert f["phrase_shifts"] == expected


def test_sampling_spread_reproduces_the_evaluations_own_key(workdir):
    """experiments/sampling_spread.py samples a policy as the evaluation did: with the evaluation's key it gets
    the summary's gold to the last digit; its mean and sd are those of the keys asked for."""
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments"))
    import sampling_spread

    w, _, summary = workdir
    seed = summary["eval"]["seed"]
    figures = sampling_spread.spread(str(w), "sft", [seed, seed + 1, seed + 2])
    assert figures["eval_key"] == seed and figures["eval_key_gold"] == summary["policies"]["sft"]["gold"]
    golds = [figures["gold_by_key"][str(k)] for k in (seed, seed + 1, seed + 2)]
    assert golds[0] == figures["eval_key_gold"]
    np.testing.assert_allclose([figures["mean"], figures["sd"]], [np.mean(golds), np.std(golds, ddof=1)])
    assert sampling_spread.parse_keys("0-3,777") == [0, 1, 2, 3, 777]
    with pytest.raises(ValueError, match="part 'x' is not N or N-M"):
        sampling_spread.parse_keys("1,x")
    with pytest.raises(ValueError, match="has policies"):
        sampling_spread.spread(str(w), "nope", [0])
