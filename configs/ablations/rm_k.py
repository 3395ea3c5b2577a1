"""Ablation: the number K of responses ranked per prompt, K in 2, 4, 6, 9, at an equal labelling budget.

  instructgpt compare --config configs/run_stage.py:W/compare --workdir W/compare_k9 --config.data.num_prompts=2048 \
      --config.compare.k_min=9 --config.compare.k_max=9 --config.compare.extra_samples=4
  python experiments/sweep.py --config configs/ablations/rm_k.py:W --workdir W/sweep_rm_k

W (after the colon; default runs/pipeline) is a pipeline workdir whose RM stage has run; the first command
has 2,048 prompts' 9 SFT samples ranked by W's labelers (W's compare stage with K = 9, as configs/compare.py:k9).
`:W,N` sets the budget to N responses instead of 3,600 (K = 2 needs N / 2 training prompts in W/compare_k9:
rank 8,192 prompts there for N = 14,000).
Each run is W/rm's config (configs/run_stage.py) on those rankings, padded per prompt (packed_rows 0) so a
step holds a fixed number of responses. It cuts every training prompt to K of its responses (the
labeler's ranking restricted to them) and uses ceil(3600 / K) prompts, so every run's labelers read 3,600
responses and the RM forwards 3,600 sequences, in 72 sequences per step (50 steps; N / 72 for a budget N).
The held-out prompts keep all 9 responses, so every run is scored on the same pairs.
Expected (the paper's argument for K-wise ranking, section 3.5): held-out accuracy and loss improve with K,
since K responses give C(K, 2) comparisons (1 at K = 2, 36 at K = 9) for the same reading effort.
Measured: docs/RESULTS.md, "The ablations on the web v5 default", "The ablations on the 3,000-step default" and "K at
an equal labelling budget".
"""

import ml_collections

BUDGET = 3600  # responses ranked (and forwarded) per run


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    workdir, _, budget = (arg or "runs/pipeline").partition(",")
    if budget and not (budget.isdigit() and int(budget) >= 72):
        raise ValueError(f"configs/ablations/rm_k.py: budget {budget!r} after the comma; expected an integer >= 72 "
                         "(responses per run)")
    budget = int(budget or BUDGET)
    config = ml_collections.ConfigDict()
    config.base = f"configs/run_stage.py:{workdir}/rm"
    config.runs = ml_collections.ConfigDict({
        f"k{k}": {"data": {"train": f"{workdir}/compare_k9/rm.jsonl", "k": k, "response_budget": budget},
                  "rm": {"packed_rows": 0}, "train": {"batch_size": 72 // k, "epochs": 1.0, "eval_every": 25,
                                                      "checkpoint_every": 25}}
        for k in (2, 4, 6, 9)
    }, sort_keys=False)
    return config
