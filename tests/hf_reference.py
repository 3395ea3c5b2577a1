"""What the Hugging Face interchange tests share (test_hf: GPT-2, test_neox: GPT-NeoX, test_hf_rm: reward
models): weights moved off their init, left-padded batches, transformers' float64 logits as the exact answer,
and the export round trip."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from instructgpt_jax import hf
from instructgpt_jax.model import make_model, positions_from_mask

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def perturbed(model, seed=0):
    """A transformers model with every tensor (LayerNorms and biases too) moved off its init, so that a swapped
    or mis-reshaped tensor cannot go unnoticed. seed=None continues torch's current random stream."""
    if seed is not None:
        torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def random_params(cfg, init_seed=3, noise_seed=1, scale=0.1) -> dict:
    """Our model's params for `cfg` (a pure dict), every leaf moved off its init by scale x N(0, 1)."""
    params = nnx.to_pure_dict(nnx.split(make_model(cfg, seed=init_seed))[1])
    keys = iter(jax.random.split(jax.random.key(noise_seed), len(jax.tree.leaves(params))))
    return jax.tree.map(lambda x: x + scale * jax.random.normal(next(keys), x.shape), params)


def batches(vocab_size):
    """(tokens (3, 20), plain mask, left-padded mask with 0, 5 and 13 pad slots; pads carry arbitrary ids)."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, vocab_size, (3, 20)).astype(np.int32)
    plain = np.ones((3, 20), bool)
    padded = np.arange(20)[None, :] >= np.array([0, 5, 13])[:, None]
    return tokens, plain, padded


def hf_logits(path, tokens, mask):
    """transformers' logits computed in float64: the exact answer for these weights, so a test measures our
    float32 error alone (transformers' own float32 kernels differ from float64 by up to 1.2e-4 on some CPUs;
    ours by 3e-6)."""
    model = transformers.AutoModelForCausalLM.from_pretrained(path).eval().to(torch.float64)
    positions = np.maximum(np.cumsum(mask, -1) - 1, 0)
    with torch.no_grad():
        out = model(torch.tensor(tokens), attention_mask=torch.tensor(mask.astype(np.int64)),
                    position_ids=torch.tensor(positions))
    return out.logits.numpy()


def our_logits(cfg, params, tokens, mask):
    model = nnx.merge(nnx.split(make_model(cfg))[0], params)
    mask = jnp.asarray(mask)
    return np.asarray(model(jnp.asarray(tokens), positions_from_mask(mask), mask))


def assert_export_round_trip(cfg, params, path) -> dict:
    """hf.save_hf(cfg, params) into `path` (byte tokenizer): transformers' logits equal ours, plain and
    left-padded, and hf.load_hf gives back the same config and params. Returns the written config.json."""
    hf.save_hf(cfg, params, str(path), tokenizer="byte")
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    tokens, plain, padded = batches(cfg.vocab_size)
    for mask in (plain, padded):
        np.testing.assert_allclose(our_logits(cfg, params, tokens, mask)[mask],
                                   hf_logits(str(path), tokens, mask)[mask], rtol=0, atol=1e-4)
    cfg2, params2 = hf.load_hf(str(path))
    assert cfg2 == cfg
    jax.tree.map(np.testing.assert_array_equal, params2, jax.tree.map(np.asarray, params))
    return config
