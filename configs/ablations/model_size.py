"""Ablation: model size, the paper's x-axis (Ouyang et al. 2022 train 1.3B, 6B and 175B policies).

  python experiments/sweep.py --config configs/ablations/model_size.py --workdir runs/sweep_size
  python experiments/sweep.py --config configs/ablations/model_size.py --workdir runs/sweep_size --dry_run

Three full pipelines (configs/pipeline.py:default) that differ only in `config.model`, the preset of every stage:
nano-world-rope-smear (2 layers, d 64, 0.23M parameters), tiny-world-rope-smear (4 layers, d 128, 1.1M; the
default's) and small_cpu-world-rope-smear (6 layers, d 192, 3.1M), the default's attention (rotary positions,
smeared keys) and world tokenizer at each size; the world stage is shared (linked from the first run). The sweeps
measured in RESULTS before 2026-12-07 ran the learned-position presets (nano-world, tiny-world, small_cpu-world) of
the default then. Each run is a default pipeline at its size, so nano runs faster and small_cpu slower than the tiny
default (its wall time: docs/RESULTS.md).
Expected, as in the paper: the gold score of every policy rises with size, and at every size PPO-ptx beats
its SFT in labeler win rate and gold. Win rates are against each size's own SFT, so compare gold across rows.
Give every size the same learning rates and steps; a fairer sweep would tune both per size. The paper's headline
across sizes (its 1.3B PPO-ptx preferred to the 175B model): `python experiments/head_to_head.py
W/tiny:ppo_ptx W/small_cpu:sft` (run with one --config.seed, so both saw the same world and eval prompts).
Measured on the current default at nano against tiny (`--runs nano`, then head_to_head against the default's W):
docs/RESULTS.md, "1 vs 3 rounds and the size analogue on the 16,384 default"; on the default of 2026-12-06, tiny
against small_cpu: "The ablations on the 3,000-step default" (the small_cpu SFT taken from an rm_size run, whose
rm_pretrain and rm_sft are the same stages).
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.base = "configs/pipeline.py:" + (arg or "default")
    config.runs = ml_collections.ConfigDict(
        {name: {"model": f"{name}-world-rope-smear"} for name in ("nano", "tiny", "small_cpu")}, sort_keys=False)
    return config
