"""Sections every stage config shares (mesh, optimizer, loop), so `configs/*.py` only state what differs.

The logical-axis rules live here as config, never in model code: change `config.mesh.rules` to move from
pure data parallelism to FSDP or tensor parallelism.
"""

from __future__ import annotations

import dataclasses
import typing

import ml_collections

from instructgpt_jax.sharding import DEFAULT_RULES


def mesh_config(shape=(-1, 1, 1)) -> ml_collections.ConfigDict:
    # A tuple, not a list: ml_collections can override tuples from the command line, `--config.mesh.shape='(1,8,4)'`.
    return ml_collections.ConfigDict({
        "shape": tuple(shape),       # devices along (data, fsdp, tensor); one -1 takes the rest
        "rules": [list(r) for r in DEFAULT_RULES],  # logical axis -> mesh axis (vocab, embed, heads, kv, mlp, batch)
    })


def optim_config(lr: float, warmup_steps: int = 0, weight_decay: float = 0.0) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({
        "lr": lr,                    # peak learning rate (AdamW)
        "warmup_steps": warmup_steps,  # linear warmup from 0, then cosine decay
        "min_lr_ratio": 0.1,         # the cosine ends at min_lr_ratio * lr (1.0: constant after warmup)
        "weight_decay": weight_decay,  # on matrices only, not biases or LayerNorm scales
        "b1": 0.9, "b2": 0.95, "eps": 1e-8,  # Adam moments and epsilon
        "grad_clip": 1.0,            # global-norm gradient clipping; 0 = off
    })


def train_config(steps: int, batch_size: int, seq_len: int, **overrides) -> ml_collections.ConfigDict:
    cfg = {
        "steps": steps,              # optimizer steps; 0 (SFT, RM) = from epochs
        "batch_size": batch_size,    # global batch: rows (pretraining, SFT) or prompts (RM) per step
        "seq_len": seq_len,          # tokens per row; 0 (SFT, RM) = fit the longest example
        "seed": 0,                   # data order, initialisation and dropout keys
        "log_every": 10,             # steps between metrics.jsonl / TensorBoard rows
        "eval_every": 100,           # steps between evaluations (and one at the end)
        "eval_batches": 4,           # held-out batches per evaluation
        "checkpoint_every": 100,     # steps between checkpoints (and one at the end)
        "keep_checkpoints": 3,       # newest checkpoints kept
        "keep_period": 0,             # also keep every checkpoint whose step is a multiple of this (0 = off)
        "async_checkpoint": False,   # write checkpoints in the background
        "tensorboard": True,         # TensorBoard events in <workdir>/tensorboard beside metrics.jsonl
    }
    cfg.update(overrides)
    return ml_collections.ConfigDict(cfg)


def model_config(preset: str, **overrides) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({
        "preset": preset,            # presets.py size; a stage with init_from takes its checkpoint's
        "dropout": 0.0,              # embedding, attention and residual dropout
        "dtype": "float32",          # compute dtype (float32, bfloat16); parameters stay float32
        "remat": False,              # recompute each block in the backward pass (less memory)
        **overrides,
    })


# Counts a config may hold (by key name): negative is an error; a cadence ("*_every") needs at least 1.
COUNT_KEYS = ("steps", "iterations", "epochs", "batch_size", "batches", "seq_len", "prompts", "rows", "responses",
              "max_new_tokens", "minibatches", "rollout_batch", "keep_checkpoints", "keep_period", "warmup_steps",
              "num_prompts")


def check_counts(config: ml_collections.ConfigDict, prefix: str = "config") -> None:
    """Reject a negative count or a cadence below 1 anywhere in `config` (0 steps keeps its meaning: from epochs)."""
    for key, value in config.items():
        name = f"{prefix}.{key}"
        if isinstance(value, ml_collections.ConfigDict):
            check_counts(value, name)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if key.endswith("_every") and value < 1:
                raise ValueError(f"{name}={value}; expected >= 1")
            if value < 0 and (key in COUNT_KEYS or key.endswith(COUNT_KEYS)):
                what = f" (0 = from {prefix}.epochs)" if key == "steps" and "epochs" in config else ""
                raise ValueError(f"{name}={value}; expected >= 0{what}")


def separate_rm(config) -> bool:
    """Whether a pipeline config's RM (and so PPO's value model) has its own preset, `config.rm_model`, not the
    policy's `config.model`."""
    return bool(config.get("rm_model")) and config.rm_model != config.model


RM_INITS = ("sft", "nlp", "sft_nlp")


def rm_start(config) -> str:
    """The stage folder a pipeline config's RM starts from: "rm_nlp" (the world's NLP datasets fine-tuned on top,
    `config.rm_init` "nlp" or "sft_nlp"), else "rm_sft" (its own preset, `separate_rm`) or "sft"."""
    init = config.get("rm_init", "sft")
    if init not in RM_INITS:
        raise ValueError(f"config.rm_init={init!r}; expected one of {RM_INITS}")
    if init != "sft":
        return "rm_nlp"
    return "rm_sft" if separate_rm(config) else "sft"


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


def from_config(cls, section, where: str):
    """The frozen dataclass `cls` from a config section (a ConfigDict or a mapping, e.g. a world.json's "config").

    The configs/ files hold every value: each field must be given (`where`.field is named when missing) and no
    other key. Lists become tuples for tuple fields (JSON and ConfigDict overrides give lists); a dataclass field
    is built from its sub-section the same way. A value that is already a `cls` is returned as it is.
    """
    if isinstance(section, cls):
        return section
    values = section.to_dict() if hasattr(section, "to_dict") else dict(section)
    types = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"{where} has unknown keys {unknown}; expected some of {sorted(names)}")
    missing = [name for name in names if name not in values]
    if missing:
        raise ValueError(f"{where}.{missing[0]} is missing (every key of {where} is set in its configs/ file; "
                         f"missing: {missing})")
    for name in names:
        kind = types[name]
        if dataclasses.is_dataclass(kind):
            values[name] = from_config(kind, values[name], f"{where}.{name}")
        elif typing.get_origin(kind) is tuple and isinstance(values[name], list):
            values[name] = tuple(values[name])
    return cls(**values)


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
