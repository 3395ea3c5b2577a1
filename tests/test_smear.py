"""Smeared keys (model.smear, GPTConfig.smear_keys): the keys against a NumPy reference for dense, left-padded
and packed rows, KV-cache decoding equal to the full forward, a padded or packed row equal to the row alone, and
a smear weight of zero equal to the plain model."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from instructgpt_jax import hf
from instructgpt_jax.model import GPTConfig, make_model, packed_key_mask, smear
from decoding import assert_decoding_equals_full_forward

CFG = GPTConfig(vocab_size=61, n_positions=32, n_layer=2, n_head=4, n_embd=32, smear_keys=True)


def reference_smear(k, mask, logit):
    """k (B, T, H, K); mask (B, T) or (B, T, T); each key mixed with the key of the token before it, by loops."""
    k, mask = np.asarray(k, np.float64), np.asarray(mask)
    w = 1 / (1 + np.exp(-np.asarray(logit, np.float64)))
    out = k.copy()
    B, T = k.shape[:2]
    for b in range(B):
        for t in range(T):
            if mask.ndim == 2:
                p = t - 1 if t > 0 and mask[b, t - 1] else None
            else:
                seen = [s for s in range(t) if mask[b, t, s]]
                p = seen[-1] if seen else None
            if p is not None:
                out[b, t] = k[b, t] + w[:, None] * (k[b, p] - k[b, t])
    return out


def test_smear_against_numpy():
    rng = np.random.default_rng(0)
    k = rng.standard_normal((2, 7, 3, 5)).astype(np.float32)
    logit = np.array([-1.0, 0.0, 2.0], np.float32)
    left_padded = np.arange(7)[None, :] >= np.array([0, 3])[:, None]
    got = smear(jnp.asarray(k), jnp.asarray(left_padded), jnp.asarray(logit))
    np.testing.assert_allclose(got, reference_smear(k, left_padded, logit), rtol=0, atol=1e-6)
    # Decoding smears segment by segment (slots 0-3, then 4-5, then 6), each given the raw key before it.
    last, pieces = jnp.zeros_like(jnp.asarray(k[:, :1])), []
    for start, end in ((0, 4), (4, 6), (6, 7)):
        pieces.append(smear(jnp.asarray(k[:, start:end]), jnp.asarray(left_padded), jnp.asarray(logit), start, last))
        last = jnp.asarray(k[:, end - 1:end])
    np.testing.assert_allclose(jnp.concatenate(pieces, axis=1), got, rtol=0, atol=1e-6)
    # Packed: row 0 holds two segments; row 1 a prompt (slots 0-1) and two responses branching from it (2-3, 4-6),
    # so slot 4's previous token is the prompt's slot 1, not slot 3 of the other response.
    segments = jnp.asarray([[1, 1, 1, 2, 2, 2, 0], [1, 1, 1, 1, 1, 1, 1]])
    branches = jnp.asarray([[0, 0, 0, 0, 0, 0, 0], [0, 0, 1, 1, 2, 2, 2]])
    packed = packed_key_mask(segments, branches)
    got = smear(jnp.asarray(k), packed, jnp.asarray(logit))
    want = reference_smear(k, packed, logit)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    w = 1 / (1 + np.exp(-logit))
    np.testing.assert_allclose(want[1, 4], k[1, 4] + w[:, None] * (k[1, 1] - k[1, 4]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(want[0, 3], k[0, 3], rtol=0, atol=0)  # a segment's first token keeps its key


def _params(cfg, smear_logit=None, seed=2):
    """The model's init, perturbed so that biases and LayerNorms are not trivial; smear logits set if given."""
    params = nnx.to_pure_dict(nnx.split(make_model(cfg))[1])
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda x: x + 0.1 * rng.standard_normal(x.shape).astype(x.dtype), params)
    if smear_logit is not None:
        for layer in params["h"].values():
            layer["attn"]["smear"] = jnp.full_like(layer["attn"]["smear"], smear_logit)
    return params


def _run(cfg):
    graphdef = nnx.split(make_model(cfg))[0]

    @jax.jit
    def run(params, tokens, positions, mask, cache=None, index=0):
        model = nnx.merge(graphdef, params)
        if cache is None:
            return model(tokens, positions, mask)
        h, cache = model.trunk(tokens, positions, mask, cache=cache, cache_index=index)
        return model.logits(h), cache

    return run


