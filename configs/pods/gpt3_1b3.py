"""GPT-3 XL / InstructGPT 1.3B (24 layers, d 2048, 16 heads) through the whole pipeline on a TPU pod slice.

  experiments/tpu_pod.sh run pipeline --config configs/pods/gpt3_1b3.py:v4-64 --workdir /gcs/runs/1b3
  python experiments/pod_check.py --config configs/pods/gpt3_1b3.py:v4-64     # per-chip memory, no TPU needed

Args (the slice): v4-64 (32 chips x 32 GiB, mesh 1 x 16 x 2: FSDP over 16, heads and MLP over 2),
v5litepod-32 (32 x 16 GiB, 2 x 16 x 1), v5p-32 (16 x 95 GiB, 1 x 16 x 1). No public GPT-3 weights exist, so
the pipeline pretrains on WikiText-103 (TFDS) first; 100k steps of 256 x 2047 tokens is a small fraction of
GPT-3's 300B tokens: a base model to study the recipe with, not GPT-3. Paper settings: SFT lr 9.65e-6 with
dropout 0.2 for 16 epochs, RM one epoch, PPO lr 9.65e-6, beta 0.02, ptx_coef as configs/ppo.py.
Not run here (no TPU in this project's CI); pod_check gives the per-chip memory of each stage
(docs/SCALING.md, "Pod configs").
"""

import ml_collections

from instructgpt_jax.config_base import load_config

MESHES = {"v4-64": "1,16,2", "v5litepod-32": "2,16,1", "v5p-32": "1,16,1"}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or "v4-64"
    if arg not in MESHES:
        raise ValueError(f"configs/pods/gpt3_1b3.py: unknown slice {arg!r}; expected one of {sorted(MESHES)}")
    return load_config(f"configs/pods/common.py:instructgpt-1.3b,{arg},{MESHES[arg]}")
