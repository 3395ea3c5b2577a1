"""One train step on different meshes gives the same loss and params; parameters are really sharded."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from instructgpt_jax import config_base, sharding, train
from instructgpt_jax.model import GPTConfig
from instructgpt_jax.pretrain import pretrain_loss

CFG = GPTConfig(vocab_size=264, n_positions=64, n_layer=2, n_head=4, n_embd=64)


def _one_step(shape):
    n = int(np.prod(shape))
    mesh_cfg = config_base.mesh_config(shape)
    optim = config_base.optim_config(1e-2)
    # Adam's first step is lr * g / (|g| + eps), a sign function for |g| << eps: a parameter whose gradient
    # is float-summation noise (4e-8 here, against a typical 1.5e-3; the order of summation differs between
    # meshes) would move by a mesh-dependent lr * 4%. With eps = 1e-3, below the typical gradient, the step
    # stays close to linear in g, so equal gradients give equal params to 1e-5 and unequal ones do not.
    optim.eps = 1e-3
    tx = train.make_optimizer(optim, 10)
    setup = train.make_setup(CFG, mesh_cfg, tx, devices=jax.devices()[:n])
    tokens = np.random.RandomState(0).randint(0, 264, size=(8, 33)).astype(np.int32)
    with jax.set_mesh(setup.mesh):
        params = train.random_params(setup, seed=0)
        state = {
            "step": jax.numpy.int32(0),
            "params": params,
            "opt_state": jax.jit(tx.init, out_shardings=setup.shardings["opt_state"])(params),
            "bad_step": jax.numpy.int32(-1),
        }
        state = jax.device_put(state, setup.shardings)
        step = train.jit_train_step(setup, pretrain_loss, {"tokens": tokens})
        new_state, metrics = step(state, sharding.shard_batch({"tokens": tokens}, setup.mesh), jax.random.key(0))
    return new_state, float(metrics["loss"])


def test_same_step_on_every_mesh():
    ref_state, ref_loss = _one_step((1, 1, 1))
    ref = jax.device_get(ref_state["params"])
    for shape in [(8, 1, 1), (2, 2, 2), (1, 4, 2)]:
        state, loss = _one_step(shape)
        assert abs(loss - ref_loss) < 1e-5, shape
        got = jax.device_get(state["params"])
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_params_are_sharded_by_logical_rules():
    state, _ = _one_step((1, 4, 2))
    params = state["params"]
    # wte (vocab, embed) -> ('tensor', 'fsdp'); c_fc (embed, mlp) -> ('fsdp', 'tensor')
    assert params["wte"]["embedding"].sharding.spec == P("tensor", "fsdp")
    assert params["h"][0]["mlp"]["c_fc_kernel"].sharding.spec == P("fsdp", "tensor")
    shard_shape = params["h"][0]["mlp"]["c_fc_kernel"].addressable_shards[0].data.shape
    assert shard_shape == (64 // 4, 256 // 2)
    # Adam moments follow their parameter.
    mu = state["opt_state"][1][0].mu
    assert mu["h"][0]["mlp"]["c_fc_kernel"].sharding.spec == P("fsdp", "tensor")


def test_rules_take_a_mesh_axis_in_order_of_precedence():
    """Two names of one array on the same mesh axis: the earlier rule shards its dimension, the other is replicated."""
    from instructgpt_jax.model import abstract_model

    rules = (("embed", "tensor"), ("heads", "tensor"), ("vocab", "tensor"), ("mlp", "tensor"), ("kv", None))
    mesh = sharding.make_mesh((2, 1, 4))
    params = sharding.param_shardings(abstract_model(CFG)[1], mesh, rules)
    attn = params["h"][0]["attn"]
    assert attn["c_attn_kernel"].spec == P("tensor", None, None, None)   # (embed, None, heads, kv)
    assert attn["c_proj_kernel"].spec == P(None, None, "tensor")         # (heads, kv, embed)
    assert attn["c_attn_bias"].spec == P(None, "tensor", None)           # (None, heads, kv): no embed here
    assert params["wte"]["embedding"].spec == P(None, "tensor")          # (vocab, embed)


def test_mesh_errors_name_the_problem():
    with pytest.raises(ValueError, match="needs 16 devices but 8"):
        sharding.make_mesh((4, 4, 1))
    with pytest.raises(ValueError, match="at most one -1"):
        sharding.make_mesh((-1, -1, 1))
    mesh = sharding.make_mesh((-1, 1, 1))
    assert dict(mesh.shape) == {"data": 8, "fsdp": 1, "tensor": 1}
    with pytest.raises(ValueError, match="not divisible by data x fsdp = 8"):
        sharding.shard_batch({"tokens": np.zeros((12, 4), np.int32)}, mesh)


def test_indivisible_dimension_is_replicated():
    mesh = sharding.make_mesh((1, 1, 8))
    spec = sharding._fit(P("tensor", None), (50257, 768), mesh)
    assert spec == P(None, None)
