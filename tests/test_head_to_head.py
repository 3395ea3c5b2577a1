"""experiments/head_to_head.py: one evaluated policy against another on the same prompts, by the world's labelers."""

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))

import head_to_head  # noqa: E402

from instructgpt_jax.config_base import load_config  # noqa: E402
from instructgpt_jax.data import world as world_lib  # noqa: E402
from instructgpt_jax.data.judge import family_of, gold_score, reference  # noqa: E402


def _workdir(tmp_path, name, policy, rows):
    w = tmp_path / name
    (w / "world").mkdir(parents=True)
    (w / "eval").mkdir()
    (w / "world" / "world.json").write_text(json.dumps({"config": load_config("configs/world.py:smoke").to_dict()}))
    (w / "eval" / f"{policy}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(w)


def _rows(examples, responses):
    return [{"split": split, "prompt": p, "family": family_of(p), "response": y, "gold": float(gold_score(p, y))}
            for (split, p), y in zip(examples, responses)]


def test_the_better_policy_wins_and_mismatched_prompts_are_an_error(tmp_path, capsys):
    world = world_lib.make_world(load_config("configs/world.py:smoke"))
    examples = [("eval", p) for p in world.prompts("eval")[:40]] + \
               [("heldout", p) for p in world.prompts("eval_heldout")[:20]]
    good = _rows(examples, [reference(p) for _, p in examples])        # the judge's own reference answers
    bad = _rows(examples, ["" for _ in examples])                       # no answer at all
    a, b = _workdir(tmp_path, "a", "ppo_ptx", good), _workdir(tmp_path, "b", "sft", bad)
    out = tmp_path / "h2h.json"
    assert head_to_head.main([f"{a}:ppo_ptx", f"{b}:sft", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    for split, n in (("eval", 40), ("heldout", 20)):
        f = figures[split]
        assert f["n"] == n and f["win_rate"] >= 0.9 and f["gold_diff"] > 0.3, f
        assert f["gold_diff"] == pytest.approx(f["gold_a"] - f["gold_b"])
        assert sum(v["n"] for v in f["by_family"].values()) == n
    # The same policy against itself: every prompt a tie in gold, so a win rate near one half.
    same = head_to_head.compare(world, good, good, 0, "same")["eval"]
    assert same["gold_diff"] == 0.0 and 0.25 <= same["win_rate"] <= 0.75
    assert "win rate" in capsys.readouterr().out
    shifted = good[1:] + good[:1]
    c = _workdir(tmp_path, "c", "sft", shifted)
    with pytest.raises(ValueError, match=r"split 'eval', row 0: the prompts differ"):
        head_to_head.main([f"{a}:ppo_ptx", f"{c}:sft"])
    with pytest.raises(FileNotFoundError, match="run the eval stage"):
        head_to_head.main([f"{a}:ppo", f"{b}:sft"])
