"""Ablation: reward-model accuracy against the number of ranked prompts (a data-scaling curve).

  python experiments/sweep.py --config configs/ablations/rm_data.py:W --workdir W/sweep_rm_data

W (after the colon; default runs/pipeline) is a pipeline workdir whose compare stage is done. Each run
trains the RM of the pipeline (configs/rm.py:default with the pipeline's two epochs) from W/sft on the
first N of W/compare/rm.jsonl's training prompts, N in 256, 512, 1,024, 2,048, 4,096 and all of them (7,370
in the default), and is scored on
the same held-out prompts (the val split does not depend on N). The sweep table's rm/accuracy (agreement
with the labelers on held-out pairs) and rm/gold_accuracy against N is the curve; measured figures are in
docs/RESULTS.md. The largest run is the pipeline's RM stage.
"""

import ml_collections

SIZES = (256, 512, 1024, 2048, 4096, 0)   # 0: every training prompt


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    workdir = arg or "runs/pipeline"
    config = ml_collections.ConfigDict()
    config.base = "configs/rm.py:default"
    config.runs = ml_collections.ConfigDict({
        f"prompts_{n or 'all'}": {"init_from": f"{workdir}/sft", "data": {"train": f"{workdir}/compare/rm.jsonl",
                                  "max_prompts": n, "overflow": "truncate"},
                                  "train": {"epochs": 2.0, "eval_every": 250, "checkpoint_every": 250}}
        for n in SIZES
    }, sort_keys=False)
    return config
