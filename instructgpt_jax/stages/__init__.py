"""The stage runners: one module per stage of the recipe, each with `run(config, workdir)`.

A runner reads its inputs (files and checkpoints named in its config), trains or samples with the library
(model, sampling, train, checkpoint, data/) and the math of its stage (pretrain.py, sft.py, reward.py,
ppo.py with rollout.py), and writes its folder. No runner imports another: stages connect through files
only (docs/ARCHITECTURE.md). `instructgpt <stage>` and the pipeline call the same `run`.
"""

from instructgpt_jax.stages import compare, ppo, pretrain, rm, sft

__all__ = ["compare", "ppo", "pretrain", "rm", "sft"]
