"""Benchmarks: tokens/s, MFU against a measured matmul peak, memory and compile time of each stage.

  instructgpt bench --config configs/bench.py:trl_tiny [--out runs/bench]
  instructgpt bench --config configs/bench.py:trl_tiny "--config.stages=('rm',)" --config.ppo.enabled=False \
      --config.real_lengths.enabled=False                    # one training step only (an A/B of a change)
  instructgpt bench --config configs/bench.py:trl_tiny --config.profile.enabled=True   # + each program's XLA ops

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
Results are printed as a table and written to <out>/bench_<name>.json. Besides tokens/s and MFU, each step row
has its floor (model FLOPs / the measured XLA matmul peak: the step's time at the peak) and `x floor` (step
time / floor = 1 / MFU); the PPO iteration has a floor for each of generate, score and update. The header
gives torch's fp32 matmul peak beside XLA's (null without torch): the limit TRL runs against.
`config.real_lengths` (trl_tiny, smoke) adds a block timing the SFT and RM steps on the embedded world's own
data (generated in a temporary folder at real_lengths.world.scale), padded vs packed as the stages lay it
out: padding share, real (non-padding) tokens/s and epoch time of each layout, and the PPO prompts' lengths
against prompt_len (instructgpt_jax/bench_lengths.py says how each figure is counted).
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
    config.stages = ("pretrain", "sft", "rm")  # a tuple, so "--config.stages=('sft', 'rm')" overrides it
    # PPO's settings are configs/ppo.py's plain PPO (ptx_coef 0) with the benchmark's shape.
    ppo_config = load_config("configs/ppo.py:ppo")
    ppo = ppo_config.ppo
    ppo.update({"epochs": 1, "minibatches": 4, "rollout_batch": 32, "max_new_tokens": 48})
    config.ppo = ml_collections.ConfigDict({"enabled": True, "prompt_len": 32, "ppo": ppo})
    # Where each program's time goes: after timing, trace `calls` more steps (PPO: iterations) with jax.profiler
    # and print the `top` XLA ops of each program with what they compute (instructgpt_jax/profiling.py);
    # the traces stay in <out>/profile_<stage> for Perfetto or TensorBoard.
    config.profile = ml_collections.ConfigDict({"enabled": False, "calls": 3, "top": 12})
    # The embedded world's own lengths, padded vs packed, in the layouts of configs/sft.py:tiny and configs/rm.py.
    world = load_config("configs/world.py:default")  # the pipeline's world; only the scale differs
    world.scale = 0.1
    sft, rm = load_config("configs/sft.py:tiny").train, load_config("configs/rm.py:default")
    config.real_lengths = ml_collections.ConfigDict({
        "enabled": True,               # the real-length block (gpt2_small and gpt2_xl turn it off)
        "world": world,                # configs/world.py, generated in a temporary folder
        "sft_seq_len": sft.seq_len,    # SFT row length, padded or packed; 0 = the longest example rounded up to 16
        "sft_batch_size": sft.batch_size,  # SFT rows per step, padded (one demonstration each) or packed
        "rm_seq_len": rm.train.seq_len,  # RM row length; 0 = the longest prompt + response rounded up to 16
        "rm_batch_size": rm.train.batch_size,  # prompts per padded RM step, each (k_max, rm_seq_len)
        "rm_packed_rows": rm.rm.packed_rows,   # rows of rm_seq_len per packed RM step
        "ppo_prompt_len": ppo_config.data.prompt_len,  # configs/ppo.py's prompt_len: the most a PPO run pads to
        "ppo_prompt_bucket": ppo_config.data.prompt_bucket,  # configs/ppo.py's: batches padded to their longest
        "ppo_rollout_batch": ppo_config.ppo.rollout_batch,  # configs/ppo.py's prompts per rollout
        "seed": 0,                     # order of the examples (the first batches of the epoch are timed)
        "steps": 5,                    # timed steps per layout (after config.warmup)
    })
    if arg == "trl_tiny":
        config.model = model_config("trl_tiny")
        config.pretrain, config.sft, config.rm = _stage(16, 128), _stage(16, 128), _stage(16, 128)
    elif arg == "gpt2_small":
        config.model = model_config("gpt2")
        config.pretrain, config.sft, config.rm = _stage(8, 128), _stage(8, 128), _stage(4, 128)
        config.steps, config.warmup = 5, 2
        config.ppo.enabled = False
        config.real_lengths.enabled = False
    elif arg == "gpt2_xl":
        config.model = model_config("gpt2-xl", dtype="bfloat16", remat=True)
        config.mesh = mesh_config((1, -1, 1))
        config.pretrain, config.sft, config.rm = _stage(32, 1024), _stage(32, 1024), _stage(16, 1024)
        config.ppo.prompt_len = 256
        config.ppo.ppo.update({"rollout_batch": 64, "max_new_tokens": 256})
        config.real_lengths.enabled = False
    elif arg == "smoke":
        config.model = model_config("nano")
        config.pretrain, config.sft, config.rm = _stage(8, 64), _stage(8, 64), _stage(8, 64)
        config.steps, config.warmup, config.peak_n = 2, 1, 256
        config.ppo.prompt_len = 16
        config.ppo.ppo.update({"rollout_batch": 16, "max_new_tokens": 8, "minibatches": 2, "ptx_coef": 0.5,
                               "ptx_batch_size": 8, "ptx_seq_len": 32})
        config.real_lengths.world.scale = 0.01
        config.real_lengths.update({"sft_batch_size": 8, "rm_batch_size": 8, "rm_packed_rows": 16, "steps": 2})
    else:
        raise ValueError(f"configs/bench.py: unknown arg {arg!r}; expected trl_tiny, gpt2_small, gpt2_xl or smoke")
    return config
