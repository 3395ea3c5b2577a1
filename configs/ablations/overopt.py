"""Ablation: over-optimisation of the RM, the beta sweep with PPO's learning rates raised to 1e-4.

  python experiments/sweep.py --config configs/ablations/overopt.py:W --workdir W/sweep_overopt

W (after the colon; default runs/pipeline) is a pipeline workdir whose plain PPO stage has run. The runs are
configs/ablations/beta.py's (W/ppo's config with another beta, from W/sft and W/rm) at beta
0.02 (the paper's), 0.1 and 0.2, with the policy's and the value function's learning rates at 1e-4 whatever
W's are (the pipeline default's since beta 0.3 became its beta; the stage default is 3e-5): at 3e-5 KL stays
small and beta barely matters, so the curve the paper's argument needs (the RM score keeps rising while gold
peaks and falls, later for a larger beta) shows only with more optimisation. Each run's stage evaluation
(gold, RM score, KL every 25 iterations) is that curve; `W/sweep_overopt/sweep.png` plots gold and RM score
against KL. Measured: docs/RESULTS.md.
"""

import ml_collections

from instructgpt_jax.config_base import load_config

LR = 1e-4
BETAS = ("beta_002", "beta_01", "beta_02")   # names of configs/ablations/beta.py's runs


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    beta = load_config("configs/ablations/beta.py:" + (arg or "runs/pipeline"))
    config = ml_collections.ConfigDict()
    config.base = beta.base
    config.runs = ml_collections.ConfigDict(
        {f"{name}_lr1e4": {**beta.runs[name].to_dict(), "optim": {"lr": LR}, "value_optim": {"lr": LR}}
         for name in BETAS}, sort_keys=False)
    return config
