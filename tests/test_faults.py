"""Faults a long run must survive: kill -9 mid-step and mid-checkpoint, corrupt or partial checkpoints,
a full disk, and NaN/inf in the loss or gradients.

The kill, corruption and disk-full cases run the real `instructgpt pretrain` CLI as a subprocess (2 CPU
devices, the nano model, 24 steps, a checkpoint every 4) and require the rerun to end with parameters
bit-identical to one uninterrupted run. A fault inside a checkpoint write is placed exactly by a wrapper
that patches Orbax's meta-file write (the last item written before the folder is committed) to SIGKILL
the process or raise ENOSPC there; everything else is the unmodified CLI.
"""

import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from instructgpt_jax import checkpoint, config_base, metrics, train
from instructgpt_jax.model import GPTConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS, EVERY = 24, 4
ARGS = ["pretrain", "--config", "configs/pretrain.py:smoke", f"--config.train.steps={STEPS}",
        f"--config.train.checkpoint_every={EVERY}", "--config.train.log_every=1", "--config.train.eval_every=1000",
        "--config.train.eval_batches=1", "--config.train.batch_size=8", "--config.train.seq_len=32",
        "--config.train.tensorboard=False", "--config.optim.warmup_steps=2"]

# Runs the CLI with Orbax's meta write patched to fail on its N-th call (FAULT_AT): "kill" sends SIGKILL
# to this process right after the file is written (arrays may still be in flight, the folder is not yet
# committed); "enospc" raises the error a full disk gives.
WRAPPER = """
import errno, os, signal, sys
from orbax.checkpoint._src.handlers import json_checkpoint_handler as h
mode, at = os.environ["FAULT_MODE"], int(os.environ["FAULT_AT"])
original, calls = h.JsonCheckpointHandler._save_fn, [0]
async def faulty(self, x, directory):
    calls[0] += 1
    if calls[0] == at and mode == "enospc":
        raise OSError(errno.ENOSPC, "No space left on device", str(directory))
    await original(self, x, directory)
    if calls[0] == at and mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
h.JsonCheckpointHandler._save_fn = faulty
from instructgpt_jax import cli
cli.main(["instructgpt"] + sys.argv[1:])
"""


def _env(**extra):
    return {**os.environ, "TQDM_DISABLE": "1", "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
            "JAX_PLATFORMS": "cpu", **extra}


def _cli(workdir, *extra, wrapper_env=None, timeout=300):
    argv = [sys.executable] + (["-c", WRAPPER] if wrapper_env else ["-m", "instructgpt_jax.cli"])
    return subprocess.run(argv + ARGS + ["--workdir", str(workdir), *extra], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=_env(**(wrapper_env or {})))


def _final_params(workdir):
    _, _, params, meta = checkpoint.load_model(str(workdir))
    assert meta["step"] == STEPS
    return params


def _assert_bit_identical(a, b):
    leaves_a, leaves_b = jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for (path, x), y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


def _losses(workdir):
    return {r["step"]: r["pretrain/loss"] for r in metrics.read_metrics(str(workdir)) if "pretrain/loss" in r}


