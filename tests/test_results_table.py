"""experiments/results_table.py: the README's results table from summary.json files."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments"))

import results_table  # noqa: E402


def _summary(path, gold_diff, win):
    policies = {"sft": {"win_rate": 0.5, "gold": 0.5, "gold_diff": 0.0, "kl": 0.0},
                "ppo_ptx": {"win_rate": win, "win_rate_ci95": 0.04, "gold": 0.5 + gold_diff, "gold_diff": gold_diff,
                            "gold_diff_ci95": 0.02, "gold_vs_baseline": gold_diff - 0.01,
                            "gold_vs_baseline_ci95": 0.015, "kl": 3.0, "refusal_rate_heldout": 0.75,
                            "metadata": {"violates_constraints": 0.1, "fails_to_attempt": 0.05}}}
    path.mkdir()
    (path / "summary.json").write_text(json.dumps({"policies": policies, "rm": {"accuracy": 0.7, "labeler_agreement": 0.72,
                                                                                "best_of_n": {"recovered": 0.6}}}))
    return str(path)


def test_one_run_shows_intervals_and_seeds_show_each_value(tmp_path, capsys):
    one = _summary(tmp_path / "a", 0.06, 0.62)
    two = _summary(tmp_path / "b", 0.08, 0.66)
    rows = results_table.table(results_table.load([one])).splitlines()
    assert rows[0].startswith("| policy | win rate vs SFT | gold | gold - SFT |") and len(rows) == 4
    assert "| PPO-ptx | 0.620 ± 0.040 | 0.560 | +0.060 ± 0.020 |" in rows[3] and "| 0.10 |" in rows[3]
    both = results_table.table(results_table.load([one, two])).splitlines()
    assert "| PPO-ptx | 0.640 (0.620 / 0.660) | 0.570 (0.560 / 0.580) | +0.070 (+0.060 / +0.080) | +0.060 (+0.050 / " \
           "+0.070) |" in both[3]
    results_table.main([one])
    assert "RM 0.700 / labelers 0.720 / best-of-16 recovers 0.60" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="summary.json: no such file"):
        results_table.load([str(tmp_path)])


def test_later_rounds_get_rows_after_the_papers_five(tmp_path):
    """A run with --config.rounds=2 has a `round_2` policy: its row follows PPO-ptx, labelled by its round, and a
    run without it leaves its cell out of the mean."""
    one, two = _summary(tmp_path / "a", 0.06, 0.62), _summary(tmp_path / "b", 0.08, 0.66)
    path = os.path.join(two, "summary.json")
    with open(path) as f:
        summary = json.load(f)
    summary["policies"]["round_2"] = {"win_rate": 0.7, "gold": 0.6, "gold_diff": 0.1, "kl": 1.0}
    with open(path, "w") as f:
        json.dump(summary, f)
    rows = results_table.table(results_table.load([one, two])).splitlines()
    assert [r.split(" | ")[0] for r in rows[2:]] == ["| SFT", "| PPO-ptx", "| PPO-ptx, round 2"]
    assert rows[4].startswith("| PPO-ptx, round 2 | 0.700 | 0.600 | +0.100 |")


def test_rm_line_gives_the_win_rate_of_the_gold_best_pick_when_the_eval_has_it():
    rm = {"accuracy": 0.7, "labeler_agreement": 0.72,
          "best_of_n": {"n": [1, 4], "recovered": 0.3, "rm_win_rate": [0.5, 0.55], "oracle_win_rate": [0.5, 0.68]}}
    assert results_table.rm_line([{"rm": rm}]) == \
        "RM 0.700 / labelers 0.720 / best-of-4 recovers 0.30, the gold-best of 4 wins 0.680"


def test_readme_mode_rewrites_only_between_the_markers(tmp_path):
    """--readme replaces the old table and RM line between the markers with the summary's figures: one row per
    policy in the summary, every column, and nothing outside the markers changes."""
    run = _summary(tmp_path / "run", 0.06, 0.62)
    head = "# Title\n\nThe default run:\n\n"
    tail = "\n\nText after the table, with | pipes | of its own |.\n"
    old = "| policy | win rate vs SFT |\n|---|---|\n| SFT | 0.999 |\n\nRM 0.100 / labelers 0.100 / best-of-16 recovers 0.10"
    readme = tmp_path / "README.md"
    readme.write_text(f"{head}{results_table.BEGIN}\n{old}\n{results_table.END}{tail}")
    results_table.main([run, "--readme", str(readme)])
    text = readme.read_text()
    assert text.startswith(head + results_table.BEGIN + "\n") and text.endswith(results_table.END + tail)
    inside = text[len(head + results_table.BEGIN + "\n"):-len(results_table.END + tail)].splitlines()
    headers = ["policy", "win rate vs SFT", "gold", "gold - SFT", "gold - SFT draws", "RM score", "KL", "tax",
               "length", "refusal",
               "refusal held-out", "fails to attempt", "violates", "hallucinates", "inappropriate"]
    assert inside[0] == "| " + " | ".join(headers) + " |" and inside[1] == "|---" * len(headers) + "|"
    assert inside[2] == "| SFT | 0.500 | 0.500 | +0.000 | - | - | 0.0 | - | - | - | - | - | - | - | - |"
    assert inside[3] == ("| PPO-ptx | 0.620 ± 0.040 | 0.560 | +0.060 ± 0.020 | +0.050 ± 0.015 | - | 3.0 | - | - | - "
                         "| 0.75 | 0.05 "
                         "| 0.10 | - | - |")
    assert inside[4:] == ["", "RM 0.700 / labelers 0.720 / best-of-16 recovers 0.60"]
    assert "0.999" not in text
    results_table.main([run, "--readme", str(readme)])  # idempotent
    assert readme.read_text() == text
    readme.write_text("no markers here\n")
    with pytest.raises(ValueError, match="results:begin"):
        results_table.main([run, "--readme", str(readme)])
    assert readme.read_text() == "no markers here\n"


def test_family_table_orders_the_slices_and_averages_over_runs():
    """One row per family, the world's slices in order and the hard ones last and named so; each cell the mean
    over runs, a family a run lacks left out of its mean (so is the win rate of a run evaluated before the
    summary had it); pairs summed."""
    def summary(sft_write, rm_write, ptx_wins, draws_write=None):
        return {"policies": {"sft": {"gold_by_family": {"sort": 0.1, "write": sft_write, "end_mark": 0.8}},
                             "ppo_ptx": {"gold_by_family": {"write": 0.9, "end_mark": 0.95}, **ptx_wins}},
                **({"baseline": {"gold_by_family": {"write": draws_write}}} if draws_write is not None else {}),
                "rm": {"accuracy_by_family": {"write": rm_write, "sort": 0.5},
                       "labeler_agreement_by_family": {"write": 0.6, "sort": 0.57},
                       "pairs_by_family": {"write": 100, "sort": 10}}}

    runs = [summary(0.9, 0.6, {"win_rate_by_family": {"write": 0.7, "end_mark": 0.5}}, 0.85),
            summary(0.7, 0.7, {"win_rate_by_family": {"write": 0.6}}, 0.75), summary(0.8, 0.65, {})]
    rows = results_table.family_table(runs).splitlines()
    assert rows[0] == ("| family | SFT gold | SFT draws | PPO | PPO-ptx | PPO win | PPO-ptx win | RM agreement "
                       "| labelers | pairs |")
    assert [r.split(" | ")[0] for r in rows[2:]] == ["| end_mark", "| write", "| hard: sort"]
    assert rows[2] == "| end_mark | 0.80 | - | - | 0.95 | - | 0.50 | - | - | 0 |"
    assert rows[3] == "| write | 0.80 | 0.80 | - | 0.90 | - | 0.65 | 0.65 | 0.60 | 300 |"
    assert rows[4] == "| hard: sort | 0.10 | - | - | - | - | - | 0.50 | 0.57 | 30 |"


def test_family_table_adds_best_of_n_per_family_when_the_runs_have_it():
    """Runs whose evaluation has best-of-n per family get two more columns: the mean over runs of the RM's pick
    and of the gold-best at the largest n, and the mean of the RM's pick's last step; a run without it is left out
    of those means, and a family no run has a curve for shows "-"."""
    def summary(write_curve):
        by_family = {"write": {"prompts": 5, "rm": write_curve, "oracle": [0.5, 0.7, 0.9], "rm_change": 0.0}}
        return {"policies": {"sft": {"gold_by_family": {"write": 0.5, "end_mark": 0.8}}},
                "rm": {"best_of_n": {"n": [1, 4, 16], "rm": [0.5, 0.6, 0.6], "oracle": [0.5, 0.7, 0.9],
                                     "by_family": by_family}}}

    old_run = {"policies": {"sft": {"gold_by_family": {"write": 0.1}}}, "rm": {"best_of_n": {"n": [1, 4, 16]}}}
    rows = results_table.family_table([summary([0.5, 0.8, 0.7]), summary([0.5, 0.6, 0.6]), old_run]).splitlines()
    assert rows[0].endswith("| pairs | best-of-16: RM / gold-best | RM's pick 4 -> 16 |")
    assert rows[2] == "| end_mark | 0.80 | - | - | - | - | - | - | - | 0 | - / - | - |"
    assert rows[3] == "| write | 0.37 | - | - | - | - | - | - | - | 0 | 0.65 / 0.90 | -0.050 |"
