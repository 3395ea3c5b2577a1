"""SFT (InstructGPT stage 1): fine-tune the pretrained GPT on demonstrations, response tokens only.

  instructgpt sft --config configs/sft.py:tiny --workdir W/sft \
      --config.init_from=W/pretrain --config.data.train=W/world/sft.jsonl

Args: `tiny` (default; the `tiny` preset, packed rows of 128 bytes, 12 epochs; configs/pipeline.py:default
sets its own epochs over the world at scale 0.5; its wall time, losses and gold scores, and the step at which
the model learns to copy words from the prompt: docs/RESULTS.md), `smoke`
(the `nano` preset, 30 steps: a pulse, not a model), `gpt2` (124M, paper settings: 16 epochs,
dropout 0.2, for a GPU/TPU host). The paper: 16 epochs, cosine decay, residual dropout 0.2, checkpoint
chosen by RM score; we log sft/val_loss and sft/gold_score (greedy) / sft/gold_score_t1 (temperature 1) on
held-out prompts every eval interval, and the base model's figures at step 0.
`config.train.steps = 0` derives the steps from `epochs`; `seq_len = 0` fits the longest example.
The model's size and tokenizer come from init_from's checkpoint (model.preset and data.tokenizer are only
checked against it when given on the command line); config.model sets the numerics (dropout, dtype, remat).
"""

import ml_collections

from instructgpt_jax.config_base import mesh_config, model_config, optim_config, train_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or "tiny"
    config = ml_collections.ConfigDict()
    config.stage = "sft"  # the command that runs this config (experiments/sweep.py reads it)
    config.init_from = ""              # pretraining stage folder, e.g. W/pretrain: gives the model size and tokenizer
    config.data = ml_collections.ConfigDict({
        "train": "", "val": "",        # SFT JSONL; no val file = hold out val_fraction of train
        "val_fraction": 0.05,          # share of data.train held out for validation (when data.val is "")
        "tokenizer": "byte",           # "byte" or "gpt2"; init_from's checkpoint names its own
        "max_prompt_tokens": 128,      # longer prompts: an error, or truncated (overflow)
        "max_response_tokens": 64,     # longer responses: an error, or truncated (overflow)
        "overflow": "error",           # "error" or "truncate" (prompts from the left, responses from the right; logged)
    })
    config.mesh = mesh_config()
    config.eval = ml_collections.ConfigDict({
        "gold_judge": "world",         # "" for data without the embedded world's judge
        "prompts": "",                 # PPO-format JSONL of held-out prompts; "" = the validation prompts
        "num_prompts": 64,             # held-out prompts sampled per evaluation (gold score)
        "batch_size": 64,              # prompts per sampling call
        "max_new_tokens": 64,          # most tokens per sampled response
        "seed": 0,                     # sampling keys (the same at every evaluation)
        "val_batches": 8,              # validation batches of the val loss
        "base": True,                  # evaluate the pretrained params too, as step 0
    })
    if arg == "smoke":
        config.model = model_config("nano", dropout=0.1)
        config.optim = optim_config(lr=2e-3, warmup_steps=5, weight_decay=0.0)
        config.train = train_config(steps=30, batch_size=16, seq_len=0,
                                    epochs=1.0,    # passes over the demonstrations when steps = 0
                                    packing=True,  # several demonstrations per row, each attending to itself only
                                    # rows packed greedily in order; N > 0: best-fit within windows of N demonstrations
                                    # (fuller rows, fewer steps an epoch: docs/RESULTS.md, "SFT rows packed best-fit")
                                    pack_window=0,
                                    log_every=10, eval_every=30, checkpoint_every=30)
        config.eval.num_prompts = 16
        config.eval.batch_size = 16
        config.eval.val_batches = 2
    elif arg == "tiny":
        config.model = model_config("tiny", dropout=0.1)
        config.optim = optim_config(lr=3e-3, warmup_steps=20, weight_decay=0.0)
        config.train = train_config(steps=0, batch_size=16, seq_len=128, epochs=12.0, packing=True, pack_window=0,
                                    log_every=20, eval_every=200, checkpoint_every=200)
    elif arg == "gpt2":
        config.model = model_config("gpt2", dropout=0.2, dtype="bfloat16")
        config.data.tokenizer = "gpt2"
        config.optim = optim_config(lr=1e-5, warmup_steps=50, weight_decay=0.0)
        config.train = train_config(steps=0, batch_size=32, seq_len=0, epochs=16.0, packing=False,
                                    eval_every=500, checkpoint_every=500)
    else:
        raise ValueError(f"configs/sft.py: unknown arg {arg!r}; expected smoke, tiny or gpt2")
    return config
