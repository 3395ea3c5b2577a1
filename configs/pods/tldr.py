"""TL;DR summarisation with Pythia 1B / 2.8B / 6.9B (SFT -> RM -> PPO), the reference reproduction's study
(Huang et al. 2024; hyperparameters and their sources in configs/pods/benchmark.py), on a TPU slice or a GPU host.

  # on a machine with internet: the data (docs/SCALING.md) and the weights, then on the slice:
  instructgpt import-hf --hf_dir /gcs/hf/pythia-1b-deduped --workdir /gcs/runs/tldr-1b/pretrain
  experiments/tpu_pod.sh run sft --config configs/pods/tldr.py:sft,pythia-1b,v4-32 --workdir /gcs/runs/tldr-1b/sft \
      --config.init_from=/gcs/runs/tldr-1b/pretrain
  experiments/tpu_pod.sh run rm --config configs/pods/tldr.py:rm,pythia-1b,v4-32 --workdir /gcs/runs/tldr-1b/rm \
      --config.init_from=/gcs/runs/tldr-1b/sft
  experiments/tpu_pod.sh run ppo --config configs/pods/tldr.py:ppo,pythia-1b,v4-32 --workdir /gcs/runs/tldr-1b/ppo \
      --config.init_policy=/gcs/runs/tldr-1b/sft --config.init_value=/gcs/runs/tldr-1b/rm \
      --config.reward_model=/gcs/runs/tldr-1b/rm
  python experiments/pod_check.py --config configs/pods/tldr.py:all,pythia-1b,v4-32   # per-chip memory, no TPU

Args: <stage>,<model>,<slice>; stage sft | rm | ppo | all (the three, for pod_check); model pythia-1b,
pythia-2.8b or pythia-6.9b; slice one of MESHES[model] (mesh data x fsdp x tensor; on the GPU host run the
same `instructgpt <stage>` commands without tpu_pod.sh). The model's size and tokenizer come from
init_from's checkpoint (the imported folder's tokenizer.json). pod_check's GiB per chip for each stage and
slice: docs/SCALING.md, "Benchmarks". PPO dominates: 512 episodes of 565 tokens in one minibatch (the
reference's nminibatches 1; the loop has no gradient accumulation), so 2.8B and 6.9B do not fit one
8 x 80 GiB host. The reference reports RM validation accuracy and win rates
against the reference summaries rising with model size; nothing here has run on an accelerator.
"""

import ml_collections

from instructgpt_jax.config_base import load_config

MESHES = {
    "pythia-1b": {"v4-32": "1,16,1", "v5p-16": "1,8,1", "gpu-8xh100": "1,8,1"},
    "pythia-2.8b": {"v4-64": "1,32,1", "v5p-32": "1,16,1"},
    "pythia-6.9b": {"v4-128": "1,32,2", "v5p-64": "1,32,1"},
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    stage, model, slice_name = (arg or "all,pythia-1b,v4-32").split(",")
    if model not in MESHES or slice_name not in MESHES[model]:
        raise ValueError(f"configs/pods/tldr.py: unknown model/slice {model!r}/{slice_name!r}; expected one of "
                         f"{ {m: sorted(s) for m, s in MESHES.items()} }")
    return load_config(f"configs/pods/benchmark.py:{stage},tldr,{model},{slice_name},{MESHES[model][slice_name]}")
