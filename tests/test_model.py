"""The GPT module: causality, left padding, remat, bf16 compute, dropout and the scalar head."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from instructgpt_jax.model import GPTConfig, abstract_model, dropout, positions_from_mask

CFG = GPTConfig(vocab_size=53, n_positions=32, n_layer=2, n_head=4, n_embd=32, scalar_head=True)


def random_params(cfg, seed=0, std=0.2):
    """Params drawn on the host (no per-shape XLA compiles): N(0, std), LayerNorm scales around 1."""
    rng = np.random.default_rng(seed)
    abstract = nnx.to_pure_dict(abstract_model(cfg)[1])
    return jax.tree_util.tree_map_with_path(
        lambda path, x: (float(path[-1].key == "scale") + std * rng.standard_normal(x.shape)).astype(x.dtype),
        abstract)


@functools.partial(jax.jit, static_argnums=0)
def forward(cfg, params, tokens, mask, dropout_rng=None):
    model = nnx.merge(abstract_model(cfg)[0], params)
    return model(tokens, positions_from_mask(mask), mask, dropout_rng=dropout_rng)


def tokens_of(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, CFG.vocab_size, shape), jnp.int32)


def test_causal():
    params, tokens = random_params(CFG), tokens_of((2, 12))
    mask = jnp.ones((2, 12), bool)
    changed = tokens.at[:, 7].set((tokens[:, 7] + 1) % CFG.vocab_size)
    a, b = forward(CFG, params, tokens, mask), forward(CFG, params, changed, mask)
    np.testing.assert_allclose(a[:, :7], b[:, :7], rtol=0, atol=1e-6)
    assert np.abs(a[:, 7:] - b[:, 7:]).max() > 1e-2  # the change is visible from its own slot on


def test_left_padding_matches_unpadded_row():
    params, row = random_params(CFG), tokens_of((1, 9), seed=1)
    unpadded = forward(CFG, params, row, jnp.ones((1, 9), bool))[0]
    # Left padding: position ids restart at the first real token and padding keys are masked, so the real
    # slots of the padded row see exactly what the unpadded row sees. Pads carry arbitrary ids.
    padded = jnp.concatenate([tokens_of((1, 5), seed=2), row], axis=1)
    mask = jnp.arange(14)[None, :] >= 5
    np.testing.assert_allclose(forward(CFG, params, padded, mask)[0, 5:], unpadded, rtol=0, atol=1e-5)


def lm_loss(cfg, params, tokens):
    """Mean next-token NLL: logits at slot t predict the token at slot t + 1 (hence the shifts)."""
    logits = forward(cfg, params, tokens, jnp.ones(tokens.shape, bool)).astype(jnp.float32)
    logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
    return -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1).mean()


def test_remat_same_loss_and_grads():
    params, tokens = random_params(CFG), tokens_of((2, 16))
    remat = dataclasses.replace(CFG, remat=True)
    loss, grads = jax.value_and_grad(functools.partial(lm_loss, CFG))(params, tokens)
    loss_r, grads_r = jax.value_and_grad(functools.partial(lm_loss, remat))(params, tokens)
    np.testing.assert_allclose(loss_r, loss, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), grads_r, grads)


def test_bf16_compute_with_fp32_params():
    params, tokens = random_params(CFG), tokens_of((2, 16))
    mask = jnp.ones((2, 16), bool)
    bf16 = dataclasses.replace(CFG, dtype="bfloat16")
    _, state = abstract_model(bf16)
    assert {x.dtype for x in jax.tree.leaves(state)} == {jnp.dtype("float32")}  # master weights stay fp32
    ref = forward(CFG, params, tokens, mask)
    out = forward(bf16, params, tokens, mask)
    assert out.dtype == jnp.bfloat16
    # bf16 keeps 8 mantissa bits (relative rounding 2^-9 per op); after two blocks the logits stay within a
    # few percent of their spread.
    err = np.abs(np.asarray(out, np.float32) - np.asarray(ref))
    assert err.max() < 0.05 * np.asarray(ref).std(), (err.max(), np.asarray(ref).std())
    assert (np.argmax(out, -1) == np.argmax(ref, -1)).mean() > 0.9


def test_dropout_only_with_a_key():
    cfg = dataclasses.replace(CFG, dropout=0.1)
    params, tokens = random_params(cfg), tokens_of((2, 12))
    mask = jnp.ones((2, 12), bool)
    plain = forward(CFG, params, tokens, mask)
    np.testing.assert_array_equal(forward(cfg, params, tokens, mask), plain)  # None = deterministic
    k1, k2 = jax.random.key(1), jax.random.key(2)
    a, b = forward(cfg, params, tokens, mask, k1), forward(cfg, params, tokens, mask, k2)
    assert np.abs(a - plain).max() > 1e-3 and np.abs(a - b).max() > 1e-3
    np.testing.assert_array_equal(forward(cfg, params, tokens, mask, k1), a)  # same key, same mask


def test_dropout_rate_and_mean():
    """A million entries: the dropped share is the rate (0.1 -> 6554 / 2^16) within 5 standard errors, kept
    entries are scaled so the mean is kept, and different keys drop different entries."""
    x = jnp.ones((1000, 1001), jnp.float32)  # an odd size: the last 32-bit word is half used
    y = np.asarray(dropout(x, 0.1, jax.random.key(0)))
    rate = 6554 / 65536
    se = np.sqrt(rate * (1 - rate) / y.size)
    assert abs((y == 0).mean() - rate) < 5 * se
    np.testing.assert_allclose(np.unique(y), [0.0, 65536 / (65536 - 6554)], rtol=1e-6)
    assert abs(y.mean() - 1.0) < 5 * se / (1 - rate)
    z = np.asarray(dropout(x, 0.1, jax.random.key(1)))
    assert ((y == 0) != (z == 0)).mean() > 0.1


def test_scalar_head_index():
    params = random_params(CFG)
    model = nnx.merge(abstract_model(CFG)[0], params)
    h = jnp.asarray(np.random.default_rng(3).standard_normal((2, 3, 5, CFG.n_embd)), jnp.float32)  # (B, K, T, D)
    every = np.asarray(model.score(h))  # (B, K, T)
    assert every.shape == (2, 3, 5)
    ref = h @ params["score_kernel"] + params["score_bias"]
    np.testing.assert_allclose(every, ref, rtol=1e-6, atol=1e-6)
    index = jnp.array([[4, 0, 2], [1, 3, 4]])  # e.g. each response's last token
    picked = np.asarray(model.score(h, index))
    assert picked.shape == (2, 3)
    np.testing.assert_allclose(picked, np.take_along_axis(every, np.asarray(index)[..., None], -1)[..., 0], rtol=1e-6)


def test_rejects_bad_config():
    with pytest.raises(ValueError, match="not divisible"):
        GPTConfig(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="dtype='float64'"):
        GPTConfig(dtype="float64")
