"""Orbax checkpoints: atomic saves, keep-last-N, resume from the latest, restore onto any mesh.

A checkpoint is one step folder with three items: `params`, `opt_state` and `meta` (JSON: step, model
config, data position). Orbax writes into a temporary folder and renames it when complete, so a run killed
mid-save leaves the previous checkpoint intact; a step folder that is unreadable anyway (truncated, a disk
that filled up) is skipped with a warning and the one before it is used. Restoring takes abstract arrays
with the *target* shardings, so a checkpoint written on an (8,1,1) mesh restores onto (2,2,2).
The next stage's initialisation reads `params` alone (`restore_params`).
"""

from __future__ import annotations

import logging
import os

import jax
import orbax.checkpoint as ocp
from flax import nnx

from instructgpt_jax import sharding
from instructgpt_jax.model import GPTConfig, abstract_model

log = logging.getLogger(__name__)


def make_manager(directory: str, max_to_keep: int = 3, async_save: bool = False,
                 keep_period: int = 0) -> ocp.CheckpointManager:
    """The checkpoint manager of `directory`: the newest `max_to_keep` steps stay, and with `keep_period` > 0 also
    every step that is a multiple of it (a skill's emergence over training: experiments/skill_probe.py --steps)."""
    if keep_period < 0:
        raise ValueError(f"keep_period={keep_period}: expected 0 (off) or a positive number of steps")
    keep = {"max_to_keep": max_to_keep}
    if keep_period:
        policies = ocp.checkpoint_managers
        keep = {"max_to_keep": None, "preservation_policy": policies.AnyPreservationPolicy(
            [policies.LatestN(n=max_to_keep), policies.EveryNSteps(interval_steps=keep_period)])}
    options = ocp.CheckpointManagerOptions(
        **keep, create=True, enable_async_checkpointing=async_save, cleanup_tmp_directories=True
    )
    # Handlers are named up front so that a fresh manager (a new process, the next stage) can read item
    # metadata and restore single items without having saved them first.
    handlers = {
        "params": ocp.StandardCheckpointHandler(),
        "opt_state": ocp.StandardCheckpointHandler(),
        # PPO's value model (its own params and optimizer state beside the policy's `params`/`opt_state`).
        "value_params": ocp.StandardCheckpointHandler(),
        "value_opt_state": ocp.StandardCheckpointHandler(),
        # PPO with a moving average: `params` hold the average (what later stages load), these the trained weights.
        "online_params": ocp.StandardCheckpointHandler(),
        "scalars": ocp.StandardCheckpointHandler(),
        "meta": ocp.JsonCheckpointHandler(),
    }
    return ocp.CheckpointManager(os.path.abspath(directory), options=options, item_handlers=handlers)


def save(manager: ocp.CheckpointManager, step: int, state: dict, meta: dict, *, force: bool = False) -> None:
    """Save `state` = {'params', 'opt_state', ...} and JSON `meta` at `step`.

    Each tree-valued entry is its own item; bare arrays (counters, flags) go together into `scalars`,
    since Orbax's StandardSave takes trees only.
    """
    trees, scalars = _split(state)
    items = {k: ocp.args.StandardSave(v) for k, v in trees.items()}
    if scalars:
        items["scalars"] = ocp.args.StandardSave(scalars)
    items["meta"] = ocp.args.JsonSave({**meta, "step": int(step)})
    manager.save(int(step), args=ocp.args.Composite(**items), force=force)


def _split(state: dict) -> tuple[dict, dict]:
    trees = {k: v for k, v in state.items() if k != "step" and jax.tree_util.treedef_is_leaf(jax.tree.structure(v)) is False}
    scalars = {k: v for k, v in state.items() if k != "step" and k not in trees}
    return trees, scalars


