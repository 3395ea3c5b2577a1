"""Pretraining: the LM loss against NumPy, overfitting one batch, a short real run, and exact resume."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from instructgpt_jax import config_base, train
from instructgpt_jax.model import GPTConfig, make_model
from instructgpt_jax.pretrain import lm_loss, pretrain_loss
from instructgpt_jax import stages

CFG = GPTConfig(vocab_size=264, n_positions=64, n_layer=2, n_head=2, n_embd=32)


def test_lm_loss_matches_numpy_with_mask():
    model = make_model(CFG, seed=1)
    rng = np.random.RandomState(0)
    tokens = rng.randint(0, 264, size=(3, 12)).astype(np.int32)
    mask = rng.rand(3, 12) > 0.4
    loss, count = lm_loss(model, jnp.asarray(tokens), loss_mask=jnp.asarray(mask))
    logits = np.asarray(model(jnp.asarray(tokens)), np.float64)
    total, n = 0.0, 0
    for b in range(3):
        for t in range(1, 12):  # token t is predicted by the logits at t - 1
            if mask[b, t]:
                row = logits[b, t - 1]
                total += np.log(np.exp(row - row.max()).sum()) + row.max() - row[tokens[b, t]]
                n += 1
    assert int(count) == n
    np.testing.assert_allclose(float(loss), total / n, rtol=1e-5)


def _config(steps, workdir_unused=None):
    import ml_collections

    config = ml_collections.ConfigDict()
    config.model = config_base.model_config("nano")
    config.mesh = config_base.mesh_config((-1, 1, 1))
    config.optim = config_base.optim_config(3e-3, warmup_steps=2)
    config.train = config_base.train_config(steps, 8, 32, log_every=2, checkpoint_every=4, eval_every=100, tensorboard=False)
    return config


def _run(workdir, steps, total, batches):
    config = _config(total)
    setup = train.make_setup(train.model_config(config.model), config.mesh, train.make_optimizer(config.optim, total))
    return train.run(
        stage="pretrain", workdir=workdir, config=config, setup=setup, loss_fn=pretrain_loss,
        batches=batches, total_steps=steps, init_params=lambda: train.random_params(setup, 0),
    ), setup


@pytest.mark.slow  # the default suite stays under 12 minutes on 2 cores (README)
def test_overfits_one_batch(tmp_path):
    batch = np.random.RandomState(0).randint(0, 256, size=(8, 33)).astype(np.int32)
    state, setup = _run(str(tmp_path), 60, 60, lambda s: {"tokens": batch})
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    first, last = rows[0]["pretrain/loss"], rows[-1]["pretrain/loss"]
    assert first > 5.0 and last < 1.0, (first, last)


def test_resume_is_exact(tmp_path):
    data = np.random.RandomState(1).randint(0, 256, size=(20, 8, 33)).astype(np.int32)
    batches = lambda s: {"tokens": data[s]}  # noqa: E731
    full, _ = _run(str(tmp_path / "full"), 12, 12, batches)
    _run(str(tmp_path / "cut"), 8, 12, batches)  # a run stopped after its step-8 checkpoint ...
    resumed, _ = _run(str(tmp_path / "cut"), 12, 12, batches)  # ... and restarted
    for a, b in zip(jax.tree.leaves(jax.device_get(full["params"])), jax.tree.leaves(jax.device_get(resumed["params"]))):
        np.testing.assert_array_equal(a, b)
    steps = [json.loads(line)["step"] for line in open(tmp_path / "cut" / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 12


def test_nonfinite_loss_stops_with_step_and_checkpoint(tmp_path):
    data = np.random.RandomState(2).randint(0, 256, size=(20, 8, 33)).astype(np.int32)

    def poisoned_loss(model, batch, rng):
        loss, aux = pretrain_loss(model, batch, rng)
        return jnp.where(batch["tokens"][0, 0] == 999, jnp.nan, loss), aux

    def batches(s):
        b = data[s].copy()
        if s == 5:
            b[0, 0] = 999
        return {"tokens": b}

    config = _config(12)
    setup = train.make_setup(train.model_config(config.model), config.mesh, train.make_optimizer(config.optim, 12))
    with pytest.raises(train.NonFiniteError, match=r"non-finite at step 5 .*last good checkpoint: .*checkpoints/4"):
        train.run(stage="pretrain", workdir=str(tmp_path), config=config, setup=setup, loss_fn=poisoned_loss,
                  batches=batches, total_steps=12, init_params=lambda: train.random_params(setup, 0))
    assert sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()) == [4]


def load_config(path, arg=None):
    import importlib.util

    spec = importlib.util.spec_from_file_location("cfg", os.path.join(os.path.dirname(__file__), "..", path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


@pytest.mark.slow  # the default suite stays under 12 minutes on 2 cores (README)
def test_short_real_run_lowers_heldout_loss(tmp_path):
    """60 steps of the smoke config on Shakespeare: held-out loss falls well below uniform (ln 264 = 5.58)."""

    config = load_config("configs/pretrain.py", "smoke")
    config.train.tensorboard = False
    result = stages.pretrain.run(config, str(tmp_path))
    assert result["pretrain/heldout_loss"] < 3.5
    assert train.is_complete(str(tmp_path))
