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


def test_stage_ablations_run_the_pipeline_defaults_stage():
    """The beta, ptx, overopt and rm_data ablations start from a pipeline workdir: each run must have that
    pipeline's token lengths, corpus and RM layout (a run with the stage file's byte-sized defaults is not the
    row it claims to be)."""
    from instructgpt_jax.config_base import load_config

    pipe = load_config("configs/pipeline.py:default")
    for name in ("beta", "ptx", "overopt"):
        runs = sweep.plan(f"configs/ablations/{name}.py:/w", "/tmp/unused")
        assert len(runs) >= 3
        for r in runs:
            c = r["config"]
            assert c.data.prompt_len == pipe.ppo.data.prompt_len == 48
            assert c.ppo.max_new_tokens == pipe.ppo.ppo.max_new_tokens == 24
            assert c.data.corpus.source == pipe.ppo.data.corpus.source == "web"
            assert c.init_policy == "/w/sft" and c.reward_model == "/w/rm"
    assert {r["config"].ppo.beta for r in sweep.plan("configs/ablations/ptx.py:/w", "/tmp/unused")} == \
        {pipe.ppo_ptx.ppo.beta}
    overopt = sweep.plan("configs/ablations/overopt.py:/w", "/tmp/unused")
    assert [r["config"].ppo.beta for r in overopt] == [0.02, 0.1, 0.2]
    assert all(r["config"].optim.lr == r["config"].value_optim.lr == 1e-4 for r in overopt)
    assert all(r["config"].ppo.ptx_coef == 0.0 for r in overopt)
    for r in sweep.plan("configs/ablations/rm_data.py:/w", "/tmp/unused"):
        c = r["config"]
        assert c.rm.packed_rows == pipe.rm.rm.packed_rows == 8 and c.train.epochs == pipe.rm.train.epochs
        assert c.init_from == "/w/sft" and c.data.train == "/w/compare/rm.jsonl"
