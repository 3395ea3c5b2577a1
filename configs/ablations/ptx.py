"""Ablation: the pretraining-mix coefficient of PPO-ptx (the paper's gamma; 0 is plain PPO).

  python experiments/sweep.py --config configs/ablations/ptx.py:W --workdir W/sweep_ptx

W (after the colon; default runs/pipeline) is a pipeline workdir whose world, SFT and RM stages are done;
every run starts from W/sft and W/rm and differs only in ptx_coef. Runtime: one PPO run each (see
configs/ppo.py), five runs. Expected (Ouyang et al. 2022, section 4.2 / figure 33): the held-out
pretraining loss (ppo/pretrain_loss, the alignment tax) rises least for the largest coefficient and most
for 0, while the RM and gold scores fall only a little until the coefficient dominates the PPO loss.
"""

import ml_collections

from instructgpt_jax.config_base import load_config

PTX = {"ptx_0": 0.0, "ptx_001": 0.01, "ptx_003": 0.03, "ptx_01": 0.1, "ptx_03": 0.3}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    workdir = arg or "runs/pipeline"
    # The pipeline :default's PPO-ptx: its KL coefficient (so ptx_0 is that run's plain PPO), its pretraining
    # corpus (the ptx data and the tax's held-out text) and its token lengths.
    pipe = load_config("configs/pipeline.py:default").ppo_ptx
    paths = {"init_policy": f"{workdir}/sft", "init_value": f"{workdir}/rm", "reward_model": f"{workdir}/rm",
             "data": {"prompts": f"{workdir}/world/ppo.jsonl", "eval_prompts": f"{workdir}/world/eval.jsonl",
                      "corpus": {"source": pipe.data.corpus.source}, "prompt_len": pipe.data.prompt_len}}
    config = ml_collections.ConfigDict()
    config.base = "configs/ppo.py:ptx"
    config.runs = ml_collections.ConfigDict(
        {name: {**paths, "ppo": {"ptx_coef": c, "beta": pipe.ppo.beta, "max_new_tokens": pipe.ppo.max_new_tokens}}
         for name, c in PTX.items()}, sort_keys=False)
    return config
