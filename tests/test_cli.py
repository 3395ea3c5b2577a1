"""The `instructgpt` command: usage, unknown commands, and config overrides that must be rejected."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, timeout=120):
    env = {**os.environ, "TQDM_DISABLE": "1", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    return subprocess.run(
        [sys.executable, "-m", "instructgpt_jax.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_help_lists_every_command():
    out = _run("--help")
    assert out.returncode == 0
    for command in ("pretrain", "sft", "rm", "ppo", "pipeline", "eval", "sample", "report", "bench", "import-hf", "export-hf"):
        assert command in out.stdout


def test_unknown_command():
    out = _run("pretrian")
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
    out = _run("pretrain", "--config", "configs/pretrain.py:smoke", override, "--workdir", str(tmp_path / "w"))
    assert out.returncode != 0
    assert message in out.stderr
    assert not (tmp_path / "w").exists()


def test_missing_workdir_is_a_usage_error():
    out = _run("pretrain", "--config", "configs/pretrain.py:smoke")
    assert out.returncode != 0
    assert "needs --workdir" in out.stderr
