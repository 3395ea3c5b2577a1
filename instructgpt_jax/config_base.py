"""Sections every stage config shares (mesh, optimizer, loop), so `configs/*.py` only state what differs.

The logical-axis rules live here as config, never in model code: change `config.mesh.rules` to move from
pure data parallelism to FSDP or tensor parallelism.
"""

from __future__ import annotations

import ml_collections

from instructgpt_jax.sharding import DEFAULT_RULES


def mesh_config(shape=(-1, 1, 1)) -> ml_collections.ConfigDict:
    # A tuple, not a list: ml_collections can override tuples from the command line, `--config.mesh.shape='(1,8,4)'`.
    return ml_collections.ConfigDict({"shape": tuple(shape), "rules": [list(r) for r in DEFAULT_RULES]})


def optim_config(lr: float, warmup_steps: int = 0, weight_decay: float = 0.0) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {"lr": lr, "warmup_steps": warmup_steps, "min_lr_ratio": 0.1, "weight_decay": weight_decay,
         "b1": 0.9, "b2": 0.95, "eps": 1e-8, "grad_clip": 1.0}
    )


def train_config(steps: int, batch_size: int, seq_len: int, **overrides) -> ml_collections.ConfigDict:
    cfg = {
        "steps": steps, "batch_size": batch_size, "seq_len": seq_len, "seed": 0,
        "log_every": 10, "eval_every": 100, "eval_batches": 4, "checkpoint_every": 100,
        "keep_checkpoints": 3, "async_checkpoint": False, "tensorboard": True,
    }
    cfg.update(overrides)
    return ml_collections.ConfigDict(cfg)


def model_config(preset: str, **overrides) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"preset": preset, "dropout": 0.0, "dtype": "float32", "remat": False, **overrides})
