"""GPT-3 6.7B / InstructGPT "6B" (32 layers, d 4096, 32 heads) through the whole pipeline on a TPU pod slice.

  experiments/tpu_pod.sh run pipeline --config configs/pods/gpt3_6b7.py:v4-128 --workdir /gcs/runs/6b7
  experiments/tpu_pod.sh run pipeline --config configs/pods/gpt3_6b7.py:v4-128 --config.stages=ppo_ptx,eval,report ...
  python experiments/pod_check.py --config configs/pods/gpt3_6b7.py:v4-128    # per-chip memory, no TPU needed

Args (the slice): v4-128 (64 chips x 32 GiB, mesh 1 x 16 x 4: FSDP over 16, Megatron-style tensor
parallelism over 4), v5litepod-64 (64 x 16 GiB, 1 x 16 x 4), v5p-64 (32 x 95 GiB, 1 x 32 x 1). PPO holds
four 6.7B models (policy and value trained, SFT reference and RM frozen in bfloat16), which fit a v5e chip's
16 GiB only with the 64-way split (pod_check's per-chip memory: docs/SCALING.md, "Pod configs").
Pretraining as gpt3_1b3.py. Not run here (no TPU in this project's CI).
"""

import ml_collections

from instructgpt_jax.config_base import load_config

MESHES = {"v4-128": "1,16,4", "v5litepod-64": "1,16,4", "v5p-64": "1,32,1"}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or "v4-128"
    if arg not in MESHES:
        raise ValueError(f"configs/pods/gpt3_6b7.py: unknown slice {arg!r}; expected one of {sorted(MESHES)}")
    return load_config(f"configs/pods/common.py:instructgpt-6b,{arg},{MESHES[arg]}")
