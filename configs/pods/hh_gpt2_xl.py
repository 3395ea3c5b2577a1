"""Anthropic HH-RLHF with GPT-2 XL (1.56B): SFT on the chosen dialogues' last turns -> RM on the pairs -> PPO on
the prompts, with the reference TL;DR recipe's optimiser and PPO settings (configs/pods/benchmark.py; no
published recipe runs PPO on HH with GPT-2 XL) and HH's lengths: 512-token dialogues cut from the left,
128-token responses.

  instructgpt import-hf --hf_dir /gcs/hf/gpt2-xl --workdir /gcs/runs/hh-xl/pretrain
  experiments/tpu_pod.sh run sft --config configs/pods/hh_gpt2_xl.py:sft,v4-64 --workdir /gcs/runs/hh-xl/sft \
      --config.init_from=/gcs/runs/hh-xl/pretrain
  (rm and ppo as in configs/pods/tldr.py)
  python experiments/pod_check.py --config configs/pods/hh_gpt2_xl.py:all,v4-64

Args: <stage>,<slice>; stage sft | rm | ppo | all; slice v4-64 (1x32x1) or v5p-32 (1x16x1). 25 heads do not
split over a power-of-two tensor axis: FSDP alone. PPO's 512 episodes in one minibatch (the reference's
nminibatches 1; the loop has no gradient accumulation) dominate the per-chip memory (pod_check: docs/SCALING.md,
"Benchmarks"). GPT-2's BPE adds its own
"\\n\\nResponse:\\n" separator after the prompt (tokenizer.py), so prompts read "...\\n\\nAssistant:\\n\\nResponse:\\n".
"""

import ml_collections

from instructgpt_jax.config_base import load_config

MESHES = {"v4-64": "1,32,1", "v5p-32": "1,16,1"}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    stage, slice_name = (arg or "all,v4-64").split(",")
    if slice_name not in MESHES:
        raise ValueError(f"configs/pods/hh_gpt2_xl.py: unknown slice {slice_name!r}; expected one of {sorted(MESHES)}")
    config = load_config(f"configs/pods/benchmark.py:{stage},hh,gpt2-xl,{slice_name},{MESHES[slice_name]}")
    for section in (config.sft, config.rm, config.ppo) if stage == "all" else (config,):
        section.data.tokenizer = "gpt2"
    return config
