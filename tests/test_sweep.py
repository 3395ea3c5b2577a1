"""experiments/sweep.py: override forms, dry-run commands the CLI accepts, a real two-run sweep and its table."""

import json
import os
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))

import sweep  # noqa: E402

ABLATION = '''
import ml_collections

def get_config(arg=None):
    config = ml_collections.ConfigDict()
    config.base = "configs/pretrain.py:smoke"
    steps = int(arg or 2)
    common = {"train": {"steps": steps, "log_every": 1, "eval_every": steps, "checkpoint_every": steps,
                        "tensorboard": False}}
    config.runs = ml_collections.ConfigDict({
        "lr_small": {"optim": {"lr": 1e-4}, **common},
        "lr_large": (("optim.lr", 3e-3), ("train.steps", steps), ("train.log_every", 1),
                     ("train.eval_every", steps), ("train.checkpoint_every", steps), ("train.tensorboard", False)),
    }, sort_keys=False)  # run in this order, not alphabetically
    return config
'''


@pytest.fixture
def ablation(tmp_path):
    path = tmp_path / "lr.py"
    path.write_text(ABLATION)
    return str(path)


def test_flatten_forms():
    assert sweep.flatten({"ppo": {"beta": 0.0, "ptx_coef": 1}}) == {"ppo.beta": 0.0, "ppo.ptx_coef": 1}
    assert sweep.flatten((("ppo.beta", 0.1),)) == {"ppo.beta": 0.1}
    assert sweep.flatten({"ppo.beta": 0.2}) == {"ppo.beta": 0.2}


def test_dry_run_commands_build_the_same_configs(ablation, tmp_path):
    """Each printed command, parsed the way `instructgpt` parses flags, gives the config the sweep would run."""
    from absl import flags
    from ml_collections import config_flags

    runs = sweep.plan(ablation + ":3", str(tmp_path / "w"))
    assert [r["name"] for r in runs] == ["lr_small", "lr_large"]
    for r in runs:
        argv = shlex.split(r["command"])
        assert argv[:2] == ["instructgpt", "pretrain"] and argv[-2:] == ["--workdir", r["workdir"]]
        argv = ["prog", f"--config={os.path.join(ROOT, argv[3])}", *argv[4:-2]]
        fv = flags.FlagValues()
        config_flags.DEFINE_config_file("config", None, "", flag_values=fv, sys_argv=argv)
        fv(argv)
        assert fv.config.to_dict() == r["config"].to_dict()
    assert runs[0]["config"].optim.lr == 1e-4 and runs[1]["config"].optim.lr == 3e-3
    assert runs[1]["config"].train.steps == 3


def test_bad_overrides_and_run_names(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(ABLATION.replace('"lr": 1e-4', '"lrr": 1e-4'))
    with pytest.raises(ValueError, match="lr_small.*optim.lrr"):
        sweep.plan(str(bad), str(tmp_path / "w"))
    with pytest.raises(ValueError, match="not runs of"):
        sweep.plan(str(tmp_path / "bad.py"), str(tmp_path / "w"), only=["nope"])


@pytest.mark.slow  # the default suite stays under 12 minutes on 2 cores (README)
def test_sweep_runs_and_gathers_a_table(ablation, tmp_path):
    workdir = tmp_path / "w"
    assert sweep.main(["--config", ablation, "--workdir", str(workdir)]) == 0
    result = json.loads((workdir / "sweep.json").read_text())
    header = result["header"]
    assert header[0] == "run" and header[-1] == "pretrain/heldout_loss"
    assert set(header[1:-1]) == {"optim.lr", "train.steps", "train.log_every", "train.eval_every",
                                 "train.checkpoint_every", "train.tensorboard"}
    losses = {row[0]: row[-1] for row in result["rows"]}
    # Two steps at lr 3e-3 move the held-out loss further from its ~5.6 nats/byte start than at 1e-4.
    assert losses["lr_large"] < losses["lr_small"] - 0.05, losses
    assert "| lr_large |" in (workdir / "sweep.md").read_text()
    for name in losses:
        assert json.loads((workdir / name / "result.json").read_text())["pretrain/heldout_loss"] == losses[name]
    # A second sweep finds every run complete and returns the same table without training.
    logged = (workdir / "lr_small" / "metrics.jsonl").read_text()
    assert sweep.main(["--config", ablation, "--workdir", str(workdir)]) == 0
    assert json.loads((workdir / "sweep.json").read_text())["rows"] == result["rows"]
    assert (workdir / "lr_small" / "metrics.jsonl").read_text() == logged


def test_dry_run_cli(ablation, tmp_path):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "sweep.py"), "--config", ablation,
                          "--workdir", str(tmp_path / "w"), "--dry_run", "--runs", "lr_large"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines() == [sweep.plan(ablation, str(tmp_path / "w"), ["lr_large"])[0]["command"]]
    assert not (tmp_path / "w").exists()


