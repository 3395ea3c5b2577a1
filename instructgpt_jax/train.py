"""The training loop shared by the supervised stages (pretraining, SFT, reward model).

A stage supplies a loss `loss_fn(model, batch, rng) -> (loss, metrics)` and a deterministic batch source
`batches(step) -> dict of numpy arrays`; this file turns them into a run: optimizer (AdamW, warmup +
cosine, grad clipping), state built already sharded on the mesh, a pure `train_step` jitted once with
explicit shardings and donation, metrics, checkpoints every N steps, resume from the latest checkpoint,
and a stop with the step and the last good checkpoint when the loss or gradients stop being finite.

Resume is exact: the batch at step s and the dropout key (`fold_in(rng, step)`) depend only on s.
`Bookkeeper` (checkpoints, metrics, config.json, cadence, the non-finite stop) is shared with PPO's loop.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from instructgpt_jax import checkpoint, folders, metrics, sharding
from instructgpt_jax.model import GPTConfig, abstract_model, make_model
from instructgpt_jax.presets import get_preset

log = logging.getLogger(__name__)


class NonFiniteError(FloatingPointError):
    """Loss or gradients became NaN/inf; the message names the step and the last good checkpoint."""


def model_config(model: ml_collections.ConfigDict, **overrides) -> GPTConfig:
    """GPTConfig from `config.model` = {preset, and any GPTConfig field to override}."""
    fields = {k: v for k, v in model.to_dict().items() if k != "preset"}
    return get_preset(model.preset, **{**fields, **overrides})


def make_optimizer(optim: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
    """AdamW with linear warmup then cosine decay to `min_lr_ratio * lr`, after global-norm clipping.

    Weight decay only on matrices (rank >= 2), not on biases, LayerNorm scales or the scalar head bias,
    as in GPT-2/3 training.
    """
    warmup = min(optim.warmup_steps, max(total_steps - 1, 0))
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0 if warmup else optim.lr,
        peak_value=optim.lr,
        warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1),
        end_value=optim.lr * optim.min_lr_ratio,
    )
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)  # noqa: E731
    return optax.chain(
        optax.clip_by_global_norm(optim.grad_clip) if optim.grad_clip else optax.identity(),
        optax.adamw(schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps, weight_decay=optim.weight_decay, mask=decay_mask),
    )


@dataclasses.dataclass
class Setup:
    """Everything static about a run: mesh, model graph, optimizer and the state's shardings."""

    mesh: jax.sharding.Mesh
    model_cfg: GPTConfig
    graphdef: object
    tx: optax.GradientTransformation
    abstract: dict  # ShapeDtypeStructs of the train state
    shardings: dict


def make_setup(model_cfg: GPTConfig, mesh_cfg, tx: optax.GradientTransformation, devices=None) -> Setup:
    """Mesh from `config.mesh` over `devices` (default: all), abstract state and its shardings."""
    mesh = sharding.make_mesh(mesh_cfg.shape, devices)
    rules = tuple(tuple(r) for r in mesh_cfg.rules)
    graphdef, abs_state = abstract_model(model_cfg)
    p_shard = sharding.param_shardings(abs_state, mesh, rules)
    abs_params = nnx.to_pure_dict(abs_state)
    abs_opt = jax.eval_shape(tx.init, abs_params)
    repl = sharding.replicated(mesh)
    shardings = {
        "step": repl,
        "params": p_shard,
        "opt_state": sharding.like_params(abs_opt, p_shard, mesh),
        "bad_step": repl,
    }
    scalar = jax.ShapeDtypeStruct((), jnp.int32)
    abstract = {"step": scalar, "params": abs_params, "opt_state": abs_opt, "bad_step": scalar}
    return Setup(mesh, model_cfg, graphdef, tx, abstract, shardings)


def random_params(setup: Setup, seed: int):
    """Freshly initialised params, created directly in their shards."""
    init = lambda: nnx.to_pure_dict(nnx.split(make_model(setup.model_cfg, seed))[1])  # noqa: E731
    return sharding.init_sharded(init, setup.shardings["params"])


def params_from(setup: Setup, stage_dir: str):
    """Params of the newest checkpoint of a previous stage, restored onto this run's mesh.

    A previous stage trained without the scalar head (SFT -> RM) gives the trunk; the head is freshly
    initialised, as the paper's reward model replaces the unembedding with a new scalar output.
    """
    ckpt_dir = os.path.join(stage_dir, "checkpoints")
    fresh = random_params(setup, 0)
    stored = _stored_param_keys(ckpt_dir)
    keep = {k: v for k, v in setup.abstract["params"].items() if k in stored}
    shard = {k: v for k, v in setup.shardings["params"].items() if k in stored}
    restored, step = checkpoint.restore_params(ckpt_dir, keep, shard)
    log.info("initialised from %s step %d", ckpt_dir, step)
    return {**fresh, **restored}


