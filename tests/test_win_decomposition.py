"""experiments/win_decomposition.py against a hand count on comparisons whose gold is known."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments"))

import win_decomposition  # noqa: E402

REV = "Reverse the order of: lamp pen pig"   # hard; "pig pen lamp" is gold 1, "" gold 0
SEA = "Write a line about the sea."          # open; "The sea is calm and deep." is gold 1


def _write(tmp_path, rows):
    (tmp_path / "eval").mkdir()
    with open(tmp_path / "eval" / "ppo_ptx.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return str(tmp_path)


def _row(prompt, family, response, draws, wins, split="eval"):
    return {"split": split, "prompt": prompt, "family": family, "response": response,
            "reference_responses": draws, "wins": wins}


def test_shares_and_win_rates_match_a_hand_count(tmp_path):
    w = _write(tmp_path, [
        # policy right, SFT draws: wrong (better), right (equal); labelers: win, tie
        _row(REV, "reverse", "pig pen lamp", ["", "pig pen lamp"], [1.0, 0.5]),
        # policy wrong, SFT draws: right (worse), wrong the same way (equal); labelers: a noisy win, tie
        _row(SEA, "write", "", ["The sea is calm and deep.", ""], [1.0, 0.5]),
        _row(SEA, "write", "x", ["y"], [0.0], split="heldout"),   # another split: not counted
    ])
    c = win_decomposition.comparisons(w, "ppo_ptx")
    d = win_decomposition.decompose(c)
    assert d["comparisons"] == 4 and c["prompts"] == 2
    assert (d["better"], d["equal"], d["worse"]) == pytest.approx((0.25, 0.5, 0.25))
    assert d["labelers"] == pytest.approx(3.0 / 4)                  # (1 + 0.5 + 1 + 0.5) / 4
    assert d["gold_exact"] == pytest.approx((1 + 0.5 + 0 + 0.5) / 4)
    assert d["never_worse"] == pytest.approx((1 + 0.5 + 0.5 + 0.5) / 4)
    assert d["gold_perfect"] == pytest.approx((1 + 0.5 + 0.5 + 1) / 4)   # SFT draws below gold 1: "" twice
    h = win_decomposition.decompose(c, c["hard"])
    assert h["comparisons"] == 2 and h["better"] == pytest.approx(0.5) and h["worse"] == 0.0
    lines = win_decomposition.family_rows(c)   # as many comparisons each: by name
    assert len(lines) == 4 and lines[2].startswith("| reverse | 2 | 0.50 / 0.50 / 0.00 |")
    assert lines[3].startswith("| write | 2 | 0.00 / 0.50 / 0.50 |")


def test_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(SystemExit, match="ppo.jsonl: no such file"):
        win_decomposition.comparisons(str(tmp_path), "ppo")
    w = _write(tmp_path, [_row(REV, "reverse", "pig pen lamp", ["", "x"], [1.0])])
    with pytest.raises(SystemExit, match=r"ppo_ptx.jsonl:1: expected `wins`"):
        win_decomposition.comparisons(w, "ppo_ptx")
