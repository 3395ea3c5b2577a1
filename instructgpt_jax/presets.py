"""Named model sizes: GPT-1, GPT-2, the GPT-3 family of Brown et al. (2020) Table 2.1, InstructGPT's names,
and tiny sizes that train on a 2-core CPU in minutes.

`published` is the parameter count the source reports; tests check `count_params` against it (within 2%)
with `jax.eval_shape`, so even 175B is counted without allocating a byte.

Notes on the sources:
- GPT-1 (Radford et al. 2018) is post-LN (LayerNorm after each residual add, no final ln_f) with a
  40,478-token BPE. Same parameter count as our pre-LN block; the numerics differ, so `gpt1` here is the
  GPT-1 *shape* trained with the GPT-2 block.
- GPT-2's paper lists 117M/345M/762M/1542M, computed before the released models; the released checkpoints
  (and Hugging Face's model cards) have 124M/355M/774M/1558M, which is what this architecture counts.
- GPT-3 13B's table entry says d_model 5140 with 40 heads of 128; 40 x 128 = 5120, the width used here.
- GPT-3 XL's entry says 24 heads of 128 with d_model 2048; its 1.3B count needs attention width = d_model,
  so it runs 16 heads of 128 here.
- Tiny sizes are ours: `published` is simply their count.
- InstructGPT (Ouyang et al. 2022) trains 1.3B, 6B and 175B GPT-3 models; "6B" is GPT-3 6.7B.
- Pythia (Biderman et al. 2023) is GPT-NeoX: rotary embeddings on 25% of each head, parallel residual,
  untied unembedding, embeddings padded to 50304 ids (6.9B: 50432; 12B: 50688) for a 50277-id tokenizer.
  `published` is the exact total of the released checkpoints (the Pythia model cards' "total params"),
  which these shapes reproduce; the names' sizes (70M, 160M, ...) round those totals.
"""

from __future__ import annotations

import dataclasses

from instructgpt_jax.model import GPTConfig

_GPT3 = dict(vocab_size=50257, n_positions=2048)
_PYTHIA = dict(arch="neox", vocab_size=50304, n_positions=2048, rotary_pct=0.25, parallel_residual=True,
               tied_embeddings=False)

