"""Ablation: reward models that differ only in their seed, the members of an RM ensemble.

  python experiments/sweep.py --config configs/ablations/rm_seeds.py:W --workdir W/sweep_rm_seeds
  python experiments/rm_probe.py --workdir W --n 16 --prompts 256 --max_new_tokens 24 --dump W/probe.jsonl
  python experiments/rm_probe.py --workdir W --samples W/probe.jsonl \
      --rm W/rm,W/sweep_rm_seeds/seed_1,W/sweep_rm_seeds/seed_2,W/sweep_rm_seeds/seed_3,W/sweep_rm_seeds/seed_4

W (after the colon; default runs/pipeline) is a pipeline workdir whose RM stage has run. Each run is W/rm's
config (configs/run_stage.py: from W/sft, on W/compare's comparisons, same epochs and layout) with another
train.seed, which draws the scalar head, the order of the comparisons and the held-out split (so the sweep
table's rm/accuracy is on a different tenth of the prompts for each seed; rm_probe's figures, on the world's
eval prompts, are on the same responses for every member). The probe then scores W/sft's samples with each
member and with their mean: does averaging seeds make best-of-n by the RM rise further and fall less at
large n (Coste et al. 2023)? Measured figures: docs/RESULTS.md, "An ensemble of RM seeds".
"""

import ml_collections

SEEDS = (1, 2, 3, 4)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    workdir = arg or "runs/pipeline"
    config = ml_collections.ConfigDict()
    config.base = f"configs/run_stage.py:{workdir}/rm"  # W's RM stage as it ran: its data, epochs and layout
    config.runs = ml_collections.ConfigDict({f"seed_{s}": {"train": {"seed": s}} for s in SEEDS}, sort_keys=False)
    return config
