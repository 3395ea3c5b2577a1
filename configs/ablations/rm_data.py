"""Ablation: reward-model accuracy against the number of ranked prompts (a data-scaling curve).

  python experiments/sweep.py --config configs/ablations/rm_data.py:W --workdir W/sweep_rm_data

W (after the colon; default runs/pipeline) is a pipeline workdir whose RM stage has run. Each run is W/rm's
config (configs/run_stage.py: from W/sft, with its epochs, packed rows and seed) on the first N of
W/compare/rm.jsonl's training prompts, N in 256, 512, 1,024, 2,048, 4,096, 8,192 and all of
them (the default's 16,384 compared prompts hold ~14,100 training prompts; on a smaller file the 8,192 run is
the last run again), and is scored on the same held-out prompts (the val split
does not depend on N). The model and tokenizer are W/sft's. The sweep table's rm/accuracy (agreement with the
labelers on held-out pairs) and rm/gold_accuracy against N is the curve; measured curves: docs/RESULTS.md,
"Comparisons on 16,384 prompts", "The ablations on the web v5 default", "The ablations on the 3,000-step default"
and the earlier "RM accuracy against the number of comparisons" subsections. The largest run is the pipeline's RM
stage again, and reproduces it to the digit.
"""

import ml_collections

SIZES = (256, 512, 1024, 2048, 4096, 8192, 0)   # 0: every training prompt


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    workdir = arg or "runs/pipeline"
    config = ml_collections.ConfigDict()
    config.base = f"configs/run_stage.py:{workdir}/rm"  # W's RM stage as it ran: its data, epochs, layout, seed
    config.runs = ml_collections.ConfigDict({
        f"prompts_{n or 'all'}": {"data": {"max_prompts": n}, "train": {"eval_every": 250, "checkpoint_every": 250}}
        for n in SIZES
    }, sort_keys=False)
    return config
