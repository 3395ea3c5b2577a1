"""Iterated RLHF (pipeline `rounds`): the wiring of rounds 2..R, the accumulated comparisons, and two tiny
rounds end to end on a copy of the session's smoke pipeline (slow), killed inside round 2's PPO and resumed."""

import json
import os
import shutil
import sys

import pytest

from instructgpt_jax import pipeline, rounds
from instructgpt_jax.config_base import apply_overrides, load_config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_pipeline import _smoke_config, smoke_workdir  # noqa: E402  the same session workdir: run once


def test_round_stages_are_wired_to_the_previous_round():
    config = apply_overrides(load_config("configs/pipeline.py:smoke"), {"rounds": 3, "comparisons_per_round": 64})
    names = pipeline.stage_names(config)
    assert names == [*pipeline.STAGES[:-2], "round_2/compare", "round_2/rm", "round_2/ppo",
                     "round_3/compare", "round_3/rm", "round_3/ppo", "eval", "report"]
    wired = pipeline.stage_configs(config, "/w")
    assert wired["compare"].data.num_prompts == 64 and wired["compare"].policy == "/w/sft"
    for r, previous_policy, previous_rm in ((2, "/w/ppo_ptx", "/w/rm"), (3, "/w/round_2/ppo", "/w/round_2/rm")):
        compare, rm, ppo = (wired[f"round_{r}/{k}"] for k in ("compare", "rm", "ppo"))
        assert compare.compare.policy == previous_policy  # samples of the round r-1 policy
        assert compare.compare.data.first_prompt == (r - 1) * 64 and compare.compare.data.num_prompts == 64
        assert list(compare.previous) == ["/w/compare/rm.jsonl"] + [f"/w/round_{q}/compare/rm.jsonl" for q in range(2, r)]
        assert rm.rm.init_from == "/w/sft" and rm.stale_rm == previous_rm
        assert rm.rm.data.train == f"/w/round_{r}/compare/rm_train.jsonl"
        assert rm.rm.data.val == f"/w/round_{r}/compare/rm_val.jsonl"
        assert rm.rm.norm.data == f"/w/round_{r}/compare/samples.jsonl"  # re-normalised on the policy's samples
        assert ppo.init_policy == previous_policy and ppo.ref_policy == "/w/sft"  # the KL anchor stays SFT
        assert ppo.reward_model == ppo.init_value == f"/w/round_{r}/rm" and ppo.ppo.ptx_coef > 0
    assert "round_3:round_3/ppo" in wired["eval"].eval.policies
    assert "round_2:round_2/ppo" not in config.eval.policies  # wiring works on copies

    previous = apply_overrides(load_config("configs/pipeline.py:smoke"), {"rounds": 2, "round_rm_init": "previous",
                                                                          "comparisons_per_round": 64})
    assert pipeline.stage_configs(previous, "/w")["round_2/rm"].rm.init_from == "/w/rm"
    one = apply_overrides(load_config("configs/pipeline.py:smoke"), {"comparisons_per_round": 64})
    assert pipeline.stage_names(one) == list(pipeline.STAGES)
    for stage in ("world", "pretrain", "sft", "compare", "rm", "ppo", "ppo_ptx"):  # round 1 is the same run
        assert pipeline.fingerprint(pipeline.stage_configs(one, "/w")[stage], "/w") == pipeline.fingerprint(wired[stage], "/w")


