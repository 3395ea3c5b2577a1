"""Ablation: K-wise batching (all C(K,2) pairs of a prompt in one batch element, each response forwarded
once) against the same pairs shuffled into independent examples (what TRL and OpenRLHF do).

  python experiments/sweep.py --config configs/ablations/rm_batching.py:W --workdir W/sweep_rm_batching

W (after the colon; default runs/pipeline) is a pipeline workdir whose RM stage has run. Runs, each W/rm's
config (configs/run_stage.py: from W/sft on W/compare/rm.jsonl) with: `kwise` (the paper, 1 epoch),
`pairs_shuffled` (1 epoch over the pairs, 64 pairs = 128 sequences per step), and `kwise_2ep` (2 epochs, the
paper's overfitting after one, as the pipeline default's RM), each on W's first PROMPTS training prompts.
kwise_2ep costs twice kwise, and pairs_shuffled forwards each response K-1 times instead of once. Compare
rm/val_loss and rm/accuracy (held out) with rm/train_eval_loss (the same number of training prompts): the gap
train_eval_loss < val_loss is the overfitting. The paper (section 3.5) expects the shuffled pairs to overfit
within one epoch: a lower training loss, a higher held-out loss. Measured: docs/RESULTS.md, "The ablations on the
web v5 default", "The ablations on the 3,000-step default" and the earlier "K-wise vs shuffled pairs" subsections.
"""

import ml_collections

# Training prompts of every run (the first N of W/compare/rm.jsonl; the held-out ones are all of W's): the
# shuffled pairs of the default's ~7,200 prompts are ~150k pairs, hours of CPU; the RM's held-out accuracy at
# 1,024 prompts is 0.015 below that at 7,206 (docs/RESULTS.md, "RM accuracy against the number of comparisons").
PROMPTS = 1024


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    workdir = arg or "runs/pipeline"
    config = ml_collections.ConfigDict()
    config.base = f"configs/run_stage.py:{workdir}/rm"
    config.runs = ml_collections.ConfigDict({
        "kwise": {"rm": {"pairs_shuffled": False}, "train": {"epochs": 1.0}, "data": {"max_prompts": PROMPTS}},
        "pairs_shuffled": {"rm": {"pairs_shuffled": True, "pair_batch_size": 64, "packed_rows": 0},
                           "train": {"epochs": 1.0}, "data": {"max_prompts": PROMPTS}},
        "kwise_2ep": {"rm": {"pairs_shuffled": False}, "train": {"epochs": 2.0}, "data": {"max_prompts": PROMPTS}},
    }, sort_keys=False)
    return config
