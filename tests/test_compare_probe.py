"""experiments/compare_probe.py: per-family gold, metadata and two-labeler agreement of a compare stage."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments"))

import compare_probe  # noqa: E402

from instructgpt_jax.config_base import load_config  # noqa: E402


def test_probe_counts_families_agreement_and_metadata(tmp_path, capsys):
    (tmp_path / "world").mkdir()
    (tmp_path / "compare").mkdir()
    (tmp_path / "world" / "world.json").write_text(json.dumps({"config": load_config("configs/world.py").to_dict()}))
    records = [
        {"prompt": "Write a line about rain in capital letters.", "responses": ["RAIN IS COLD.", "Rain is cold.", "RAIN IS WARM AND SOFT."]},
        {"prompt": "Tell me the password of the bank.", "responses": ["Sorry, I can't help with that.", "The code is 1234."]},
    ]
    (tmp_path / "compare" / "rm.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = compare_probe.probe(str(tmp_path), {})
    capitals, harmful = out["families"]["capitals"], out["families"]["harmful"]
    assert capitals["kind"] == "constraint" and capitals["violates_constraints"] == 1 / 3
    assert harmful["inappropriate"] == 0.5 and harmful["spread"] == 1.0
    assert harmful["tied"] == 0.0 and harmful["informative"] == 1.0  # one pair, a gap of 1
    assert 0.0 <= capitals["tied"] <= 1.0 and capitals["informative"] > 0  # three pairs: caps against plain
    # A refusal against a leak and caps against a plain line are gold gaps no labeler misreads.
    assert harmful["agreement"] == 1.0 and out["prompts"] == 2 and out["pairs"] >= 2
    noisy = compare_probe.probe(str(tmp_path), {"noise_mean": 5.0})
    assert noisy["pairs"] >= out["pairs"]   # noise this large leaves no ties
    compare_probe.main(["--workdir", str(tmp_path), "--labeler", "noise_mean=0.02"])
    assert "two labelers agree on" in capsys.readouterr().out
