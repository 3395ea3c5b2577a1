"""Ablation: the pretraining-mix coefficient of PPO-ptx (the paper's gamma; 0 is plain PPO).

  python experiments/sweep.py --config configs/ablations/ptx.py:W --workdir W/sweep_ptx

W (after the colon; default runs/pipeline) is a pipeline workdir whose PPO-ptx stage has run; every run is
W/ppo_ptx's config (configs/run_stage.py: from W/sft and W/rm) with another ptx_coef; five runs, each as long
as that stage. Expected (Ouyang et al. 2022, section 4.2 / figure 33): the held-out
pretraining loss (ppo/pretrain_loss, the alignment tax) rises least for the largest coefficient and most
for 0, while the RM and gold scores fall only a little until the coefficient dominates the PPO loss.
"""

import ml_collections

PTX = {"ptx_0": 0.0, "ptx_001": 0.01, "ptx_003": 0.03, "ptx_01": 0.1, "ptx_03": 0.3}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    workdir = arg or "runs/pipeline"
    config = ml_collections.ConfigDict()
    # W's PPO-ptx stage as it ran (configs/run_stage.py): its beta (so ptx_0 is that run's plain PPO), its
    # pretraining corpus (the ptx data and the tax's held-out text), token lengths and seed.
    config.base = f"configs/run_stage.py:{workdir}/ppo_ptx"
    config.runs = ml_collections.ConfigDict({name: {"ppo": {"ptx_coef": c}} for name, c in PTX.items()},
                                            sort_keys=False)
    return config