def test_accumulated_comparisons_hold_every_round_once(tmp_path):
    def write(path, tag, n):
        path.parent.mkdir(parents=True, exist_ok=True)
        recs = [{"prompt": f"{tag} {i}", "responses": [f"a{i}", f"b{i}"], "ranking": [0, 1]} for i in range(n)]
        path.write_text("".join(json.dumps(r) + "\n" for r in recs))
        return recs

    r1 = write(tmp_path / "compare" / "rm.jsonl", "round1", 20)
    r2 = write(tmp_path / "round_2" / "compare" / "rm.jsonl", "round2", 30)
    r3 = write(tmp_path / "round_3" / "compare" / "rm.jsonl", "round3", 10)
    out = tmp_path / "round_3" / "compare"
    figures = rounds.accumulate([str(tmp_path / "compare" / "rm.jsonl"), str(tmp_path / "round_2" / "compare" / "rm.jsonl")],
                                str(out / "rm.jsonl"), 0.1, 0, str(out))
    read = lambda name: [json.loads(line) for line in (out / name).read_text().splitlines()]  # noqa: E731
    train, val = read("rm_train.jsonl"), read("rm_val.jsonl")
    key = lambda recs: sorted(r["prompt"] for r in recs)  # noqa: E731
    assert key(train + val) == key(r1 + r2 + r3)  # every comparison of every round, exactly once
    assert key(val) == key([r for r in r3 if r in val]) and len(val) == 1  # held out: the newest round's only
    assert figures == {"compare/accumulated": 60, "compare/fresh_train": 9, "compare/fresh_val": 1}
    assert [s["response"] for s in read("samples.jsonl")] == [y for r in r3 for y in r["responses"]]


def _copy_smoke(tmp_path_factory, tmp_path):
    base, _, _ = smoke_workdir(tmp_path_factory)
    w = tmp_path / "w"
    shutil.copytree(base, w, symlinks=True)
    return w


def _spy_load_model(monkeypatch, w) -> list:
    """(stage folder relative to w, checkpoint step) of every checkpoint.load_model call from now on."""
    from instructgpt_jax import checkpoint

    loaded, real_load = [], checkpoint.load_model

    def load_model(stage_dir, *a, **k):
        out = real_load(stage_dir, *a, **k)
        loaded.append((os.path.relpath(stage_dir, w), int(out[3]["step"])))
        return out

    monkeypatch.setattr(checkpoint, "load_model", load_model)
    return loaded


def _check_round_2_data(w):
    """Round 2's comparisons are of fresh prompts; rm_train + rm_val hold both rounds' comparisons exactly once."""
    read = lambda path: [json.loads(line) for line in path.read_text().splitlines()]  # noqa: E731
    fresh, first = read(w / "round_2" / "compare" / "rm.jsonl"), read(w / "compare" / "rm.jsonl")
    accumulated = [r for name in ("rm_train.jsonl", "rm_val.jsonl") for r in read(w / "round_2" / "compare" / name)]
    key = lambda recs: sorted((r["prompt"], tuple(r["responses"])) for r in recs)  # noqa: E731
    assert key(accumulated) == key(first + fresh) and len(fresh) > 0
    assert not {r["prompt"] for r in fresh} & {r["prompt"] for r in first}


def test_round_2_compares_samples_of_round_1_policy(tmp_path_factory, tmp_path, monkeypatch, capsys):
    """Only round_2/compare on a copy of the smoke pipeline: it samples W/ppo_ptx's final checkpoint."""
    w = _copy_smoke(tmp_path_factory, tmp_path)
    loaded = _spy_load_model(monkeypatch, w)
    pipeline.run(_smoke_config(rounds=2, stages="round_2/compare"), str(w))
    assert "round_2/compare: done" in capsys.readouterr().out
    assert loaded == [("ppo_ptx", 6)]  # round 1's final PPO-ptx policy (6 iterations), nothing else
    assert json.loads((w / "round_2" / "compare" / "config.json").read_text())["policy"] == str(w / "ppo_ptx")
    _check_round_2_data(w)


def test_a_round_without_enough_fresh_prompts_is_an_error(tmp_path_factory, tmp_path):
    """round_2/compare on a copy of the smoke pipeline whose RM prompt file holds 100 prompts: 64..127 are asked."""
    w = _copy_smoke(tmp_path_factory, tmp_path)
    config = apply_overrides(_smoke_config(), {"rounds": 2, "comparisons_per_round": 64})
    (w / "world" / "rm_prompts.jsonl").write_text('{"prompt": "x"}\n' * 100)
    cfg = pipeline.stage_configs(config, str(w))["round_2/compare"]
    with pytest.raises(ValueError, match=r"has 100 prompts; config.data.first_prompt=64 and "
                                         r"config.data.num_prompts=64 ask for prompts 64..127"):
        rounds.run_stage("round_2/compare", cfg, str(w))
    assert not (w / "round_2" / "compare" / "rm.jsonl").exists()
    with pytest.raises(ValueError, match="round_rm_init"):
        pipeline.stage_configs(apply_overrides(config, {"round_rm_init": "last"}), str(w))


