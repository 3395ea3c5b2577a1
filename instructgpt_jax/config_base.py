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


def load_config(spec: str) -> ml_collections.ConfigDict:
    """`configs/X.py[:arg]` -> get_config(arg), as `--config` loads it (a relative path is tried against the
    working directory, then the repository root), so a config file can embed another stage's config."""
    import importlib.util
    import os

    path, _, arg = spec.partition(":")
    if not os.path.isabs(path) and not os.path.exists(path):
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"config file {spec.partition(':')[0]!r} not found (from {os.getcwd()} or the repository root)")
    module_spec = importlib.util.spec_from_file_location(f"_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict) -> ml_collections.ConfigDict:
    """Set `{"dotted.key": value}` on `config` in place; a key the config does not have is an error."""
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = config
        for i, key in enumerate(parents):
            if key not in node:
                raise KeyError(f"override {dotted!r}: config has no {'.'.join(parents[:i + 1])!r}")
            node = node[key]
        if leaf not in node:
            raise KeyError(f"override {dotted!r}: config has no key {dotted!r}")
        node[leaf] = value
    return config