def _stored_param_keys(ckpt_dir: str) -> set:
    step = checkpoint.latest_step(ckpt_dir)
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {ckpt_dir}: run the previous stage first")
    return set(checkpoint.make_manager(ckpt_dir).item_metadata(step)["params"].keys())


def keep_if_finite(new, old, *values):
    """(`new` where every scalar of `values` (loss, gradient norms) is finite, else `old`; ok).

    The one skip of a non-finite step, shared by `train_step` and ppo.update. Not optax.apply_if_finite: that
    looks at one optimizer's gradients only (not the loss, nor PPO's policy and value updates together), gives
    up and applies the bad update after `max_consecutive_errors`, records no step index, and wraps opt_state in
    its own state (checkpoints written without it would no longer restore).
    """
    ok = functools.reduce(jnp.logical_and, [jnp.isfinite(v) for v in values])
    return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old), ok


def first_bad_step(bad_step, step, ok):
    """`step` when it is the first non-finite one (`bad_step` still -1), else `bad_step` unchanged."""
    return jnp.where((bad_step < 0) & ~ok, step, bad_step)


def train_step(graphdef, tx, loss_fn, state, batch, rng):
    """One optimizer step. Pure: the only inputs are the state, the batch and the run's base key.

    A non-finite loss or gradient leaves params and optimizer state untouched and records the step in
    `bad_step`, so nothing bad is ever checkpointed and the host can name the exact step.
    """
    rng = jax.random.fold_in(rng, state["step"])

    def total(params):
        return loss_fn(nnx.merge(graphdef, params), batch, rng)

    (loss, aux), grads = jax.value_and_grad(total, has_aux=True)(state["params"])
    grad_norm = optax.tree.norm(grads)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    (params, opt_state), ok = keep_if_finite((params, opt_state), (state["params"], state["opt_state"]), loss, grad_norm)
    new_state = {
        "step": state["step"] + 1,
        "params": params,
        "opt_state": opt_state,
        "bad_step": first_bad_step(state["bad_step"], state["step"], ok),
    }
    return new_state, {**aux, "loss": loss, "grad_norm": grad_norm}


def jit_train_step(setup: Setup, loss_fn, batch_example: dict):
    batch_shardings = {k: sharding.batch_sharding(setup.mesh, np.ndim(v)) for k, v in batch_example.items()}
    repl = sharding.replicated(setup.mesh)
    step = functools.partial(train_step, setup.graphdef, setup.tx, loss_fn)
    return jax.jit(
        step,
        in_shardings=(setup.shardings, batch_shardings, repl),
        out_shardings=(setup.shardings, repl),
        donate_argnums=0,
    )


class Bookkeeper:
    """What every training loop shares (this file's `run` and stages.ppo.run): the checkpoint manager and
    metric writer of `workdir`, config.json, the log / checkpoint / eval cadence of `config.train`, and the
    stop with the bad step and the last good checkpoint. `unit` names a step in messages ("step", "iteration")."""

    def __init__(self, stage: str, workdir: str, config: ml_collections.ConfigDict, unit: str = "step"):
        t = config.train
        os.makedirs(workdir, exist_ok=True)
        self.stage, self.workdir, self.config, self.unit, self.train = stage, workdir, config, unit, t
        # keep_period: a stage config saved before it existed (configs/run_stage.py) keeps the newest only.
        self.manager = checkpoint.make_manager(os.path.join(workdir, "checkpoints"), t.keep_checkpoints,
                                               t.async_checkpoint, t.get("keep_period", 0))
        self.writer = metrics.MetricWriter(workdir, tensorboard=t.tensorboard)
        self.last_good = None

    def restore(self, abstract, shardings):
        """(state, meta) of the newest readable checkpoint, or (None, None); then writes config.json (only
        once the checkpoints are known to fit this config, so a rejected rerun leaves the old one)."""
        state, meta = checkpoint.restore_latest(self.manager, abstract, shardings)
        if jax.process_index() == 0:
            with open(os.path.join(self.workdir, "config.json"), "w") as f:
                f.write(self.config.to_json_best_effort(indent=2))
        self.last_good = self.manager.latest_step()
        return state, meta

    def due(self, done: int, total: int) -> tuple[bool, bool, bool]:
        """(log, checkpoint, eval) after `done` steps of `total`: every N of each, and all at the end."""
        t, last = self.train, done == total
        return (done % t.log_every == 0 or last, done % t.checkpoint_every == 0 or last,
                done % t.eval_every == 0 or last)

    def check_finite(self, state, detail: str = "") -> None:
        """Raise NonFiniteError if the step recorded a non-finite loss or gradient in state["bad_step"]."""
        bad = int(jax.device_get(state["bad_step"]))
        if bad >= 0:
            self.manager.wait_until_finished()
            last = os.path.join(self.workdir, "checkpoints", str(self.last_good)) if self.last_good is not None else "none"
            raise NonFiniteError(f"{self.stage}: loss or gradient became non-finite at {self.unit} {bad}{detail}; "
                                 f"last good checkpoint: {last}")

    def save(self, done: int, total: int, state, meta: dict) -> None:
        checkpoint.save(self.manager, done, state, meta, force=done == total)
        self.last_good = done

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.writer.close()


