"""GPT-2 XL (1.56B: 48 layers, d 1600, 25 heads) through the whole InstructGPT pipeline on a TPU pod slice.

  # once: OpenAI's GPT-2 XL weights (a local Hugging Face folder) become the finished pretrain stage
  experiments/tpu_pod.sh run import-hf --hf_dir /gcs/hf/gpt2-xl --workdir /gcs/runs/xl/pretrain
  experiments/tpu_pod.sh run pipeline --config configs/pods/gpt2_xl.py:v4-32 --workdir /gcs/runs/xl
  python experiments/pod_check.py --config configs/pods/gpt2_xl.py:v4-32     # per-chip memory, no TPU needed

Args (the slice): v4-32 (16 chips x 32 GiB, mesh 1 x 16 x 1), v5litepod-16 (16 x 16 GiB, 1 x 16 x 1),
v5p-32 (16 x 95 GiB, 1 x 16 x 1). 25 heads do not split over a power-of-two tensor axis, so the model is
sharded by FSDP alone (every weight's embedding dimension over 16 chips). The pipeline finds the imported
pretrain checkpoint finished and starts at SFT. Not run here (no TPU in this project's CI); pod_check's
per-chip memory: docs/SCALING.md, "Pod configs".
"""

import ml_collections

from instructgpt_jax.config_base import load_config

MESHES = {"v4-32": "1,16,1", "v5litepod-16": "1,16,1", "v5p-32": "1,16,1"}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or "v4-32"
    if arg not in MESHES:
        raise ValueError(f"configs/pods/gpt2_xl.py: unknown slice {arg!r}; expected one of {sorted(MESHES)}")
    config = load_config(f"configs/pods/common.py:gpt2-xl,{arg},{MESHES[arg]}")
    config.pretrain.train.seq_len = 1023  # GPT-2's context is 1024 positions
    config.pretrain.optim.lr = 1e-4
    return config
