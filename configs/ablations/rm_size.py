"""Ablation: a reward model larger than the policy, as in the paper (a 6B RM and value function for its 1.3B
policies; Ouyang et al. 2022, sec. 3.5).

  python experiments/sweep.py --config configs/ablations/rm_size.py --workdir runs/sweep_rm_size
  python experiments/sweep.py --config configs/ablations/rm_size.py --workdir runs/sweep_rm_size --dry_run

Two `pipeline :default` runs with the default's tiny policy: `same` (the RM is the policy's SFT network, the
default) and `small_cpu` (`config.rm_model=small_cpu-world-rope-smear`: 6 layers, d 192, 2.9x the parameters
(small_cpu-world, 3.2x tiny-world's, before 2026-12-07); its own base model and SFT on the same corpus and
demonstrations, stages rm_pretrain and rm_sft, then the RM on the same comparisons of the tiny SFT's samples; PPO's
value model starts from it). The second run links world .. compare from the first and adds three stages
(rm_pretrain, rm_sft, RM on the larger network). Measured (RM agreement, best-of-8 and correlations by
`experiments/rm_probe.py`, and PPO against each RM): docs/RESULTS.md, "Is the RM limited by its size or its learning
rate?" (the algorithmic world), "A 3.2x larger RM on the calibrated labels", "A 3x larger RM on the world tokenizer"
and, on the default of 2026-12-06, "The ablations on the 3,000-step default" (the `small_cpu` run alone: `instructgpt
pipeline --config configs/pipeline.py:default --workdir W --config.rm_model=small_cpu-world` with a default run's
world .. compare copied into W).
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.base = "configs/pipeline.py:" + (arg or "default")
    config.runs = ml_collections.ConfigDict({"same": {}, "small_cpu": {"rm_model": "small_cpu-world-rope-smear"}},
                                            sort_keys=False)
    return config
