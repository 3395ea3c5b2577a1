"""Benchmarks: tokens/s, MFU against a measured matmul peak, memory and compile time of each stage.

  instructgpt bench --config configs/bench.py:trl_tiny [--out runs/bench]

Args:
  trl_tiny    the Hugging Face TRL comparison (GPT-2 n_layer 4, n_head 4, n_embd 256, n_positions 256,
              vocab 8192, fp32): pretrain/SFT batch 16 x 128 tokens, RM 16 pairs x 128, PPO 32 prompts x 32
              prompt tokens + 48 new tokens, 1 epoch, 4 minibatches. Ours and TRL's measured figures:
              docs/RESULTS.md, "Figures moved from docstrings".
  gpt2_small  GPT-2 124M (12 layers, d 768), fp32, batch 8 x 128: the MFU figure (target >= 50% of the
              measured matmul peak).
  gpt2_xl     GPT-2 XL 1.5B, bf16 compute, remat, FSDP over all devices: for a GPU/TPU host (fp32 Adam
              state alone is 18 GB).
  smoke       nano model, 2 timed steps: exercises every code path (tests use it).
Results are printed as a table and written to <out>/bench_<name>.json.
"""

import ml_collections

from instructgpt_jax.config_base import load_config, mesh_config, model_config, optim_config


def _stage(batch_size: int, seq_len: int) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"batch_size": batch_size, "seq_len": seq_len})


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or "trl_tiny"
    config = ml_collections.ConfigDict()
    config.name = arg
    config.mesh = mesh_config()
    config.optim = optim_config(lr=1e-4)
    config.warmup = 3
    config.steps = 10
    config.peak_n = 1024
    config.stages = ["pretrain", "sft", "rm"]
    # PPO's settings are configs/ppo.py's plain PPO (ptx_coef 0) with the benchmark's shape.
    ppo = load_config("configs/ppo.py:ppo").ppo
    ppo.update({"epochs": 1, "minibatches": 4, "rollout_batch": 32, "max_new_tokens": 48})
    config.ppo = ml_collections.ConfigDict({"enabled": True, "prompt_len": 32, "ppo": ppo})
    if arg == "trl_tiny":
        config.model = model_config("trl_tiny")
        config.pretrain, config.sft, config.rm = _stage(16, 128), _stage(16, 128), _stage(16, 128)
    elif arg == "gpt2_small":
        config.model = model_config("gpt2")
        config.pretrain, config.sft, config.rm = _stage(8, 128), _stage(8, 128), _stage(4, 128)
        config.steps, config.warmup = 5, 2
        config.ppo.enabled = False
    elif arg == "gpt2_xl":
        config.model = model_config("gpt2-xl", dtype="bfloat16", remat=True)
        config.mesh = mesh_config((1, -1, 1))
        config.pretrain, config.sft, config.rm = _stage(32, 1024), _stage(32, 1024), _stage(16, 1024)
        config.ppo.prompt_len = 256
        config.ppo.ppo.update({"rollout_batch": 64, "max_new_tokens": 256})
    elif arg == "smoke":
        config.model = model_config("nano")
        config.pretrain, config.sft, config.rm = _stage(8, 64), _stage(8, 64), _stage(8, 64)
        config.steps, config.warmup, config.peak_n = 2, 1, 256
        config.ppo.prompt_len = 16
        config.ppo.ppo.update({"rollout_batch": 16, "max_new_tokens": 8, "minibatches": 2, "ptx_coef": 0.5,
                               "ptx_batch_size": 8, "ptx_seq_len": 32})
    else:
        raise ValueError(f"configs/bench.py: unknown arg {arg!r}; expected trl_tiny, gpt2_small, gpt2_xl or smoke")
    return config