def _abstract(tree, shardings):
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def restore_latest(manager: ocp.CheckpointManager, abstract_state: dict, shardings: dict):
    """(state, meta) of the newest readable checkpoint, or (None, None) if there is none.

    `abstract_state` has the arrays' shapes/dtypes (from eval_shape); `shardings` the target shardings.
    A step folder that cannot be read (truncated arrays, a missing item) is moved to
    `<checkpoints>_unreadable/` with a warning, out of the way of the step that will be written again, and
    the previous one is tried. A readable checkpoint of another model size is an error, never moved: the
    run's config is what is wrong, and the checkpoint is kept as it is.
    """
    for step in sorted(manager.all_steps(), reverse=True):
        try:
            stored = manager.item_metadata(step)
        except Exception:  # noqa: BLE001 - unreadable metadata is an unreadable checkpoint, handled below
            stored = None
        for item in ("params", "value_params"):  # model weights; optimizer state follows their shapes
            tree = abstract_state.get(item)
            if tree is not None and stored is not None and stored.get(item) is not None:
                _check_shapes(stored[item], tree, str(manager.directory), step, item)
        try:
            return restore_step(manager, step, abstract_state, shardings)
        except Exception as e:  # noqa: BLE001 - any unreadable checkpoint falls back to the previous one
            log.warning("checkpoint step %d in %s is unreadable (%s: %s); moved to %s, trying the previous one",
                        step, manager.directory, type(e).__name__, str(e).splitlines()[0][:200],
                        _move_aside(manager, step))
    return None, None


def _move_aside(manager: ocp.CheckpointManager, step: int) -> str:
    """Move an unreadable step folder to <checkpoints>_unreadable/<step>.unreadable-<time> (kept for inspection)."""
    import time

    directory = os.fspath(manager.directory)
    aside = os.path.join(directory.rstrip(os.sep) + "_unreadable", f"{step}.unreadable-{int(time.time())}")
    if jax.process_index() == 0:
        os.makedirs(os.path.dirname(aside), exist_ok=True)
        os.rename(os.path.join(directory, str(step)), aside)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"checkpoint:unreadable:{step}")
    manager.reload()
    return aside


def restore_step(manager, step: int, abstract_state: dict, shardings: dict):
    trees, scalars = _split(abstract_state)
    items = {k: ocp.args.StandardRestore(_abstract(v, shardings[k])) for k, v in trees.items()}
    if scalars:
        items["scalars"] = ocp.args.StandardRestore(_abstract(scalars, {k: shardings[k] for k in scalars}))
    items["meta"] = ocp.args.JsonRestore()
    restored = manager.restore(step, args=ocp.args.Composite(**items))
    state = {k: restored[k] for k in trees}
    if scalars:
        state.update(restored["scalars"])
    meta = restored["meta"]
    if "step" in abstract_state:
        state["step"] = jax.device_put(jax.numpy.asarray(meta["step"], jax.numpy.int32), shardings["step"])
    return state, meta


def latest_step(directory: str) -> int | None:
    if _absent(directory):
        return None
    return make_manager(directory).latest_step()


def all_steps(directory: str) -> list[int]:
    """The steps of a checkpoint folder, oldest first; [] without one."""
    return [] if _absent(directory) else sorted(make_manager(directory).all_steps())


def _absent(directory: str) -> bool:
    """A local folder that does not exist. Readers check first: a manager would create it (create=True)."""
    return "://" not in directory and not os.path.isdir(directory)


def restore_params(directory: str, abstract_params, shardings, step: int | None = None):
    """Params alone from a stage's checkpoint folder (newest readable step unless `step` is given).

    Raises a clear error when the folder holds no checkpoint or the shapes belong to another model size.
    """
    if _absent(directory):
        raise FileNotFoundError(f"no checkpoint in {directory} (no such folder): run the previous stage first")
    manager = make_manager(directory)
    steps = [step] if step is not None else sorted(manager.all_steps(), reverse=True)
    if not steps:
        raise FileNotFoundError(f"no checkpoint in {directory}: run the previous stage first")
    errors = []
    for s in steps:
        try:
            stored = manager.item_metadata(s)["params"]
            _check_shapes(stored, abstract_params, directory, s)
            args = ocp.args.Composite(params=ocp.args.StandardRestore(_abstract(abstract_params, shardings)))
            return manager.restore(s, args=args)["params"], s
        except ValueError:
            raise
        except Exception as e:  # noqa: BLE001
            errors.append(f"step {s}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            log.warning("checkpoint %s step %d unreadable; trying the previous one (%s)", directory, s, errors[-1])
    raise FileNotFoundError(f"no readable checkpoint in {directory}: " + "; ".join(errors))


def _flat(tree):
    leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))[0]
    return [("/".join(str(getattr(k, "key", k)) for k in path), leaf) for path, leaf in leaves]


