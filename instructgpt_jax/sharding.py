"""Device mesh, logical-axis rules, sharded initialisation and batch placement.

One mesh over every device with axes ('data', 'fsdp', 'tensor'). Parameters carry logical names
(`vocab`, `embed`, `heads`, `kv`, `mlp`) from model.py; the rules that map them to mesh axes live in the
config (`config.mesh.rules`), so FSDP, tensor parallelism or pure data parallelism is a config change.
Batches are split over data x fsdp. State is created already sharded: `jax.jit(init, out_shardings=...)`
from `eval_shape`, so no device ever holds a full replica of a large model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import jax
import numpy as np
from flax.linen import logical_to_mesh_axes
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# Logical name -> mesh axis (or None = replicated). FSDP shards the embedding dimension of every weight,
# tensor parallelism shards heads, MLP width and vocabulary (Megatron-style column/row splits).
DEFAULT_RULES: tuple[tuple[str, str | None], ...] = (
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv", None),
    ("mlp", "tensor"),
)


def make_mesh(shape: Sequence[int] = (-1, 1, 1), devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Mesh ('data', 'fsdp', 'tensor') over all devices; one entry of `shape` may be -1 (fill)."""
    devices = list(devices if devices is not None else jax.devices())
    shape = list(shape)
    if len(shape) != 3:
        raise ValueError(f"mesh shape {tuple(shape)} must have 3 entries for axes {MESH_AXES}")
    if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
        raise ValueError(f"mesh shape {tuple(shape)}: entries must be positive, with at most one -1")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if len(devices) % known:
            raise ValueError(f"mesh shape {tuple(shape)} cannot fill {len(devices)} devices ({len(devices)} % {known} != 0)")
        shape[shape.index(-1)] = len(devices) // known
    if math.prod(shape) != len(devices):
        raise ValueError(
            f"mesh shape {tuple(shape)} needs {math.prod(shape)} devices but {len(devices)} are available "
            f"(set config.mesh.shape, e.g. [-1, 1, 1])"
        )
    auto = (jax.sharding.AxisType.Auto,) * 3
    return jax.make_mesh(tuple(shape), MESH_AXES, axis_types=auto, devices=devices)


def _fit(spec: P, shape: Sequence[int], mesh: Mesh) -> P:
    """Replicate any dimension the mesh does not divide (e.g. GPT-2's 50257-token vocabulary on tensor=2)."""
    out = []
    for dim, axis in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        if axis is not None and dim % mesh.shape[axis]:
            logging.info("replicating a dimension of size %d: not divisible by mesh axis %s=%d", dim, axis, mesh.shape[axis])
            axis = None
        out.append(axis)
    return P(*out)


def param_shardings(abstract_state, mesh: Mesh, rules=DEFAULT_RULES):
    """NamedSharding per leaf of an abstract nnx.State whose Variables carry `out_sharding` names.

    Names map to mesh axes by flax's `logical_to_mesh_axes` (as MaxText's): `rules` in order of precedence,
    a name absent from them is replicated, and a mesh axis shards at most one dimension of an array (the
    earlier rule takes it). Then `_fit` replicates any dimension its mesh axis does not divide.

    Returns a pure-dict tree (the layout `nnx.to_pure_dict` gives), the form params take in train states.
    """
    from flax import nnx

    def one(var):
        names = var.get_metadata().get("out_sharding") or ()
        return NamedSharding(mesh, _fit(logical_to_mesh_axes(names, rules), var.shape, mesh))

    return nnx.to_pure_dict(jax.tree.map(one, abstract_state, is_leaf=lambda x: isinstance(x, nnx.Variable)))


def on_mesh(shardings, abstract, mesh: Mesh):
    """The same layout on another mesh with the same axis names (e.g. over fewer devices): each NamedSharding's
    spec on `mesh`, any dimension that mesh's axis does not divide replicated. `abstract`: the arrays' shapes,
    a tree like `shardings`."""
    return jax.tree.map(lambda s, a: NamedSharding(mesh, _fit(s.spec, a.shape, mesh)), shardings, abstract)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def like_params(tree_abstract, params_shardings, mesh: Mesh):
    """Shardings for a tree (e.g. optimizer state) whose params-shaped subtrees follow the params.

    optax states hold copies of the params tree (Adam's mu and nu); every leaf whose shape matches the
    parameter at the same key path is sharded like it, everything else (counts, scalars) is replicated.
    """
    flat_params = {
        _path_tail(path): s for path, s in jax.tree_util.tree_flatten_with_path(params_shardings)[0]
    }

    def one(path, leaf):
        s = flat_params.get(_path_tail(path))
        if s is not None and len(s.spec) <= len(leaf.shape):
            return s
        return replicated(mesh)

    return jax.tree_util.tree_map_with_path(one, tree_abstract)


def _path_tail(path) -> tuple:
    # Keys below the params root: strip optax's wrapper nodes (tuples, named tuples' attribute names).
    keys = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
    return tuple(keys)


def init_sharded(init_fn: Callable[[], object], shardings):
    """Run `init_fn` under jit with the given out_shardings: each device materialises only its shard."""
    return jax.jit(init_fn, out_shardings=shardings)()


def batch_shards(mesh: Mesh) -> int:
    """How many parts a batch's rows split into: data x fsdp (BATCH_AXES); 'tensor' holds whole rows."""
    return mesh.shape["data"] * mesh.shape["fsdp"]


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
    """Leading (batch) dimension over data x fsdp, the rest replicated."""
    return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    """Place a host batch (dict of numpy arrays, this process's rows) on the mesh, split over data x fsdp.

    Single process: `device_put`. Multi-host: every process passes its own slice and
    `make_array_from_process_local_data` assembles the global array.
    """
    n = batch_shards(mesh)
    out = {}
    for key, value in batch.items():
        value = np.asarray(value)
        global_rows = value.shape[0] * jax.process_count()
        if global_rows % n:
            raise ValueError(
                f"batch field {key!r} has {global_rows} rows, not divisible by data x fsdp = {n} "
                f"(mesh {dict(mesh.shape)}); choose a batch size that is a multiple of {n}"
            )
        out[key] = put_local(value, batch_sharding(mesh, value.ndim))
    return out


def put_local(value: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """Place this process's part of a global array (its rows along the sharded axis): `device_put` on one
    host, `make_array_from_process_local_data` across several."""
    if jax.process_count() == 1:
        return jax.device_put(value, sharding)
    return jax.make_array_from_process_local_data(sharding, value)


def check_divisible(batch_size: int, mesh: Mesh, what: str = "batch_size") -> None:
    n = batch_shards(mesh)
    if batch_size % n:
        raise ValueError(f"{what}={batch_size} is not divisible by data x fsdp = {n} (mesh {dict(mesh.shape)})")


def put_global(batch: dict, mesh: Mesh) -> dict:
    """Place a batch that every process holds in full (evaluation prompts, held-out windows) on the mesh,
    split over data x fsdp; each process fills its own devices' rows. The same code on one host or many."""
    out = {}
    for key, value in batch.items():
        value = np.asarray(value)
        out[key] = jax.make_array_from_callback(value.shape, batch_sharding(mesh, value.ndim), lambda i, v=value: v[i])
    return out


def to_host(tree):
    """NumPy copies of a tree of arrays; arrays spread over several processes are all-gathered first."""
    from jax.experimental import multihost_utils

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(jax.device_get(x))

    return jax.tree.map(one, tree)
