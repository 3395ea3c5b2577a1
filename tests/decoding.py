"""KV-cache decoding against the full forward pass, for any GPTConfig (no torch needed)."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from instructgpt_jax.model import init_cache, make_model, positions_from_mask


def assert_decoding_equals_full_forward(cfg, params, tokens, mask, prefill: int, atol: float = 1e-5):
    """Prefill `prefill` slots of the left-padded batch, then feed one token at a time: the logits of every real
    slot equal the full pass's. Returns the full pass's logits (B, T, V)."""
    graphdef = nnx.split(make_model(cfg))[0]

    @jax.jit
    def run(params, tokens, positions, mask, cache, index):
        model = nnx.merge(graphdef, params)
        if cache is None:
            return model(tokens, positions, mask)
        h, cache = model.trunk(tokens, positions, mask, cache=cache, cache_index=index)
        return model.logits(h), cache

    B, T = tokens.shape
    positions = positions_from_mask(mask)
    full = np.asarray(run(params, tokens, positions, mask, None, 0))
    logits, cache = run(params, tokens[:, :prefill], positions[:, :prefill], mask, init_cache(cfg, B, T), 0)
    steps = [logits]
    for t in range(prefill, T):
        logits, cache = run(params, tokens[:, t:t + 1], positions[:, t:t + 1], mask, cache, t)
        steps.append(logits)
    decoded = np.asarray(jnp.concatenate(steps, axis=1))
    m = np.asarray(mask)
    np.testing.assert_allclose(decoded[m], full[m], rtol=0, atol=atol)
    return full
