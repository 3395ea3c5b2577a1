"""Ablation: the number K of responses ranked per prompt, K in 2, 4, 6, 9, at an equal labelling budget.

  instructgpt compare --config configs/compare.py:k9 --workdir W/compare_k9 \
      --config.policy=W/sft --config.data.prompts=W/world/rm_prompts.jsonl
  python experiments/sweep.py --config configs/ablations/rm_k.py:W --workdir W/sweep_rm_k

W (after the colon; default runs/pipeline) is a pipeline workdir whose SFT stage is done; the first command
has 2,048 prompts' 9 SFT samples ranked. Each run cuts every training prompt to K of its responses (the
labeler's ranking restricted to them) and uses ceil(3600 / K) prompts, so every run's labelers read 3,600
responses and the RM forwards 3,600 sequences, in 72 sequences per step (50 steps). The held-out prompts
keep all 9 responses, so every run is scored on the same pairs.
Expected (the paper's argument for K-wise ranking, section 3.5): held-out accuracy and loss improve with K,
since K responses give C(K, 2) comparisons (1 at K = 2, 36 at K = 9) for the same reading effort.
"""

import ml_collections

BUDGET = 3600  # responses ranked (and forwarded) per run


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    workdir = arg or "runs/pipeline"
    paths = {"init_from": f"{workdir}/sft"}
    config = ml_collections.ConfigDict()
    config.base = "configs/rm.py:default"
    config.runs = ml_collections.ConfigDict({
        f"k{k}": {**paths, "data": {"train": f"{workdir}/compare_k9/rm.jsonl", "k": k, "response_budget": BUDGET},
                  "train": {"batch_size": 72 // k}}
        for k in (2, 4, 6, 9)
    }, sort_keys=False)
    return config
