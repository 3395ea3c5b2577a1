"""Checkpoint round trip across meshes, params-only restore, and another model size's checkpoint."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from instructgpt_jax import checkpoint, config_base, train
from instructgpt_jax.model import GPTConfig

CFG = GPTConfig(vocab_size=264, n_positions=64, n_layer=2, n_head=4, n_embd=64)


def _setup(shape, cfg=CFG):
    tx = train.make_optimizer(config_base.optim_config(1e-3), 10)
    return train.make_setup(cfg, config_base.mesh_config(shape), tx), tx


def _state(setup, tx, seed=0):
    with jax.set_mesh(setup.mesh):
        params = train.random_params(setup, seed)
        return {
            "step": jax.numpy.int32(7),
            "params": params,
            "opt_state": jax.jit(tx.init, out_shardings=setup.shardings["opt_state"])(params),
            "bad_step": jax.numpy.int32(-1),
        }


def test_save_on_one_mesh_restore_on_another(tmp_path):
    setup_a, tx = _setup((8, 1, 1))
    state = _state(setup_a, tx)
    manager = checkpoint.make_manager(str(tmp_path / "ckpt"))
    checkpoint.save(manager, 7, state, {"note": "x"})
    manager.wait_until_finished()

    setup_b, _ = _setup((2, 2, 2))
    manager_b = checkpoint.make_manager(str(tmp_path / "ckpt"))
    restored, meta = checkpoint.restore_latest(manager_b, setup_b.abstract, setup_b.shardings)
    assert meta["step"] == 7 and meta["note"] == "x"
    assert int(restored["step"]) == 7 and int(restored["bad_step"]) == -1
    for a, b in zip(jax.tree.leaves(restored["params"]), jax.tree.leaves(state["params"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    emb = restored["params"]["wte"]["embedding"]
    assert emb.sharding.mesh.shape == setup_b.mesh.shape
    assert emb.sharding.spec == P("tensor", "fsdp")
    mu = restored["opt_state"][1][0].mu["h"][1]["mlp"]["c_fc_kernel"]
    assert mu.sharding.spec == P("fsdp", "tensor")


def test_restore_params_only_and_size_mismatch(tmp_path):
    setup, tx = _setup((8, 1, 1))
    state = _state(setup, tx, seed=3)
    manager = checkpoint.make_manager(str(tmp_path / "ckpt"))
    checkpoint.save(manager, 7, state, {})
    manager.wait_until_finished()
    params, step = checkpoint.restore_params(str(tmp_path / "ckpt"), setup.abstract["params"], setup.shardings["params"])
    assert step == 7
    np.testing.assert_array_equal(np.asarray(params["wpe"]), np.asarray(state["params"]["wpe"]))

    bigger, _ = _setup((8, 1, 1), GPTConfig(vocab_size=264, n_positions=64, n_layer=2, n_head=4, n_embd=128))
    with pytest.raises(ValueError, match=r"parameter h/0/attn/c_attn_bias has shape \(3, 4, 16\), the model expects \(3, 4, 32\)"):
        checkpoint.restore_params(str(tmp_path / "ckpt"), bigger.abstract["params"], bigger.shardings["params"])
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoint.restore_params(str(tmp_path / "empty"), setup.abstract["params"], setup.shardings["params"])


def test_unreadable_newest_checkpoint_falls_back(tmp_path, caplog):
    setup, tx = _setup((8, 1, 1))
    manager = checkpoint.make_manager(str(tmp_path / "ckpt"))
    first = _state(setup, tx, seed=1)
    checkpoint.save(manager, 1, first, {})
    checkpoint.save(manager, 2, _state(setup, tx, seed=2), {})
    manager.wait_until_finished()
    # Truncate every array file of step 2: the folder exists but cannot be read.
    for f in (tmp_path / "ckpt" / "2" / "params").rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and "metadata" not in f.name:
            f.write_bytes(b"")
    restored, meta = checkpoint.restore_latest(checkpoint.make_manager(str(tmp_path / "ckpt")), setup.abstract, setup.shardings)
    assert meta["step"] == 1
    np.testing.assert_array_equal(np.asarray(restored["params"]["wpe"]), np.asarray(first["params"]["wpe"]))
    assert "unreadable" in caplog.text


def test_keep_period_keeps_every_multiple_beside_the_newest(tmp_path):
    """keep_period keeps each multiple of it as well as the newest max_to_keep steps; 0 keeps the newest only."""
    for keep_period, kept in ((4, [4, 8, 10, 11]), (0, [10, 11])):
        folder = str(tmp_path / f"ckpt{keep_period}")
        manager = checkpoint.make_manager(folder, max_to_keep=2, keep_period=keep_period)
        for step in range(1, 12):
            checkpoint.save(manager, step, {"params": {"w": np.full(3, step, np.float32)}}, {})
        manager.wait_until_finished()
        assert checkpoint.all_steps(folder) == kept
        with pytest.raises(FileNotFoundError, match=rf"no checkpoint at step 5; it holds steps \{kept}"):
            checkpoint.read_meta(folder, 5)
    assert checkpoint.all_steps(str(tmp_path / "none")) == []
    with pytest.raises(ValueError, match="keep_period=-1: expected 0"):
        checkpoint.make_manager(str(tmp_path / "bad"), keep_period=-1)
