"""Comparison data: K samples per RM prompt from the SFT policy, ranked by the world's simulated labelers.

  instructgpt compare --config configs/compare.py --workdir W/compare \
      --config.policy=W/sft --config.data.prompts=W/world/rm_prompts.jsonl

Args: `default` (the first 1,024 RM prompts, K uniform in 4..9 per prompt, K + 2 temperature-1 samples of which the
first K distinct are ranked), `smoke` (64 prompts: a pulse), `k9` (K = 9 for every prompt
and 2,048 prompts: the data of the rm_k ablation, which cuts it to K = 2..9 at equal labelling budget).
Writes W/compare/rm.jsonl (K-wise RM JSONL) and metrics.jsonl with compare/labeler_agreement (share of a
labeler's untied pairs a second labeler orders the same way: the ceiling for rm/accuracy; the world's labeler
noise is calibrated on such samples to the paper's 72.6%, and the measured figure is in docs/RESULTS.md),
compare/distinct_fraction (share of distinct samples) and compare/gold_score.
The labelers come from world.json beside the prompts file (or --config.world=PATH).
"""

import ml_collections

from instructgpt_jax.config_base import mesh_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or "default"
    config = ml_collections.ConfigDict()
    config.stage = "compare"  # the command that runs this config (experiments/sweep.py reads it)
    config.policy = ""                 # SFT stage folder, e.g. W/sft
    config.world = ""                  # world.json; "" = the one beside data.prompts
    config.mix_policy = ""             # a second policy folder (e.g. W/sft) that samples mix_fraction of the rows
    config.data = ml_collections.ConfigDict({
        "prompts": "",                 # prompt JSONL ({"prompt"} per line), e.g. W/world/rm_prompts.jsonl
        "num_prompts": 1024,           # prompts ranked (beyond the file: an error); 0 = all after first_prompt
        "first_prompt": 0,             # prompts of the file skipped (later RLHF rounds label fresh prompts)
        "max_prompt_tokens": 128,      # longer prompts: an error, or truncated (overflow)
        "overflow": "error",           # "error" or "truncate" from the left (logged)
    })
    config.mesh = mesh_config()
    config.compare = ml_collections.ConfigDict({
        "k_min": 4, "k_max": 9,        # K per prompt, uniform in k_min..k_max (equal: fixed K)
        "extra_samples": 2,            # K + extra samples per prompt; the first K distinct are ranked
        "max_new_tokens": 48,          # most tokens per sample
        "temperature": 1.0,            # sampling temperature
        "top_k": 0,                    # sample among the k likeliest tokens; 0 = all
        "top_p": 1.0,                  # nucleus sampling mass; 1 = all
        "batch_rows": 32,              # samples per sampling call (32 is fastest on 2 CPU cores)
        # > 0: each sampling call takes prompts of one length bucket (rounded up to this many tokens), left-padded
        # to it, one compile per bucket: 1.2x the samples/s on the default's RM prompts (docs/RESULTS.md,
        # "Speed"); 0: every call padded to the longest prompt, one compile (the smoke run's few samples).
        "prompt_bucket": 16,
        "mix_fraction": 0.0,           # share of sample rows from config.mix_policy
        "seed": 0,                     # K per prompt, sampling keys, labeler draws
    })
    if arg == "smoke":
        config.data.num_prompts = 64
        config.compare.prompt_bucket = 0
    elif arg == "k9":
        config.data.num_prompts = 2048
        config.compare.k_min = config.compare.k_max = 9
        config.compare.extra_samples = 4
    elif arg != "default":
        raise ValueError(f"configs/compare.py: unknown arg {arg!r}; expected default, smoke or k9")
    return config
