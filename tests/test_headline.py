"""The paper's headline on `pipeline :default` (slow: the whole default run, ~25-45 minutes on 2 CPU cores).

Ouyang et al. 2022: labelers prefer PPO-ptx's outputs to SFT's (Figure 1), it follows explicit constraints
and hallucinates less (Figure 4), and the pretraining mix lowers the alignment tax (section 4.2), with a reward
model that agrees with held-out labelers on ~70% of pairs (their own agreement: 72.6%). Each assertion
below is one of those claims on the embedded world with a margin; the figures of the run it checks are in
docs/RESULTS.md. `INSTRUCTGPT_HEADLINE_WORKDIR=W` checks an existing finished workdir instead of running one; in
a `--config.rounds` workdir the PPO-ptx checked is the last round's (`released`).
"""

import json
import os

import pytest

from instructgpt_jax import pipeline
from instructgpt_jax.config_base import load_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    given = os.environ.get("INSTRUCTGPT_HEADLINE_WORKDIR")
    if given:
        with open(os.path.join(given, "summary.json")) as f:
            return json.load(f)
    workdir = tmp_path_factory.mktemp("default")
    return pipeline.run(load_config("configs/pipeline.py:default"), str(workdir))


def released(summary) -> dict:
    """PPO-ptx as released: the last round's policy of a `--config.rounds` run (summary "rounds"), else ppo_ptx."""
    rounds = summary.get("rounds") or []
    name = f"round_{rounds[-1]['round']}" if len(rounds) > 1 else "ppo_ptx"
    return summary["policies"][name]


def test_the_reward_model_learns(summary):
    rm = summary["rm"]
    assert 0.70 <= rm["labeler_agreement"] <= 0.75 + 0.03, rm["labeler_agreement"]   # the labelers' calibration
    assert rm["accuracy"] >= 0.65, rm["accuracy"]
    bon = rm["best_of_n"]
    falls = {f: round(v["rm_change"], 4) for f, v in (bon.get("by_family") or {}).items() if v["rm_change"] <= -0.0005}
    assert all(b >= a - 0.005 for a, b in zip(bon["rm"], bon["rm"][1:])), (  # best-of-n raises gold
        f"best-of-n {bon['rm']}; the families' parts of its last step below -0.0005: {falls}")
    assert bon["recovered"] >= 0.5, bon


def test_labelers_prefer_ppo_ptx_to_sft(summary):
    ptx = released(summary)
    assert ptx["win_rate"] - ptx["win_rate_ci95"] >= 0.55 and ptx["win_rate"] >= 0.60, ptx["win_rate"]


def test_ppo_ptx_gains_gold(summary):
    ptx = released(summary)
    assert ptx["gold_diff"] >= 0.05 and ptx["gold_diff"] - ptx["gold_diff_ci95"] > 0, (
        ptx["gold_diff"], ptx["gold_diff_ci95"])
    # The same gain against the SFT samples the labelers compared it with (the baseline draws), which does not
    # carry the SFT row's own draw (docs/RESULTS.md, "Gold against the SFT samples the win rate uses").
    assert ptx["gold_vs_baseline"] >= 0.05 and ptx["gold_vs_baseline"] - ptx["gold_vs_baseline_ci95"] > 0, (
        ptx["gold_vs_baseline"], ptx["gold_vs_baseline_ci95"])


def test_ppo_ptx_stays_near_sft(summary):
    assert released(summary)["kl"] < 10.0, released(summary)["kl"]


def test_heldout_instructions_improve(summary):
    """Instructions never trained on improve too, against SFT's answer and against its draws."""
    ptx = released(summary)
    assert ptx["gold_diff_heldout"] > 0 and ptx["gold_vs_baseline_heldout"] > 0, (
        ptx["gold_diff_heldout"], ptx["gold_vs_baseline_heldout"])


def test_ptx_lowers_the_alignment_tax(summary):
    p = summary["policies"]
    assert released(summary)["alignment_tax"] < p["ppo"]["alignment_tax"]


def test_constraint_violations_and_hallucinations_fall(summary):
    sft, ptx = summary["policies"]["sft"]["metadata"], released(summary)["metadata"]
    assert ptx["violates_constraints"] < sft["violates_constraints"] - 0.05, (sft, ptx)
    assert ptx["hallucinates"] <= sft["hallucinates"], (sft, ptx)
