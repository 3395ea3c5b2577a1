"""Inputs the stage tests share: the smoke world's files, a nano checkpoint trained 2 LM steps, a nano train config."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from instructgpt_jax import config_base, sharding, train
from instructgpt_jax.data import formats
from instructgpt_jax.pretrain import pretrain_loss

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = [sys.executable, "-m", "instructgpt_jax.cli"]


def cli_env(environ=None) -> dict:
    """`environ` (default: this process's environment) as a CLI subprocess of the tests runs in: 8 fake devices,
    no progress bars."""
    return {**(os.environ if environ is None else environ), "TQDM_DISABLE": "1",
            "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}


def run_cli(*args, timeout=120, environ=None) -> subprocess.CompletedProcess:
    """`instructgpt *args` in a subprocess from the repository root, its output captured."""
    return subprocess.run([*CLI, *args], cwd=ROOT, env=cli_env(environ), capture_output=True, text=True,
                          timeout=timeout)


def nano_config(steps: int, batch_size: int, seq_len: int, lr: float, checkpoint_every: int):
    """A train.run config for the nano model on every device's data axis (2 warm-up steps, no TensorBoard)."""
    config = ml_collections.ConfigDict()
    config.model = config_base.model_config("nano")
    config.mesh = config_base.mesh_config((-1, 1, 1))
    config.optim = config_base.optim_config(lr, warmup_steps=2)
    config.train = config_base.train_config(steps, batch_size, seq_len, log_every=5, checkpoint_every=checkpoint_every,
                                            tensorboard=False)
    return config


def world_and_checkpoint(root, stage: str, config) -> None:
    """Write root/world (the smoke world) and root/<stage>: `config`'s model after 2 steps on random bytes
    (what a stage test reads from it is the architecture and some diversity, not skill)."""
    formats.write_world(config_base.load_config("configs/world.py:smoke"), str(root / "world"))
    setup = train.make_setup(train.model_config(config.model), config.mesh, train.make_optimizer(config.optim, 2))
    data = np.random.default_rng(0).integers(0, 256, size=(8, 33)).astype(np.int32)
    train.run(stage=stage, workdir=str(root / stage), config=config, setup=setup, loss_fn=pretrain_loss,
              batches=lambda s: {"tokens": data}, total_steps=2, init_params=lambda: train.random_params(setup, 0))


def assert_sharded_step_matches(make_config, loss_fn, batch, scalar_head: bool = False) -> None:
    """Two train steps of `loss_fn` on `batch` give the same loss and params on one device and on a (2, 2, 2)
    mesh of the 8 fake devices (`make_config()`: a config with model; its mesh is set here)."""
    results = []
    for devices, shape in ((jax.devices()[:1], (1, 1, 1)), (jax.devices(), (2, 2, 2))):
        config = make_config()
        config.mesh = config_base.mesh_config(shape)
        # Plain SGD: Adam's first steps divide by |g|, amplifying summation-order noise where g is ~0.
        setup = train.make_setup(train.model_config(config.model, scalar_head=scalar_head), config.mesh,
                                 optax.sgd(0.1), devices=devices)
        with jax.set_mesh(setup.mesh):
            params = train.random_params(setup, 0)
            state = jax.device_put({"step": jnp.int32(0), "params": params, "opt_state": jax.jit(setup.tx.init)(params),
                                    "bad_step": jnp.int32(-1)}, setup.shardings)
            step = train.jit_train_step(setup, loss_fn, batch)
            for _ in range(2):
                state, m = step(state, sharding.shard_batch(batch, setup.mesh), jax.random.key(0))
            results.append((jax.device_get(state["params"]), float(m["loss"])))
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(results[0][0]), jax.tree.leaves(results[1][0])):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5)