# name: (architecture, published parameter count)
PRESETS: dict[str, tuple[dict, float]] = {
    # Tiny sizes for CPU. 264 = the byte tokenizer's 261 ids padded to a multiple of 8.
    "nano": (dict(vocab_size=264, n_positions=256, n_layer=2, n_head=2, n_embd=64), 133_376),
    "tiny": (dict(vocab_size=264, n_positions=256, n_layer=4, n_head=4, n_embd=128), 859_904),
    "small_cpu": (dict(vocab_size=264, n_positions=256, n_layer=6, n_head=6, n_embd=192), 2_769_408),
    # The same sizes for the world tokenizer's 2,048 ids (tokenizer.WorldTokenizer; the pipeline's default).
    "nano-world": (dict(vocab_size=2048, n_positions=256, n_layer=2, n_head=2, n_embd=64), 247_552),
    "tiny-world": (dict(vocab_size=2048, n_positions=256, n_layer=4, n_head=4, n_embd=128), 1_088_256),
    "small_cpu-world": (dict(vocab_size=2048, n_positions=256, n_layer=6, n_head=6, n_embd=192), 3_111_936),
    # tiny-world with rotary positions on every head dimension instead of learned ones (GPT-NeoX's attention,
    # GPT-2's block otherwise): an offset between two tokens is one product away, as a previous-token head needs.
    # Its skills, loss and RM against tiny-world's: docs/RESULTS.md, "Rotary positions in the tiny world model".
    "tiny-world-rope": (dict(vocab_size=2048, n_positions=256, n_layer=4, n_head=4, n_embd=128, arch="neox",
                             rotary_pct=1.0), 1_055_488),
    # tiny-world with smeared keys (model.smear): a head's key at a token also carries the token before it, so an
    # induction head (in-context lookup, copying) needs one layer on top of a previous-token head; and the same
    # with tiny-world-rope's rotary positions. Their skills: docs/RESULTS.md, "Smeared keys, and three times the pretraining".
    "tiny-world-smear": (dict(vocab_size=2048, n_positions=256, n_layer=4, n_head=4, n_embd=128, smear_keys=True),
                         1_088_272),
    "tiny-world-rope-smear": (dict(vocab_size=2048, n_positions=256, n_layer=4, n_head=4, n_embd=128, arch="neox",
                                   rotary_pct=1.0, smear_keys=True), 1_055_504),
    # The other two sizes with the same attention (the default's since 2026-12-07): configs/ablations/model_size.py.
    "nano-world-rope-smear": (dict(vocab_size=2048, n_positions=256, n_layer=2, n_head=2, n_embd=64, arch="neox",
                                   rotary_pct=1.0, smear_keys=True), 231_172),
    "small_cpu-world-rope-smear": (dict(vocab_size=2048, n_positions=256, n_layer=6, n_head=6, n_embd=192,
                                        arch="neox", rotary_pct=1.0, smear_keys=True), 3_062_820),
    # The Hugging Face TRL comparison config (DESIGN.md, performance targets).
    "trl_tiny": (dict(vocab_size=8192, n_positions=256, n_layer=4, n_head=4, n_embd=256), 5_322_240),
    "gpt1": (dict(vocab_size=40478, n_positions=512, n_layer=12, n_head=12, n_embd=768), 117e6),
    "gpt2": (dict(vocab_size=50257, n_positions=1024, n_layer=12, n_head=12, n_embd=768), 124e6),
    "gpt2-medium": (dict(vocab_size=50257, n_positions=1024, n_layer=24, n_head=16, n_embd=1024), 355e6),
    "gpt2-large": (dict(vocab_size=50257, n_positions=1024, n_layer=36, n_head=20, n_embd=1280), 774e6),
    "gpt2-xl": (dict(vocab_size=50257, n_positions=1024, n_layer=48, n_head=25, n_embd=1600), 1558e6),
    "gpt3-small": (dict(_GPT3, n_layer=12, n_head=12, n_embd=768), 125e6),
    "gpt3-medium": (dict(_GPT3, n_layer=24, n_head=16, n_embd=1024), 350e6),
    "gpt3-large": (dict(_GPT3, n_layer=24, n_head=16, n_embd=1536), 760e6),
    "gpt3-xl": (dict(_GPT3, n_layer=24, n_head=16, n_embd=2048), 1.3e9),
    "gpt3-2.7b": (dict(_GPT3, n_layer=32, n_head=32, n_embd=2560), 2.7e9),
    "gpt3-6.7b": (dict(_GPT3, n_layer=32, n_head=32, n_embd=4096), 6.7e9),
    "gpt3-13b": (dict(_GPT3, n_layer=40, n_head=40, n_embd=5120), 13e9),
    "gpt3-175b": (dict(_GPT3, n_layer=96, n_head=96, n_embd=12288), 175e9),
    # GPT-NeoX on CPU: the nano shape with Pythia's architecture (tests, pulses).
    "nano-neox": (dict(_PYTHIA, vocab_size=264, n_positions=256, n_layer=2, n_head=2, n_embd=64), 133_888),
    "pythia-70m": (dict(_PYTHIA, n_layer=6, n_head=8, n_embd=512), 70_426_624),
    "pythia-160m": (dict(_PYTHIA, n_layer=12, n_head=12, n_embd=768), 162_322_944),
    "pythia-410m": (dict(_PYTHIA, n_layer=24, n_head=16, n_embd=1024), 405_334_016),
    "pythia-1b": (dict(_PYTHIA, n_layer=16, n_head=8, n_embd=2048), 1_011_781_632),
    "pythia-1.4b": (dict(_PYTHIA, n_layer=24, n_head=16, n_embd=2048), 1_414_647_808),
    "pythia-2.8b": (dict(_PYTHIA, n_layer=32, n_head=32, n_embd=2560), 2_775_208_960),
    "pythia-6.9b": (dict(_PYTHIA, vocab_size=50432, n_layer=32, n_head=32, n_embd=4096), 6_857_302_016),
    "pythia-12b": (dict(_PYTHIA, vocab_size=50688, n_layer=36, n_head=40, n_embd=5120), 11_846_072_320),
}
PRESETS["gpt2-small"] = PRESETS["gpt2"]
PRESETS["instructgpt-1.3b"] = PRESETS["gpt3-xl"]
PRESETS["instructgpt-6b"] = (PRESETS["gpt3-6.7b"][0], 6e9 * 6.7 / 6)  # the 6.7B model, named "6B"
PRESETS["instructgpt-175b"] = PRESETS["gpt3-175b"]


def get_preset(name: str, **overrides) -> GPTConfig:
    """GPTConfig of a named size; overrides (dropout, dtype, remat, scalar_head, ...) replace fields."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; expected one of {sorted(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(GPTConfig)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"unknown GPTConfig fields {sorted(unknown)}; expected some of {sorted(fields)}")
    return GPTConfig(**{**PRESETS[name][0], **overrides})


def published_params(name: str) -> float:
    return PRESETS[name][1]
