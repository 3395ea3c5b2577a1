"""Ablation: iterated RLHF at an equal labelling budget: 1 round of 3B comparisons vs 3 rounds of B.

  python experiments/sweep.py --config configs/ablations/rounds.py:smoke --workdir runs/sweep_rounds_smoke
  python experiments/sweep.py --config configs/ablations/rounds.py --workdir runs/sweep_rounds

Two pipelines (configs/pipeline.py:<arg>, arg = default or smoke) sharing world, pretrain and SFT (linked):
- rounds_1: the labelers rank SFT samples on 3B RM prompts once (the base pipeline's own budget: compare's
  num_prompts, 16,384 in the default); one RM; PPO-ptx for 3N iterations.
- rounds_3: B = a third of that per round (5,461; smoke 21); round 1 ranks SFT samples,
  rounds 2 and 3 rank samples of the previous round's policy on fresh prompts; the RM is retrained on all
  comparisons so far; PPO-ptx continues N iterations per round (N = ppo_ptx's iterations: 200, smoke 6).
Same labels, same PPO iterations, same KL anchor (SFT) and fixed beta; only when the labels are collected differs.
Expected: rounds_3's round-2 and -3 comparisons show the previous RM less accurate on the new policy's
samples than the retrained one (summary.json rounds[].stale_rm_accuracy < rm_accuracy: the stale RM),
and the last round's gold at least as high as rounds_1's at a similar KL from SFT, once the RMs are well
above chance. Measured at smoke and reduced-default sizes, on web v2, on the 3,000-step default and on the current
one: docs/RESULTS.md, "Iterated RLHF", "1 vs 3 rounds with a working RM", "The ablations on the 3,000-step
default" and "1 vs 3 rounds and the size analogue on the 16,384 default".
"""

import ml_collections

from instructgpt_jax.config_base import load_config

ROUNDS = 3


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    base = "configs/pipeline.py:" + (arg or "default")
    pipeline = load_config(base)
    b, n = pipeline.compare.data.num_prompts // ROUNDS, pipeline.ppo_ptx.train.iterations
    config = ml_collections.ConfigDict()
    config.base = base
    # Fixed beta in both: the default's adaptive controller would restart at its initial beta in every round
    # of rounds_3 while adapting once over rounds_1's 3N iterations, a difference besides the labels' timing.
    fixed = {"adaptive_kl": False}
    config.runs = ml_collections.ConfigDict({
        "rounds_1": {"rounds": 1, "comparisons_per_round": ROUNDS * b,
                     "ppo_ptx": {"train": {"iterations": ROUNDS * n}, "ppo": dict(fixed)}},
        f"rounds_{ROUNDS}": {"rounds": ROUNDS, "comparisons_per_round": b, "ppo_ptx": {"ppo": dict(fixed)}},
    }, sort_keys=False)
    return config
