"""Inputs the stage tests share: the smoke world's files, a nano checkpoint trained 2 LM steps, a nano train config."""
import ml_collections
import numpy as np

from instructgpt_jax import config_base, train
from instructgpt_jax.data import formats
from instructgpt_jax.pretrain import pretrain_loss


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