def run(
    *,
    stage: str,
    workdir: str,
    config: ml_collections.ConfigDict,
    setup: Setup,
    loss_fn: Callable,
    batches: Callable[[int], dict],
    total_steps: int,
    init_params: Callable[[], object],
    evaluate: Callable[[dict, int], dict] | None = None,
    meta: dict | None = None,
) -> dict:
    """Train `stage` into `workdir` (checkpoints/, metrics.jsonl, config.json) and return the final state.

    Resumes from the newest readable checkpoint; a finished run (checkpoint at `total_steps`) returns at once.
    """
    t = config.train
    book = Bookkeeper(stage, workdir, config)
    writer = book.writer
    meta = {"stage": stage, "model": dataclasses.asdict(setup.model_cfg), "total_steps": total_steps,
            "inputs": folders.input_digests(config), **(meta or {})}

    with jax.set_mesh(setup.mesh):
        state, restored_meta = book.restore(setup.abstract, setup.shardings)
        if state is None:
            params = init_params()
            opt_state = jax.jit(setup.tx.init, out_shardings=setup.shardings["opt_state"])(params)
            repl = setup.shardings["step"]
            state = {
                "step": jax.device_put(jnp.int32(0), repl),
                "params": params,
                "opt_state": opt_state,
                "bad_step": jax.device_put(jnp.int32(-1), repl),
            }
            start = 0
        else:
            start = int(restored_meta["step"])
            log.info("%s: resuming from step %d", stage, start)
        writer.truncate_after(start)
        if start >= total_steps:
            book.close()
            return state

        rng = jax.random.key(t.seed)
        step_fn = jit_train_step(setup, loss_fn, batches(start))
        with metrics.progress(total_steps, start, stage) as bar:  # closed on Ctrl-C too: the next line starts clean
            t0, tokens = time.perf_counter(), 0
            for step in range(start, total_steps):
                host_batch = batches(step)
                # host_batch holds this process's rows; tokens/s counts the global batch.
                tokens += int(np.asarray(host_batch.get("attention_mask", host_batch["tokens"])).size) * jax.process_count()
                state, step_metrics = step_fn(state, sharding.shard_batch(host_batch, setup.mesh), rng)
                done = step + 1
                if step == start:  # keep compilation out of the first tokens/s window
                    jax.block_until_ready(state)
                    t0, tokens = time.perf_counter(), 0
                is_log, is_ckpt, is_eval = book.due(done, total_steps)
                is_eval = is_eval and evaluate is not None
                if is_log or is_ckpt or is_eval:
                    book.check_finite(state, f" (loss={float(jax.device_get(step_metrics['loss']))}, "
                                             f"grad_norm={float(jax.device_get(step_metrics['grad_norm']))})")
                if is_log:
                    elapsed = time.perf_counter() - t0
                    row = {f"{stage}/{k}": v for k, v in step_metrics.items()}
                    row["time/tokens_per_s"] = tokens / max(elapsed, 1e-9)
                    values = writer.write(done, row)
                    bar.set_postfix(loss=f"{values[f'{stage}/loss']:.4f}")
                    t0, tokens = time.perf_counter(), 0
                if is_eval:
                    writer.write(done, evaluate(state, done))
                if is_ckpt:
                    book.save(done, total_steps, state, meta)
                bar.update(1)
    book.close()
    return state


def is_complete(workdir: str) -> bool:
    """True when a stage's newest checkpoint is its final step (False when that checkpoint cannot be read)."""
    meta = checkpoint.newest_meta(os.path.join(workdir, "checkpoints"))
    return meta is not None and checkpoint.is_final(meta)