def _ckpt_entries(workdir):
    return sorted(os.listdir(os.path.join(workdir, "checkpoints")))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run: its final params and per-step losses."""
    workdir = tmp_path_factory.mktemp("reference")
    out = _cli(workdir)
    assert out.returncode == 0, out.stderr[-2000:]
    return _final_params(workdir), _losses(workdir)


def _rerun_resumes(workdir, step, reference):
    """Rerun the plain CLI: it resumes from `step` and ends as the uninterrupted reference run."""
    out = _cli(workdir)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"resuming from step {step}" in out.stderr
    _check_resumed(workdir, reference)


def _check_resumed(workdir, reference):
    params, losses = reference
    _assert_bit_identical(_final_params(workdir), params)
    assert _losses(workdir) == losses  # metrics.jsonl reads as one uninterrupted run
    assert all(e.isdigit() for e in _ckpt_entries(workdir)), _ckpt_entries(workdir)  # no temporary folder left


@pytest.mark.slow
def test_kill_9_during_training_step_then_rerun_is_bit_identical(tmp_path, reference):
    workdir = tmp_path / "w"
    proc = subprocess.Popen([sys.executable, "-m", "instructgpt_jax.cli", *ARGS, "--workdir", str(workdir)], cwd=ROOT,
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and max(_losses(workdir) or [0]) < EVERY + 2:
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = checkpoint.latest_step(str(workdir / "checkpoints"))
    assert killed_at is not None and killed_at < STEPS, f"the run was not interrupted (latest checkpoint {killed_at})"
    _rerun_resumes(workdir, killed_at, reference)


@pytest.mark.slow
def test_kill_9_during_checkpoint_write_then_rerun_is_bit_identical(tmp_path, reference):
    workdir = tmp_path / "w"
    out = _cli(workdir, wrapper_env={"FAULT_MODE": "kill", "FAULT_AT": "2"})
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    # Killed while writing step 2 * EVERY: only step EVERY is a checkpoint; the half-written one is a temp folder.
    assert checkpoint.latest_step(str(workdir / "checkpoints")) == EVERY
    assert any(".orbax-checkpoint-tmp" in e for e in _ckpt_entries(workdir)), _ckpt_entries(workdir)
    _rerun_resumes(workdir, EVERY, reference)


@pytest.mark.slow
def test_disk_full_on_save_keeps_previous_checkpoint(tmp_path, reference):
    workdir = tmp_path / "w"
    out = _cli(workdir, wrapper_env={"FAULT_MODE": "enospc", "FAULT_AT": "2"})
    assert out.returncode == 1, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "No space left on device" in errors[0], out.stderr[-2000:]
    assert checkpoint.latest_step(str(workdir / "checkpoints")) == EVERY
    _rerun_resumes(workdir, EVERY, reference)  # space freed: the rerun starts from the intact previous checkpoint


def _truncate_arrays(step_dir):
    for root, _, files in os.walk(os.path.join(step_dir, "params")):
        for name in files:
            path = os.path.join(root, name)
            if "metadata" not in name and os.path.getsize(path) > 0:
                open(path, "wb").close()


def _drop_meta(step_dir):
    import shutil

    shutil.rmtree(os.path.join(step_dir, "meta"))


@pytest.mark.slow
@pytest.mark.parametrize("damage", [_truncate_arrays, _drop_meta], ids=["truncated_arrays", "missing_meta_item"])
def test_corrupt_or_partial_newest_checkpoint_is_skipped(tmp_path, reference, damage):
    workdir = tmp_path / "w"
    out = _cli(workdir)  # a finished run ...
    assert out.returncode == 0, out.stderr[-2000:]
    damage(str(workdir / "checkpoints" / str(STEPS)))  # ... whose newest checkpoint is then damaged
    out = _cli(workdir)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"checkpoint step {STEPS}" in out.stderr and "unreadable" in out.stderr
    assert f"resuming from step {STEPS - EVERY}" in out.stderr
    # The damaged folder is kept for inspection, out of the way of the checkpoint that replaces it.
    assert any(e.startswith(f"{STEPS}.unreadable") for e in os.listdir(workdir / "checkpoints_unreadable"))
    params, losses = reference
    _assert_bit_identical(_final_params(workdir), params)
    assert _losses(workdir) == losses


def test_nonfinite_loss_via_cli_stops_with_step_metric_and_last_good_checkpoint(tmp_path):
    # lr 1e30 blows the weights up after the first real update; the forward pass then overflows.
    workdir = tmp_path / "w"
    out = _cli(workdir, "--config.optim.lr=1e30", "--config.train.checkpoint_every=1")
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, out.stderr[-2000:]
    assert "NonFiniteError" in errors[0] and "non-finite at step" in errors[0] and "last good checkpoint:" in errors[0]
    bad = int(errors[0].split("non-finite at step ")[1].split()[0])
    assert f"checkpoints/{bad}" in errors[0]  # the checkpoint written before the bad step
    assert checkpoint.latest_step(str(workdir / "checkpoints")) == bad
    _, _, params, _ = checkpoint.load_model(str(workdir))
    assert all(bool(jnp.isfinite(p).all()) for p in jax.tree.leaves(params))


def _loop_config(steps):
    config = ml_collections.ConfigDict()
    config.train = config_base.train_config(steps=steps, batch_size=8, seq_len=8, log_every=1, checkpoint_every=2,
                                            tensorboard=False)
    return config


def _poisoned_loss(model, batch, rng):
    """Mean logit of the batch, times the batch's `scale` (inf in a chosen step's batch)."""
    logits = model(batch["tokens"])
    loss = logits.mean() * batch["scale"][0]
    return loss, {}


@pytest.mark.parametrize("bad_step, poison", [(5, np.inf), (3, np.nan)])
def test_nonfinite_step_leaves_params_untouched_and_names_step_and_checkpoint(tmp_path, bad_step, poison):
    cfg = GPTConfig(vocab_size=32, n_positions=16, n_layer=1, n_head=2, n_embd=16)
    setup = train.make_setup(cfg, config_base.mesh_config((8, 1, 1)), train.make_optimizer(config_base.optim_config(1e-2), 8))
    tokens = np.random.RandomState(0).randint(0, 32, size=(8, 8)).astype(np.int32)

    def batches(step):
        return {"tokens": tokens, "scale": np.full((8,), poison if step == bad_step else 1.0, np.float32)}

    with pytest.raises(train.NonFiniteError) as e:
        train.run(stage="toy", workdir=str(tmp_path), config=_loop_config(8), setup=setup, loss_fn=_poisoned_loss,
                  batches=batches, total_steps=8, init_params=lambda: train.random_params(setup, 0))
    message = str(e.value)
    last_good = bad_step - bad_step % 2  # checkpoints every 2 steps; step s's checkpoint is written after it
    assert f"non-finite at step {bad_step}" in message and "loss=" in message and "grad_norm=" in message
    assert message.endswith(os.path.join(str(tmp_path), "checkpoints", str(last_good)))
    assert checkpoint.latest_step(str(tmp_path / "checkpoints")) == last_good
    rows = metrics.read_metrics(str(tmp_path))
    assert [r["step"] for r in rows] == list(range(1, bad_step + 1))  # the bad step is never logged as a result
