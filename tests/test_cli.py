"""The `instructgpt` command: usage, unknown commands, and config overrides that must be rejected."""

import pytest
from stage_inputs import run_cli


def test_help_lists_every_command():
    out = run_cli("--help")
    assert out.returncode == 0
    for command in ("pretrain", "sft", "rm", "ppo", "pipeline", "eval", "sample", "report", "bench", "import-hf", "export-hf"):
        assert command in out.stdout


def test_unknown_command():
    out = run_cli("pretrian")
    assert out.returncode == 2
    assert "unknown command 'pretrian'" in out.stderr


@pytest.mark.parametrize(
    "override, message",
    [
        ("--config.train.bogus=1", "bogus"),
        ("--config.train.steps=ten", "steps"),
    ],
)
def test_bad_override_is_rejected(tmp_path, override, message):
    out = run_cli("pretrain", "--config", "configs/pretrain.py:smoke", override, "--workdir", str(tmp_path / "w"))
    assert out.returncode != 0
    assert message in out.stderr
    assert not (tmp_path / "w").exists()


def test_missing_workdir_is_a_usage_error():
    out = run_cli("pretrain", "--config", "configs/pretrain.py:smoke")
    assert out.returncode != 0
    assert "needs --workdir" in out.stderr


def _help(capsys, *argv) -> str:
    from instructgpt_jax import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["instructgpt", *argv])
    assert e.value.code == 0
    return capsys.readouterr().out


def test_help_gives_one_example_per_command(capsys):
    out = _help(capsys, "--help")
    for command in ("world", "pretrain", "sft", "compare", "rm", "ppo", "pipeline", "eval", "report", "sample",
                    "bench", "import-hf", "export-hf"):
        assert f"\n  {command} " in out and f"    instructgpt {command} --" in out, command


@pytest.mark.parametrize("flag", ["--help", "-h", "--helpfull"])
def test_command_help_lists_config_keys_defaults_meanings_and_flags(flag, capsys):
    out = _help(capsys, "sft", flag)
    # each key with its default and the comment beside it in configs/sft.py or config_base.py
    assert "init_from = ''" in out and "pretraining stage folder, e.g. W/pretrain" in out
    assert "train.steps = 0" in out and "optimizer steps; 0 (SFT, RM) = from epochs" in out
    assert "train.epochs = 12.0" in out and "passes over the demonstrations when steps = 0" in out
    assert "eval.base = True" in out and "model.preset = 'tiny'" in out
    for name in ("--config=configs/sft.py", "--workdir", "--restart"):
        assert name in out


def test_command_help_follows_the_given_config(capsys):
    out = _help(capsys, "pipeline", "--config", "configs/pipeline.py:smoke", "--help")
    assert "model = 'nano-world'" in out and "sft.train.steps = 30" in out
    assert "sft.init_from = ''" in out and "pretraining stage folder" in out  # the stage file's meaning


def test_sample_help_documents_its_flags(capsys):
    out = _help(capsys, "sample", "--help")
    for text in ("--prompt", "--max_new_tokens=64", "--temperature=0.0", "0 = greedy", "--seed=0"):
        assert text in out


def test_eval_takes_the_seed_of_the_run_it_evaluates(tmp_path):
    """`instructgpt eval --config.seed=2` evaluates as the seed-2 pipeline's eval stage does: its world (whose
    labelers judge the win rate) is seed 2's. Without the seed the world differs from W's, and that is an error
    naming the field, not a silent evaluation by other labelers."""
    from instructgpt_jax import pipeline
    from instructgpt_jax.config_base import load_config

    config = load_config("configs/pipeline.py:smoke")
    config.seed = 2
    world = pipeline.stage_configs(config, str(tmp_path / "w"))["world"]
    (tmp_path / "w" / "world").mkdir(parents=True)
    (tmp_path / "w" / "world" / "world.json").write_text('{"config": ' + world.to_json() + '}')
    args = ("eval", "--config", "configs/pipeline.py:smoke", "--workdir", str(tmp_path / "w"))
    wrong = run_cli(*args)
    assert wrong.returncode == 1
    assert "world.json was made by another world config" in wrong.stderr and "seed: 2 there, 0 here" in wrong.stderr
    right = run_cli(*args, "--config.seed=2")  # past the world check, to the next input W lacks
    assert right.returncode == 1 and "world/eval.jsonl: no such file" in right.stderr, right.stderr


def test_info_lines_reach_stderr(tmp_path):
    # Importing Orbax gives the root logger absl's WARNING handler; the CLI must still print its INFO lines
    # ("resuming from step N", the stages' progress), which the fault tests and users read.
    out = run_cli("pretrain", "--config", "configs/pretrain.py:smoke", "--config.train.steps=1",
               "--config.train.tensorboard=False", "--workdir", str(tmp_path / "run"), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "INFO instructgpt_jax.stages.pretrain: pretrain corpus:" in out.stderr
