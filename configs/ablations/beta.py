"""Ablation: the KL coefficient beta of PPO, from none to strong (Ouyang et al. 2022 use 0.02).

  python experiments/sweep.py --config configs/ablations/beta.py:W --workdir W/sweep_beta

W (after the colon; default runs/pipeline) is a pipeline workdir whose world, SFT and RM stages are done
(`instructgpt pipeline --config configs/pipeline.py:default --workdir W`); every run starts from W/sft and
W/rm and differs only in beta. Plain PPO (ptx_coef 0), so the KL to SFT is beta's doing alone: with the
pretraining term the policy also drifts towards the corpus (configs/ablations/ptx.py sweeps that).
Seven PPO runs of 100 iterations each (0.1 is the pipeline default's). `W/sweep_beta/sweep.png` plots gold
and RM score against KL for every run. The measured sweeps (RM score, KL, length and gold per beta):
docs/RESULTS.md, "KL coefficient: the beta sweep and a strong-KL variant" (earlier labelers and RMs) and
"The beta sweep on the calibrated-label RM".
"""

import ml_collections

from instructgpt_jax.config_base import load_config

BETAS = {"beta_0": 0.0, "beta_0002": 0.002, "beta_0005": 0.005, "beta_002": 0.02, "beta_005": 0.05, "beta_01": 0.1,
         "beta_02": 0.2}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    workdir = arg or "runs/pipeline"
    # The pipeline default's PPO: its corpus (held-out loss there is the tax) and token lengths (world tokens).
    pipe = load_config("configs/pipeline.py:default").ppo
    paths = {"init_policy": f"{workdir}/sft", "init_value": f"{workdir}/rm", "reward_model": f"{workdir}/rm",
             "data": {"prompts": f"{workdir}/world/ppo.jsonl", "eval_prompts": f"{workdir}/world/eval.jsonl",
                      "corpus": {"source": pipe.data.corpus.source}, "prompt_len": pipe.data.prompt_len}}
    config = ml_collections.ConfigDict()
    config.base = "configs/ppo.py:ppo"
    config.runs = ml_collections.ConfigDict(
        {name: {**paths, "ppo": {"beta": beta, "max_new_tokens": pipe.ppo.max_new_tokens}}
         for name, beta in BETAS.items()}, sort_keys=False)
    return config
