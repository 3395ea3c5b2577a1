"""Every preset's parameter count, from `jax.eval_shape` (nothing allocated), against its published size."""

import functools

import pytest

from instructgpt_jax.model import GPTConfig, count_params
from instructgpt_jax.presets import PRESETS, get_preset, published_params


@functools.cache
def count(arch: tuple) -> int:
    # Aliases (gpt2-small, instructgpt-175b, ...) share an architecture: count each architecture once.
    return count_params(GPTConfig(**dict(arch)))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_count_matches_published(name):
    n = count(tuple(sorted(PRESETS[name][0].items())))
    published = published_params(name)
    assert abs(n - published) <= 0.02 * published, f"{name}: {n:,} parameters, published {published:,.0f}"


def test_known_counts_exactly():
    # Hugging Face's gpt2 checkpoint has 124,439,808 parameters (tied unembedding, no biases on lm_head).
    assert count_params(get_preset("gpt2")) == 124_439_808
    assert count_params(get_preset("nano", scalar_head=True)) == count_params(get_preset("nano")) + 64 + 1


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="unknown model preset 'gpt5'"):
        get_preset("gpt5")
    with pytest.raises(ValueError, match="unknown GPTConfig fields \\['n_embed'\\]"):
        get_preset("nano", n_embed=32)


def test_overrides():
    cfg = get_preset("tiny", dropout=0.1, dtype="bfloat16", remat=True)
    assert (cfg.n_layer, cfg.dropout, cfg.dtype, cfg.remat) == (4, 0.1, "bfloat16", True)
    with pytest.raises(ValueError, match="not divisible"):
        get_preset("nano", n_head=3)
