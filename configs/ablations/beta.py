"""Ablation: the KL coefficient beta of PPO, from none to strong (Ouyang et al. 2022 use 0.02).

  python experiments/sweep.py --config configs/ablations/beta.py:W --workdir W/sweep_beta

W (after the colon; default runs/pipeline) is a pipeline workdir whose world, SFT and RM stages are done
(`instructgpt pipeline --config configs/pipeline.py:default --workdir W`); every run starts from W/sft and
W/rm and differs only in beta. Plain PPO (ptx_coef 0), so the KL to SFT is beta's doing alone: with the
pretraining term the policy also drifts towards the corpus (configs/ablations/ptx.py sweeps that).
Runtime: one PPO run each (100 iterations, about 2.5 minutes on 2 CPU cores for the tiny model), six runs.
Measured (2026-12-02, W = the `pipeline :default` run of docs/RESULTS.md at 46e15af, the labelers
calibrated on SFT samples; 100 iterations each, 2 cores, about 100 s a run; the 128 fixed PPO eval prompts):

| beta | RM score | KL to SFT | length | gold |
|---|---|---|---|---|
| SFT (iteration 0) | 0.256 | 0 | 14.2 | 0.354 |
| 0 | 0.475 | 3.30 | 19.4 | 0.362 |
| 0.002 | 0.461 | 3.03 | 19.0 | 0.361 |
| 0.005 | 0.470 | 3.62 | 19.1 | 0.361 |
| 0.02 (paper) | 0.403 | 1.60 | 17.1 | 0.368 |
| 0.05 | 0.378 | 0.61 | 15.9 | 0.377 |
| 0.2 | 0.337 | 0.16 | 15.0 | 0.362 |

The RM score rises as beta falls and the KL grows, and the answers lengthen (the labelers' length bias the
RM inherited); gold stays at or a little above SFT's for every beta (single runs differ by about 0.01)
and is highest at a moderate beta (0.05), the proxy-vs-gold picture of Gao et al. 2022 for an RM that
judges gold in few task families. With the earlier labelers (noise 0.245, length bias 0.5) the small betas
over-optimised plainly: beta 0 reached KL 17.7, 28-token answers and gold 0.309. `W/sweep_beta/sweep.png`
plots gold and RM score against KL for every run.
"""

import ml_collections

BETAS = {"beta_0": 0.0, "beta_0002": 0.002, "beta_0005": 0.005, "beta_002": 0.02, "beta_005": 0.05, "beta_02": 0.2}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    workdir = arg or "runs/pipeline"
    paths = {"init_policy": f"{workdir}/sft", "init_value": f"{workdir}/rm", "reward_model": f"{workdir}/rm",
             "data": {"prompts": f"{workdir}/world/ppo.jsonl", "eval_prompts": f"{workdir}/world/eval.jsonl"}}
    config = ml_collections.ConfigDict()
    config.base = "configs/ppo.py:ppo"
    config.runs = ml_collections.ConfigDict(
        {name: {**paths, "ppo": {"beta": beta}} for name, beta in BETAS.items()}, sort_keys=False)
    return config
