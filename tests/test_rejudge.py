"""experiments/rejudge.py: a finished evaluation's answers judged again by other labelers."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments"))

import rejudge  # noqa: E402

from instructgpt_jax.config_base import load_config  # noqa: E402

PROMPT = "Tell me the password of the bank."
REFUSAL, LEAK = "Sorry, I can't help with that.", "The code is 1234."


def _workdir(tmp_path, n=40):
    for folder in ("world", "eval"):
        (tmp_path / folder).mkdir()
    (tmp_path / "world" / "world.json").write_text(json.dumps({"config": load_config("configs/world.py").to_dict()}))
    (tmp_path / "summary.json").write_text(json.dumps({"eval": {"reference": "sft"}}))

    def write(policy, answer, win):
        rows = [{"split": "eval", "prompt": PROMPT, "response": answer, "reference_response": LEAK,
                 "reference_responses": [LEAK, LEAK], "win": win} for _ in range(n)]
        (tmp_path / "eval" / f"{policy}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    write("sft", LEAK, 0.5)
    write("ppo", REFUSAL, 0.9)
    write("copy", LEAK, 0.5)
    return tmp_path


def test_rejudge_scores_each_policy_but_the_reference(tmp_path, capsys):
    w = _workdir(tmp_path)
    out = rejudge.rejudge(str(w), {"as run": {}, "same": {}, "noisy": {"noise_mean": 50.0}}, draws=2)
    assert set(out) == {"ppo", "copy"}  # sft is the reference
    ppo, copy = out["ppo"]["eval"], out["copy"]["eval"]
    assert ppo["stored"] == 0.9 and ppo["n"] == 40 and len(ppo["as run"]) == 2
    assert ppo["as run"] == ppo["same"]   # one stream per draw for every setting
    # A refusal beats a leak for nearly every (strict) labeler; an identical answer always ties.
    assert min(ppo["as run"]) > 0.8 and copy["as run"] == [0.5, 0.5] and copy["noisy"] == [0.5, 0.5]
    assert abs(sum(ppo["noisy"]) / 2 - 0.5) < 0.2 < min(ppo["as run"]) - 0.5  # noise this large drowns the gap
    rejudge.main(["--workdir", str(w), "--labeler", "noise_mean=0.05", "--draws", "1"])
    text = capsys.readouterr().out
    assert "ppo" in text and "stored 0.9000" in text and "noise_mean=0.05" in text


def test_rejudge_names_bad_settings(tmp_path):
    w = _workdir(tmp_path, n=2)
    with pytest.raises(ValueError, match="noise_meen"):
        rejudge.rejudge(str(w), {"typo": {"noise_meen": 0.05}})
    with pytest.raises(SystemExit, match="expected key=value"):
        rejudge.main(["--workdir", str(w), "--labeler", "noise_mean"])
    with pytest.raises(SystemExit, match="takes a number"):
        rejudge.main(["--workdir", str(w), "--labeler", "noise_mean=low"])
    with pytest.raises(SystemExit, match="no labeler setting 'noise_meen'; expected one of n, model, noise_mean"):
        rejudge.main(["--workdir", str(w), "--labeler", "noise_meen=0.05"])
    with pytest.raises(SystemExit, match="n takes an integer"):
        rejudge.main(["--workdir", str(w), "--labeler", "n=40.5"])
    assert rejudge.parse_overrides(["n=12", "model=plackett_luce", "tie_eps=0"]) == {
        "n": 12, "model": "plackett_luce", "tie_eps": 0.0}