def _check_shapes(stored, abstract, directory, step, item="params"):
    """Name the first array of `item` whose stored shape differs from the model's (another model size)."""
    # Orbax stores dict keys as strings (block 0 is "0"), so compare paths as strings.
    flat_stored = dict(_flat(stored))
    what = "parameter" if item == "params" else f"{item} entry"
    for key, leaf in _flat(abstract):
        got = flat_stored.get(key)
        if got is None:
            raise ValueError(f"checkpoint {directory} step {step} has no {what} {key}: another model architecture?")
        if tuple(got.shape) != tuple(leaf.shape):
            raise ValueError(
                f"checkpoint {directory} step {step}: {what} {key} has shape {tuple(got.shape)}, "
                f"the model expects {tuple(leaf.shape)} (checkpoint from another model size?)"
            )


def read_meta(directory: str, step: int | None = None) -> tuple[int, dict]:
    """(step, meta) of a checkpoint folder's newest (or given) step."""
    if _absent(directory):
        raise FileNotFoundError(f"no checkpoint in {directory} (no such folder): run that stage first")
    manager = make_manager(directory)
    if step is None:
        step = manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {directory}: run that stage first")
    elif step not in manager.all_steps():
        raise FileNotFoundError(
            f"{directory}: no checkpoint at step {step}; it holds steps {sorted(manager.all_steps())}")
    return step, manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]


def newest_meta(directory: str) -> dict | None:
    """The meta of a checkpoint folder's newest step; None with no checkpoint, or when that meta cannot be read
    (a damaged step folder: restore_latest moves it aside with a warning and resumes from the one before)."""
    step = latest_step(directory)
    if step is None:
        return None
    try:
        return read_meta(directory, step)[1]
    except Exception:  # noqa: BLE001 - an unreadable meta is an unreadable checkpoint, as in restore_latest
        return None


def is_final(meta: dict) -> bool:
    """A checkpoint's meta is its run's last step (`step` >= `total_steps`); a meta without them never is."""
    return "step" in meta and "total_steps" in meta and int(meta["step"]) >= int(meta["total_steps"])


def load_model(stage_dir: str, item: str = "params", shardings=None, step: int | None = None):
    """(GPTConfig, graphdef, params, meta) of a stage folder's newest checkpoint (or `step`'s), for sampling
    and evaluation.

    The model's architecture comes from the checkpoint's meta, so no config is needed. Params land on
    the first device unless `shardings` (a function GPTConfig -> tree of shardings) says otherwise.
    """
    ckpt_dir = os.path.join(stage_dir, "checkpoints")
    step, meta = read_meta(ckpt_dir, step)
    if "model" not in meta:
        raise ValueError(f"{ckpt_dir} step {step}: meta has no 'model'; not a model checkpoint")
    cfg = GPTConfig(**meta["model"])
    graphdef, abstract = abstract_model(cfg)
    abstract = nnx.to_pure_dict(abstract)
    if shardings is None:
        one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        target = jax.tree.map(lambda _: one, abstract)
    else:
        target = shardings(cfg)
    if item == "params":
        params, _ = restore_params(ckpt_dir, abstract, target, step)
    else:
        args = ocp.args.Composite(**{item: ocp.args.StandardRestore(_abstract(abstract, target))})
        params = make_manager(ckpt_dir).restore(step, args=args)[item]
    return cfg, graphdef, params, {**meta, "step": step}


def mesh_and_shardings(mesh_cfg):
    """(mesh, fn(model config) -> param shardings) for loading checkpoints straight into their shards."""
    mesh = sharding.make_mesh(mesh_cfg.shape)
    rules = tuple(tuple(r) for r in mesh_cfg.rules)
    return mesh, lambda cfg: sharding.param_shardings(abstract_model(cfg)[1], mesh, rules)
