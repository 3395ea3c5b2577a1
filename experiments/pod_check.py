"""Check a pod config before paying for the slice: shardings of every parameter and optimizer-state leaf on an
abstract mesh of the slice's shape, and per-chip memory of each training stage against the chip's HBM.

  python experiments/pod_check.py --config configs/pods/gpt3_6b7.py:v4-128

Nothing is allocated: the model comes from `jax.eval_shape`, the mesh is a `jax.sharding.AbstractMesh`
with the slice's device count, and shardings come from the same `sharding.param_shardings` / `like_params`
the stages use. Per-chip bytes per stage = trained params + gradients + AdamW state (float32 master copies,
each leaf's shard) + frozen models (PPO: reference policy and reward model) + activations (an estimate:
with remat, each block's input is kept and one block is recomputed at a time; logits in float32) + the
sampler's KV cache (PPO). A stage fits when that is below `config.pod.hbm_fraction` of the chip's HBM,
leaving the rest to XLA's scratch buffers and fragmentation.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import AbstractMesh, AxisType, NamedSharding  # noqa: E402

from instructgpt_jax import sharding, train  # noqa: E402
from instructgpt_jax.config_base import load_config  # noqa: E402
from instructgpt_jax.model import abstract_model  # noqa: E402

GIB = 2 ** 30


def abstract_mesh(shape) -> AbstractMesh:
    return AbstractMesh(tuple(shape), sharding.MESH_AXES, axis_types=(AxisType.Auto,) * 3)


def _bytes(tree, shardings) -> int:
    """Bytes one device holds of `tree` (ShapeDtypeStructs) under `shardings`; checks each leaf's sharding."""
    total = 0
    for (path, leaf), s in zip(jax.tree_util.tree_flatten_with_path(tree)[0], jax.tree.leaves(shardings)):
        if not isinstance(s, NamedSharding):
            raise TypeError(f"{jax.tree_util.keystr(path)}: sharding {s!r} is not a NamedSharding")
        for dim, axis in zip(leaf.shape, tuple(s.spec) + (None,) * leaf.ndim):
            axes = () if axis is None else (axis if isinstance(axis, tuple) else (axis,))
            if dim % math.prod(s.mesh.shape[a] for a in axes):
                raise ValueError(f"{jax.tree_util.keystr(path)}: dimension {dim} not divisible by mesh axes {axes}")
        total += math.prod(s.shard_shape(leaf.shape)) * leaf.dtype.itemsize
    return total


def model_state(section, mesh, steps: int, scalar_head: bool = False):
    """(params bytes, AdamW state bytes, total params, GPTConfig) per device for one stage's model."""
    cfg = train.model_config(section.model, scalar_head=scalar_head)
    rules = tuple(tuple(r) for r in section.mesh.rules)
    return (*_model_state(cfg, mesh, rules, steps), cfg)


@functools.lru_cache(maxsize=16)  # stages share the model: trace each (architecture, mesh) once
def _model_state(cfg, mesh, rules, steps: int):
    # AdamW's state has the same leaves whatever the learning rate, decay or clipping: one optimizer serves all.
    from instructgpt_jax.config_base import optim_config

    optim = optim_config(lr=1e-4, weight_decay=0.1)
    _, abs_state = abstract_model(cfg)
    p_shard = sharding.param_shardings(abs_state, mesh, rules)
    abs_params = nnx.to_pure_dict(abs_state)
    abs_opt = jax.eval_shape(train.make_optimizer(optim, steps).init, abs_params)
    o_shard = sharding.like_params(abs_opt, p_shard, mesh)
    n = sum(math.prod(x.shape) for x in jax.tree.leaves(abs_params))
    return _bytes(abs_params, p_shard), _bytes(abs_opt, o_shard), n


