"""Multi-host JAX on one machine: 2 CPU processes x 4 fake devices (experiments/multihost_local.sh) train
over one 8-device mesh and end with the same parameters and losses as one process with 8 devices.

The mesh is (2, 2, 2), so parameters are FSDP- and tensor-sharded across the two processes, every batch is
assembled from both processes' rows, and both processes write their shards of the checkpoint.
"""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from instructgpt_jax import checkpoint, metrics
from instructgpt_jax import stages

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVERRIDES = ["--config.mesh.shape=(2, 2, 2)", "--config.train.steps=4", "--config.train.log_every=2",
             "--config.train.eval_every=4", "--config.train.checkpoint_every=4", "--config.train.tensorboard=False"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _load_config(spec: str, overrides: list[str]):
    """The config the CLI would build from `spec` and `--config.k=v` overrides (same parser as the CLI)."""
    from absl import flags
    from ml_collections import config_flags

    argv = ["prog", f"--config={spec}", *overrides]
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True, sys_argv=argv)
    fv(argv)
    return fv.config


def _multihost(tmp_path, command: list[str]):
    env = {**os.environ, "PYTHON": sys.executable, "PORT": str(_free_port()), "LOG_DIR": str(tmp_path / "logs")}
    env.pop("XLA_FLAGS", None)  # the worker sets its own device count
    out = subprocess.run([os.path.join(ROOT, "experiments", "multihost_local.sh"), *command], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    logs = "".join(p.read_text() for p in sorted((tmp_path / "logs").glob("*.log")))
    assert out.returncode == 0, out.stderr + logs
    assert "process 1/2: 4 local of 8 devices" in logs
    return logs


def _assert_same_run(single_dir, multi_dir, stage: str):
    _, _, single, meta_s = checkpoint.load_model(single_dir)
    _, _, multi, meta_m = checkpoint.load_model(multi_dir)
    assert meta_s["step"] == meta_m["step"] == 4
    for path, a in jax.tree_util.tree_flatten_with_path(single)[0]:
        b = multi
        for k in path:
            b = b[k.key if hasattr(k, "key") else k]
        # Only the order of cross-device sums differs (gloo vs in-process all-reduce): float32 round-off.
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-5, err_msg=str(path))
    rows_s = [r for r in metrics.read_metrics(single_dir) if f"{stage}/loss" in r]
    rows_m = [r for r in metrics.read_metrics(multi_dir) if f"{stage}/loss" in r]
    assert [r["step"] for r in rows_m] == [r["step"] for r in rows_s] == [2, 4]
    np.testing.assert_allclose([r[f"{stage}/loss"] for r in rows_m], [r[f"{stage}/loss"] for r in rows_s], rtol=1e-5)
    # The multi-host run really changed the params (a no-op run would also "match" a no-op run).
    assert rows_m[-1][f"{stage}/loss"] < rows_m[0][f"{stage}/loss"]


@pytest.mark.slow  # the default suite stays under 12 minutes on 2 cores (README)
def test_two_processes_sft_equal_one(tmp_path):
    """SFT, the target: 4 steps from a pretrained checkpoint on the world's demonstrations, 2 x 4 devices vs 8."""
    from instructgpt_jax.config_base import load_config
    from instructgpt_jax.data import formats

    formats.write_world(load_config("configs/world.py:smoke"), str(tmp_path / "world"))
    stages.pretrain.run(_load_config(os.path.join(ROOT, "configs/pretrain.py:smoke"), OVERRIDES), str(tmp_path / "pretrain"))
    spec = "configs/sft.py:smoke"
    overrides = OVERRIDES + [f"--config.init_from={tmp_path / 'pretrain'}",
                             f"--config.data.train={tmp_path / 'world' / 'sft.jsonl'}"]
    stages.sft.run(_load_config(os.path.join(ROOT, spec), overrides), str(tmp_path / "single"))
    _multihost(tmp_path, ["sft", "--config", spec, *overrides, "--workdir", str(tmp_path / "multi")])
    _assert_same_run(str(tmp_path / "single"), str(tmp_path / "multi"), "sft")
    # The evaluation too: validation loss, and greedy / temperature-1 samples judged by the gold judge.
    for key in ("sft/val_loss", "sft/gold_score", "sft/gold_score_t1", "sft/response_length"):
        got = [[r[key] for r in metrics.read_metrics(str(tmp_path / d)) if key in r] for d in ("single", "multi")]
        assert len(got[0]) == 2, key  # step 0 (the base model) and the last step
        np.testing.assert_allclose(got[1], got[0], rtol=1e-5, err_msg=key)


@pytest.mark.slow
def test_two_processes_pretrain_equal_one(tmp_path):
    spec = "configs/pretrain.py:smoke"

    stages.pretrain.run(_load_config(os.path.join(ROOT, spec), OVERRIDES), str(tmp_path / "single"))
    _multihost(tmp_path, ["pretrain", "--config", spec, *OVERRIDES, "--workdir", str(tmp_path / "multi")])
    _assert_same_run(str(tmp_path / "single"), str(tmp_path / "multi"), "pretrain")
    assert json.loads((tmp_path / "multi" / "config.json").read_text())["mesh"]["shape"] == [2, 2, 2]


@pytest.mark.slow
def test_two_processes_evaluate_like_one(tmp_path_factory, tmp_path):
    """`instructgpt eval` on 2 processes: the same samples and figures as the in-process evaluation."""
    import shutil

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from test_pipeline import smoke_workdir

    workdir, summary, _ = smoke_workdir(tmp_path_factory)
    w = tmp_path / "w"
    shutil.copytree(workdir, w, symlinks=True)
    os.remove(w / "summary.json")
    _multihost(tmp_path, ["eval", "--config", "configs/pipeline.py:smoke", "--workdir", str(w)])
    multi = json.loads((w / "summary.json").read_text())
    for name, figures in summary["policies"].items():
        for key, value in figures.items():
            if isinstance(value, float):
                np.testing.assert_allclose(multi["policies"][name][key], value, rtol=1e-5, err_msg=f"{name} {key}")
            else:
                assert multi["policies"][name][key] == value, (name, key)
        assert (w / "eval" / f"{name}.jsonl").read_text() == (workdir / "eval" / f"{name}.jsonl").read_text()


def test_worker_needs_a_command():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "multihost_worker.py"), "--process_id=0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "usage" in out.stderr
