"""instructgpt_jax: the InstructGPT recipe (SFT, K-wise reward model, PPO-ptx) in JAX / Flax NNX."""

__version__ = "0.1.0"
