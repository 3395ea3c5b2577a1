"""Ablation: reward-model accuracy against the number of ranked prompts (a data-scaling curve).

  python experiments/sweep.py --config configs/ablations/rm_data.py:W --workdir W/sweep_rm_data

W (after the colon; default runs/pipeline) is a pipeline workdir whose compare stage is done. Each run
trains the RM of the pipeline (configs/rm.py:default with `pipeline :default`'s epochs and packed rows) from
W/sft on the first N of W/compare/rm.jsonl's training prompts, N in 256, 512, 1,024, 2,048, 4,096 and all of
them (7,206 in the default run of docs/RESULTS.md), and is scored on the same held-out prompts (the val split
does not depend on N). The model and tokenizer are W/sft's. The sweep table's rm/accuracy (agreement with the
labelers on held-out pairs) and rm/gold_accuracy against N is the curve; measured figures are in
docs/RESULTS.md. The largest run is the pipeline's RM stage.
"""

import ml_collections

from instructgpt_jax.config_base import load_config

SIZES = (256, 512, 1024, 2048, 4096, 0)   # 0: every training prompt


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    workdir = arg or "runs/pipeline"
    rm = load_config("configs/pipeline.py:default").rm  # the pipeline's RM: its epochs and packed rows
    config = ml_collections.ConfigDict()
    config.base = "configs/rm.py:default"
    config.runs = ml_collections.ConfigDict({
        f"prompts_{n or 'all'}": {"init_from": f"{workdir}/sft", "data": {"train": f"{workdir}/compare/rm.jsonl",
                                  "max_prompts": n, "overflow": "truncate"},
                                  "train": {"epochs": rm.train.epochs, "eval_every": 250, "checkpoint_every": 250},
                                  "rm": {"packed_rows": rm.rm.packed_rows}}
        for n in SIZES
    }, sort_keys=False)
    return config