def activation_bytes(cfg, mesh, rows: int, seq: int, remat: bool) -> int:
    """Per-device activations of forward + backward over `rows` x `seq` tokens (global rows)."""
    b = max(rows // sharding.batch_shards(mesh), 1)
    tp = mesh.shape["tensor"]
    a = np.dtype(cfg.dtype).itemsize
    heads = cfg.n_head // tp if cfg.n_head % tp == 0 else cfg.n_head
    mlp = cfg.mlp_dim // tp if cfg.mlp_dim % tp == 0 else cfg.mlp_dim
    vocab = cfg.vocab_size // tp if cfg.vocab_size % tp == 0 else cfg.vocab_size
    block = b * seq * (6 * cfg.n_embd * a + 3 * cfg.n_embd * a + 2 * mlp * a) + 2 * b * heads * seq * seq * 4
    kept = cfg.n_layer * b * seq * cfg.n_embd * a + block if remat else cfg.n_layer * block
    return kept + 2 * b * seq * vocab * 4


def check(config) -> dict:
    """{stage: {bytes per chip by kind, total, fits}} for pretrain, SFT, RM and PPO(-ptx) of a pipeline config.

    Stages the config lacks are skipped (the benchmark pod configs import their base model: no pretrain), and
    its PPO section is `ppo_ptx`, else `ppo` (pretraining rows counted only when ptx_coef > 0).
    """
    pod = config.pod
    mesh = abstract_mesh(config.sft.mesh.shape)
    if math.prod(mesh.shape.values()) != pod.chips:
        raise ValueError(f"mesh {dict(mesh.shape)} has {math.prod(mesh.shape.values())} devices; {pod.slice} has {pod.chips}")
    out = {}
    for stage in (s for s in ("pretrain", "sft", "rm") if s in config):
        s = config[stage]
        params, opt, n, cfg = model_state(s, mesh, 1000, scalar_head=stage == "rm")
        if stage == "pretrain":
            rows, seq = s.train.batch_size, s.train.seq_len
        elif stage == "sft":
            rows, seq = s.train.batch_size, s.train.seq_len or s.data.max_prompt_tokens + s.data.max_response_tokens
        else:  # every prompt's K responses are forwarded together
            rows = s.train.batch_size * s.data.k_max
            seq = s.train.seq_len or s.data.max_prompt_tokens + s.data.max_response_tokens
        out[stage] = {"params": params, "grads": params, "opt_state": opt,
                      "activations": activation_bytes(cfg, mesh, rows, seq, cfg.remat), "n_params": n}
    ppo_stage = "ppo_ptx" if "ppo_ptx" in config else "ppo"
    p = config[ppo_stage]
    params, opt, n, cfg = model_state(p, mesh, 1000)
    v_params, v_opt, _, v_cfg = model_state(p, mesh, 1000, scalar_head=True)
    frozen = (params + v_params) * np.dtype(p.ppo.frozen_dtype).itemsize // 4
    seq = p.data.prompt_len + p.ppo.max_new_tokens
    mb_rows = p.ppo.rollout_batch // p.ppo.minibatches
    shards = sharding.batch_shards(mesh)
    kv = 2 * cfg.n_layer * max(p.ppo.rollout_batch // shards, 1) * seq * cfg.n_embd * np.dtype(cfg.dtype).itemsize
    acts = activation_bytes(cfg, mesh, mb_rows, seq, cfg.remat) + activation_bytes(v_cfg, mesh, mb_rows, seq, cfg.remat)
    if p.ppo.ptx_coef > 0:
        acts += activation_bytes(cfg, mesh, p.ppo.ptx_batch_size, p.ppo.ptx_seq_len, cfg.remat)
    out[ppo_stage] = {"params": params + v_params, "grads": params + v_params, "opt_state": opt + v_opt,
                      "frozen": frozen, "kv_cache": kv, "activations": acts, "n_params": n}
    budget = pod.hbm_gib * GIB * pod.hbm_fraction
    for figures in out.values():
        figures["total"] = sum(v for k, v in figures.items() if k != "n_params")
        figures["fits"] = figures["total"] <= budget
    return out


def lower_train_step(config, stage: str = "sft", platform: str = "tpu"):
    """Trace and lower one training step of `stage` for `platform` on the slice's abstract mesh: the sharded
    program a pod would compile (params, optimizer state and batch with their pod shardings, donation)."""
    import jax.numpy as jnp

    from instructgpt_jax.pretrain import lm_loss

    s = config[stage]
    mesh = abstract_mesh(s.mesh.shape)
    cfg = train.model_config(s.model)
    graphdef, abs_state = abstract_model(cfg)
    p_shard = sharding.param_shardings(abs_state, mesh, tuple(tuple(r) for r in s.mesh.rules))
    tx = train.make_optimizer(s.optim, 1000)
    abs_params = nnx.to_pure_dict(abs_state)
    abs_opt = jax.eval_shape(tx.init, abs_params)
    repl = sharding.replicated(mesh)
    shardings = {"step": repl, "params": p_shard, "opt_state": sharding.like_params(abs_opt, p_shard, mesh),
                 "bad_step": repl}
    scalar = jax.ShapeDtypeStruct((), jnp.int32)
    abstract = {"step": scalar, "params": abs_params, "opt_state": abs_opt, "bad_step": scalar}
    state = jax.tree.map(lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh), abstract, shardings)
    seq = s.train.seq_len or s.data.max_prompt_tokens + s.data.max_response_tokens
    batch_sharding = {"tokens": sharding.batch_sharding(mesh, 2)}
    batch = {"tokens": jax.ShapeDtypeStruct((s.train.batch_size, seq), jnp.int32, sharding=batch_sharding["tokens"])}
    rng = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=repl)

    def loss_fn(model, batch, rng):
        return lm_loss(model, batch["tokens"], dropout_rng=rng)[0], {}

    step = functools.partial(train.train_step, graphdef, tx, loss_fn)
    jitted = jax.jit(step, in_shardings=(shardings, batch_sharding, repl), out_shardings=(shardings, repl),
                     donate_argnums=0)
    return jitted.trace(state, batch, rng).lower(lowering_platforms=(platform,))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a pod config, configs/pods/X.py:slice")
    parser.add_argument("--lower", action="store_true", help="also lower the sharded SFT train step for TPU")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    pod = config.pod
    print(f"{args.config}: {pod.slice}, {pod.chips} chips x {pod.hbm_gib} GiB HBM, {pod.hosts} hosts, "
          f"mesh {tuple(config.sft.mesh.shape)} (data, fsdp, tensor)")
    result = check(config)
    kinds = ("params", "grads", "opt_state", "frozen", "kv_cache", "activations", "total")
    print(f"{'stage':10}" + "".join(f"{k:>13}" for k in kinds) + "   GiB per chip")
    for stage, f in result.items():
        cells = "".join(f"{f.get(k, 0) / GIB:13.2f}" for k in kinds)
        print(f"{stage:10}{cells}   {'fits' if f['fits'] else 'DOES NOT FIT'} ({f['n_params'] / 1e9:.2f}B params)")
    if args.lower:
        text = lower_train_step(config).as_text()
        print(f"sft train step lowered for TPU: {len(text) / 1e6:.1f} MB of StableHLO, "
              f"{text.count('sdy.sharding') + text.count('mhlo.sharding')} sharding annotations")
    return 0 if all(f["fits"] for f in result.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