@pytest.fixture
def pipeline_workdir(tmp_path):
    """A pipeline workdir (seed 2) whose stages wrote their config.json, as `instructgpt pipeline` leaves them."""
    from instructgpt_jax import pipeline
    from instructgpt_jax.config_base import load_config

    config = load_config("configs/pipeline.py:default")
    config.seed = 2
    w = tmp_path / "w"
    for stage, cfg in pipeline.stage_configs(config, str(w)).items():
        if stage in ("compare", "rm", "ppo", "ppo_ptx"):
            (w / stage).mkdir(parents=True)
            (w / stage / "config.json").write_text(cfg.to_json_best_effort(indent=2))
    return w


def test_stage_ablations_run_the_pipelines_own_stage(pipeline_workdir):
    """The beta, ptx, overopt, rm_data, rm_k, rm_batching, rm_seeds and rm_optim ablations start from a pipeline
    workdir: each run is that workdir's stage config (its seed, token lengths, corpus, RM layout) with the
    ablated keys changed and nothing else (a run with the stage file's byte-sized defaults is not the row it
    claims to be)."""
    from instructgpt_jax import pipeline
    from instructgpt_jax.config_base import load_config

    w = str(pipeline_workdir)
    config = load_config("configs/pipeline.py:default")
    config.seed = 2
    stages = pipeline.stage_configs(config, w)
    ablations = {"beta": ("ppo", 8), "overopt": ("ppo", 3), "ptx": ("ppo_ptx", 5), "rm_data": ("rm", 7),
                 "rm_k": ("rm", 4), "rm_batching": ("rm", 3), "rm_seeds": ("rm", 4),
                 "rm_optim": ("rm", 7)}
    for name, (stage, n) in ablations.items():
        runs = sweep.plan(f"configs/ablations/{name}.py:{w}", "/tmp/unused")
        assert len(runs) == n and {r["stage"] for r in runs} == {stages[stage].stage}  # the command: ppo or rm
        want = sweep.flatten(json.loads(stages[stage].to_json_best_effort()))
        for r in runs:
            got = sweep.flatten(json.loads(r["config"].to_json_best_effort()))
            changed = {k for k in want if got.get(k) != want[k]}
            assert changed <= set(r["overrides"]), (name, r["name"], changed - set(r["overrides"]))
    ppo = stages["ppo"]
    assert ppo.data.prompt_len == 48 and ppo.ppo.max_new_tokens == 24
    assert ppo.data.corpus.source == f"web-v{config.web_version}:2"  # the default's web, seed 2's text
    assert ppo.train.seed == load_config("configs/ppo.py:ppo").train.seed + 2
    assert [r["config"].ppo.beta for r in sweep.plan(f"configs/ablations/overopt.py:{w}", "/tmp/unused")] == \
        [0.02, 0.1, 0.2]
    assert {r["config"].ppo.beta for r in sweep.plan(f"configs/ablations/ptx.py:{w}", "/tmp/unused")} == \
        {config.ppo_ptx.ppo.beta}
    # The printed command, parsed as `instructgpt` parses it, gives the config the sweep runs.
    from absl import flags
    from ml_collections import config_flags

    for name in ("rm_k", "ptx"):
        r = sweep.plan(f"configs/ablations/{name}.py:{w}", "/tmp/unused")[-1]
        argv = shlex.split(r["command"])
        assert argv[3] == f"configs/run_stage.py:{w}/{ablations[name][0]}"
        argv = ["prog", f"--config={os.path.join(ROOT, argv[3])}", *argv[4:-2]]
        fv = flags.FlagValues()
        config_flags.DEFINE_config_file("config", None, "", flag_values=fv, sys_argv=argv)
        fv(argv)
        assert fv.config.to_dict() == r["config"].to_dict()
    # rm_k's budget after a comma: every run reads that many responses, K = 9 in as few steps.
    runs = sweep.plan(f"configs/ablations/rm_k.py:{w},14000", "/tmp/unused")
    assert [r["config"].data.response_budget for r in runs] == [14000] * 4
    assert runs[0]["config"].data.train == f"{w}/compare_k9/rm.jsonl"
    with pytest.raises(ValueError, match="budget '7x' after the comma"):
        sweep.plan(f"configs/ablations/rm_k.py:{w},7x", "/tmp/unused")


def test_run_stage_config_errors(tmp_path):
    from instructgpt_jax.config_base import load_config

    with pytest.raises(FileNotFoundError, match="config.json does not exist; run that stage first"):
        load_config(f"configs/run_stage.py:{tmp_path}/rm")
    (tmp_path / "rm").mkdir()
    (tmp_path / "rm" / "config.json").write_text('{"stage": "rm",\n "train": {,}}')
    with pytest.raises(ValueError, match=r"config.json, line 2: not valid JSON"):
        load_config(f"configs/run_stage.py:{tmp_path}/rm")