def test_kv_cache_decoding_equals_full_forward():
    run, params = _run(CFG), _params(CFG)
    tokens = jnp.asarray(np.random.default_rng(4).integers(0, 61, (2, 12)), jnp.int32)
    mask = jnp.arange(12)[None, :] >= jnp.array([0, 3])[:, None]
    full = assert_decoding_equals_full_forward(CFG, params, tokens, mask, prefill=6)
    # The padded row's real slots equal the row alone.
    alone = np.asarray(run(params, tokens[1:, 3:], None, jnp.ones((1, 9), bool)))
    np.testing.assert_allclose(full[1, 3:], alone[0], rtol=0, atol=1e-5)


def test_packed_rows_equal_rows_alone():
    """Two sequences packed into one row, and a prompt with two responses sharing it, each equal to alone."""
    run, params = _run(CFG), _params(CFG)
    rng = np.random.default_rng(5)
    a, b = (jnp.asarray(rng.integers(0, 61, (1, n)), jnp.int32) for n in (5, 4))
    row = jnp.concatenate([a, b], axis=1)
    mask = packed_key_mask(jnp.asarray([[1] * 5 + [2] * 4]))
    positions = jnp.asarray([list(range(5)) + list(range(4))])
    packed = np.asarray(run(params, row, positions, mask))[0]
    alone = [np.asarray(run(params, x, None, jnp.ones(x.shape, bool)))[0] for x in (a, b)]
    np.testing.assert_allclose(packed, np.concatenate(alone), rtol=0, atol=1e-5)
    # prompt a (5), response r1 (3) after it, response r2 (4) after r1 in the row but branching from a
    r1, r2 = (jnp.asarray(rng.integers(0, 61, (1, n)), jnp.int32) for n in (3, 4))
    row = jnp.concatenate([a, r1, r2], axis=1)
    mask = packed_key_mask(jnp.ones((1, 12), jnp.int32), jnp.asarray([[0] * 5 + [1] * 3 + [2] * 4]))
    positions = jnp.asarray([list(range(8)) + list(range(5, 9))])
    packed = np.asarray(run(params, row, positions, mask))[0]
    second = np.asarray(run(params, jnp.concatenate([a, r2], axis=1), None, jnp.ones((1, 9), bool)))[0]
    np.testing.assert_allclose(packed[8:], second[5:], rtol=0, atol=1e-5)


def test_zero_smear_weight_is_the_plain_model_and_a_weight_changes_it():
    plain = dataclasses.replace(CFG, smear_keys=False)
    tokens = jnp.asarray(np.random.default_rng(6).integers(0, 61, (2, 10)), jnp.int32)
    mask = jnp.ones((2, 10), bool)
    smeared_off = _params(CFG, smear_logit=-60.0)
    params = {**smeared_off, "h": {i: {**layer, "attn": {n: v for n, v in layer["attn"].items() if n != "smear"}}
                                   for i, layer in smeared_off["h"].items()}}
    want = np.asarray(_run(plain)(params, tokens, None, mask))
    np.testing.assert_allclose(np.asarray(_run(CFG)(smeared_off, tokens, None, mask)), want, rtol=0, atol=1e-6)
    got = np.asarray(_run(CFG)(_params(CFG, smear_logit=0.0), tokens, None, mask))
    assert np.abs(got - want).max() > 1e-2
    assert plain.architecture() != CFG.architecture()


def test_export_refuses_smeared_keys():
    with pytest.raises(ValueError, match="smear_keys=True has no Hugging Face architecture"):
        hf.config_to_hf(CFG)


def test_smear_names_a_mask_it_cannot_read():
    k, logit = jnp.zeros((1, 4, 2, 3)), jnp.zeros((2,))
    with pytest.raises(ValueError, match=r"over a KV cache; a cache takes a \(B, S\) mask"):
        smear(k, jnp.ones((1, 4, 4), bool), logit, 0, k[:, :1])
    with pytest.raises(ValueError, match=r"\(1, 4, 5\) key mask over 4 keys; expected \(B, 4\) or \(B, 4, 4\)"):
        smear(k, jnp.ones((1, 4, 5), bool), logit)
