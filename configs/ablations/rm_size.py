"""Ablation: a reward model larger than the policy, as in the paper (a 6B RM and value function for its 1.3B
policies; Ouyang et al. 2022, sec. 3.5).

  python experiments/sweep.py --config configs/ablations/rm_size.py --workdir runs/sweep_rm_size
  python experiments/sweep.py --config configs/ablations/rm_size.py --workdir runs/sweep_rm_size --dry_run

Two `pipeline :default` runs with the tiny policy: `same` (the RM is the tiny SFT network, the default) and
`small_cpu` (`config.rm_model=small_cpu`: 6 layers, d 192, 3.2x the parameters; its own base model and SFT
on the same corpus and demonstrations, stages rm_pretrain and rm_sft, then the RM on the same comparisons of
the tiny SFT's samples; PPO's value model starts from it). The second run links world .. compare from the
first and adds about 30 minutes on 2 CPU cores (rm_pretrain ~10, rm_sft ~25 on a loaded machine, RM ~10).
Measured (2026-12-02, the default run of docs/RESULTS.md; held-out comparisons of the RM stage; best-of-8 and
correlations by `experiments/rm_probe.py` on 128 eval prompts x 8 tiny-SFT samples, mean gold 0.353, oracle 0.546):

| RM | SFT val loss / gold (of the RM's own SFT) | labeler agreement | gold agreement | best-of-8 | RM~gold | RM~length |
|---|---|---|---|---|---|---|
| tiny (0.86M, the default) | 0.584 / 0.380 | 0.544 | 0.552 | 0.389 | +0.52 | +0.22 |
| small_cpu (2.8M) | 0.574 / 0.371 | 0.528 | 0.539 | 0.365 | +0.44 | +0.23 |

At this scale a larger RM does not judge better: its SFT learns the demonstrations no better than the tiny
one (the world's tasks, not capacity, bound both), and from ~1,800 compared prompts it learns the same
families (count, harmful, write) and not the copying ones. The paper's larger RM brings knowledge from a
far larger pretraining; here both start from the same Shakespeare.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.base = "configs/pipeline.py:" + (arg or "default")
    config.runs = ml_collections.ConfigDict({"same": {}, "small_cpu": {"rm_model": "small_cpu"}}, sort_keys=False)
    return config
