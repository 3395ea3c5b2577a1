"""Ablation: the reward model's learning rate, epochs and starting point, on a finished pipeline's comparisons.

  python experiments/sweep.py --config configs/ablations/rm_optim.py:W --workdir W/sweep_rm_optim
  python experiments/rm_probe.py --workdir W --n 16 --prompts 256 --max_new_tokens 24 --dump W/probe.jsonl
  python experiments/rm_probe.py --workdir W --samples W/probe.jsonl --rm W/sweep_rm_optim/<run>

W (after the colon; default runs/pipeline) is a pipeline workdir whose RM stage has run. Each run is W/rm's
config (configs/run_stage.py: its data, layout and seed, so every run holds out the same prompts) with the
keys below set: learning rates 1e-4 to 3e-3 at two epochs, one to three epochs, and the paper's choice of
starting the RM from SFT against starting it from the base model (`from_base`, to read against
`lr_1e-3_ep2`). The sweep table's rm/accuracy (agreement with the labelers on held-out pairs),
rm/gold_accuracy and rm/val_loss compare them; rm_probe's best-of-n on the same SFT samples shows what each
RM's ranking is worth. `lr_3e-4_ep3` is the pipeline default's RM since 2026-12-05, `lr_1e-3_ep2` the one
before (measured figures: docs/RESULTS.md, "The RM's learning rate and epochs on web v2").
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    workdir = arg or "runs/pipeline"
    config = ml_collections.ConfigDict()
    config.base = f"configs/run_stage.py:{workdir}/rm"  # W's RM stage as it ran: its data, layout and seed
    config.runs = ml_collections.ConfigDict({
        "lr_1e-3_ep2": {"optim": {"lr": 1e-3}, "train": {"epochs": 2.0}},
        "lr_3e-3_ep2": {"optim": {"lr": 3e-3}, "train": {"epochs": 2.0}},
        "lr_3e-4_ep2": {"optim": {"lr": 3e-4}, "train": {"epochs": 2.0}},
        "lr_1e-4_ep2": {"optim": {"lr": 1e-4}, "train": {"epochs": 2.0}},
        "lr_1e-3_ep1": {"optim": {"lr": 1e-3}, "train": {"epochs": 1.0}},
        "lr_3e-4_ep3": {"optim": {"lr": 3e-4}, "train": {"epochs": 3.0}},
        "from_base": {"optim": {"lr": 1e-3}, "train": {"epochs": 2.0}, "init_from": f"{workdir}/pretrain"},
    }, sort_keys=False)
    return config
