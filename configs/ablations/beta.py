"""Ablation: the KL coefficient beta of PPO, from none to strong (Ouyang et al. 2022 use 0.02).

  python experiments/sweep.py --config configs/ablations/beta.py:W --workdir W/sweep_beta

W (after the colon; default runs/pipeline) is a pipeline workdir whose plain PPO stage has run
(`instructgpt pipeline --config configs/pipeline.py:default --workdir W`): every run is W/ppo's config
(configs/run_stage.py: from W/sft and W/rm, with W's prompts, corpus, token lengths, iterations and seed) with
another beta, held fixed (the default's adaptive KL controller off).
Plain PPO (ptx_coef 0), so the KL to SFT is beta's doing alone: with the pretraining term the policy also
drifts towards the corpus (configs/ablations/ptx.py sweeps that). Eight PPO runs at W's learning rates
and iterations (the pipeline default's: 200 at 1e-4, its controller starting from beta 0.3; before 2026-12-05
beta stayed 0.3 for 100 iterations, and 0.1 at 3e-5 before that). `W/sweep_beta/sweep.png` plots gold and RM
score against KL for every run. The measured sweeps (RM score, KL, length and gold per beta):
docs/RESULTS.md, "The ablations on the web v5 default" and "The ablations on the 3,000-step default" (RM score
rising while gold peaks and falls at the smallest betas), "The beta sweep on web v2: the over-optimisation curve",
"The beta sweep on the world RM" and "KL coefficient: the beta sweep and a strong-KL variant" (earlier defaults and
worlds).
"""

import ml_collections

BETAS = {"beta_0": 0.0, "beta_0002": 0.002, "beta_0005": 0.005, "beta_002": 0.02, "beta_005": 0.05, "beta_01": 0.1,
         "beta_02": 0.2, "beta_03": 0.3}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    workdir = arg or "runs/pipeline"
    config = ml_collections.ConfigDict()
    # W's plain PPO stage as it ran (configs/run_stage.py): its SFT, RM, prompts, corpus, lengths and seed.
    config.base = f"configs/run_stage.py:{workdir}/ppo"
    # Fixed beta: the pipeline default's adaptive controller (which moves beta towards a target KL) is off.
    config.runs = ml_collections.ConfigDict(
        {name: {"ppo": {"beta": beta, "adaptive_kl": False}} for name, beta in BETAS.items()}, sort_keys=False)
    return config