def test_rounds_ablation_spends_equal_labels_and_ppo_iterations():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments"))
    import sweep

    runs = {r["name"]: r["config"] for r in sweep.plan("configs/ablations/rounds.py:smoke", "/tmp/unused")}
    assert list(runs) == ["rounds_1", "rounds_3"]
    labels = {n: c.rounds * c.comparisons_per_round for n, c in runs.items()}
    iterations = {n: c.rounds * c.ppo_ptx.train.iterations for n, c in runs.items()}
    assert labels["rounds_1"] == labels["rounds_3"] == 3 * (64 // 3) and iterations["rounds_1"] == iterations["rounds_3"]
    summary = {"rounds": [{"round": 1, "gold": 0.1}, {"round": 3, "gold": 0.3}], "policies": {}}
    assert sweep.lookup(summary, "rounds.-1.gold") == 0.3 and sweep.lookup(summary, "rounds.5.gold") is None
    plan = [{"name": "a", "stage": "pipeline", "overrides": {"rounds": 3}}]
    assert "rounds.-1.gold" in sweep.table(plan, {"a": summary})[0]


class _Killed(Exception):
    pass


@pytest.mark.slow
def test_two_rounds_end_to_end_and_resume_after_a_kill_in_round_2(tmp_path_factory, tmp_path, monkeypatch, capsys,
                                                                  caplog):
    """Round 2 on a copy of the smoke pipeline: killed after PPO's first checkpoint, rerun; round 1 is never redone."""
    from instructgpt_jax import checkpoint

    w = _copy_smoke(tmp_path_factory, tmp_path)
    capsys.readouterr()
    round1 = {s: (w / s / "pipeline_stage.json").read_text() for s in pipeline.STAGES[:-2]}
    config = _smoke_config(rounds=2)
    loaded, real_save = _spy_load_model(monkeypatch, w), checkpoint.save

    def save(manager, step, *a, **k):
        real_save(manager, step, *a, **k)
        if os.path.join("round_2", "ppo") in str(manager.directory):
            manager.wait_until_finished()
            raise _Killed(f"killed after saving step {step}")

    monkeypatch.setattr(checkpoint, "save", save)
    with pytest.raises(_Killed):
        pipeline.run(config, str(w))
    out = capsys.readouterr().out
    assert out.count("skipped") == len(pipeline.STAGES) - 2, out  # round 1 untouched
    assert loaded[0] == ("ppo_ptx", 6)
    assert pipeline.read_marker(str(w), "round_2/ppo") is None and (w / "round_2" / "ppo" / "checkpoints" / "3").exists()

    monkeypatch.setattr(checkpoint, "save", real_save)
    caplog.set_level("INFO", logger="instructgpt_jax.stages.ppo")
    summary = pipeline.run(config, str(w))
    out = capsys.readouterr().out
    for stage in (*pipeline.STAGES[:-2], "round_2/compare", "round_2/rm"):
        assert f"] {stage}: complete" in out, (stage, out)
    assert "round_2/ppo: done" in out and "resuming from iteration 3" in caplog.text
    assert round1 == {s: (w / s / "pipeline_stage.json").read_text() for s in round1}
    _check_round_2_data(w)

    assert [r["round"] for r in summary["rounds"]] == [1, 2] and "round_2" in summary["policies"]
    r2 = summary["rounds"][1]
    for key in ("gold", "win_rate", "kl", "rm_score", "rm_score_own", "rm_accuracy", "stale_rm_accuracy",
                "stale_rm_accuracy_all", "comparisons"):
        assert r2[key] is not None, key
    assert 0.0 <= r2["stale_rm_accuracy"] <= 1.0 and summary["rounds"][0]["stale_rm_accuracy"] is None
    assert summary["policies"]["round_2"]["stage"] == "round_2/ppo"
    assert json.loads((w / "round_2" / "ppo" / "config.json").read_text())["ref_policy"] == str(w / "sft")
    assert set(summary["wall_time_s"]) == set(pipeline.stage_names(config))
    report = (w / "report" / "report.md").read_text()
    assert "## Rounds of RLHF" in report and (w / "report" / "rounds.png").stat().st_size > 5000
