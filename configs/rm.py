"""Reward model (InstructGPT stage 2): the SFT network with a scalar head, trained on K-wise rankings.

  instructgpt rm --config configs/rm.py --workdir W/rm \
      --config.init_from=W/sft --config.data.train=W/compare/rm.jsonl

Args: `default` (the `tiny` preset, one epoch of 16 prompts x K <= 9 responses per step over the compare
stage's ranked prompts, `data.val_fraction` of them held out; wall time and accuracies: docs/RESULTS.md),
`smoke` (the `nano` preset, 10 steps: a pulse),
`gpt2` (124M, for a GPU/TPU host). Eq. 1 of the paper: all C(K,2) pairs of a prompt in one batch element,
each response forwarded once, one epoch (the paper's RM overfits after one). Metrics: rm/loss (training
batches), rm/val_loss and rm/accuracy (held-out prompts), rm/gold_accuracy (agreement with the gold judge),
rm/label_gold_accuracy (the labels' own), rm/length_corr (vs rm/gold_length_corr), rm/train_eval_loss
(the same number of training prompts: the overfitting gap). After training, reward_norm.json holds the bias
(norm.gain: and gain) that gives the SFT samples of data.train (or norm.data's SFT JSONL) mean 0 (std 1).
Ablations: configs/ablations/rm_batching.py (K-wise vs shuffled pairs), configs/ablations/rm_k.py.
The model's size and tokenizer are init_from's (its checkpoint says them), with a new scalar head.
"""

import ml_collections

from instructgpt_jax.config_base import mesh_config, model_config, optim_config, train_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or "default"
    config = ml_collections.ConfigDict()
    config.stage = "rm"  # the command that runs this config (experiments/sweep.py reads it)
    config.init_from = ""              # SFT stage folder, e.g. W/sft: gives the model size and tokenizer
    config.data = ml_collections.ConfigDict({
        "train": "", "val": "",        # K-wise (or pairwise) RM JSONL; no val file = hold out val_fraction
        "val_fraction": 0.1,           # share of the prompts held out (when data.val is "")
        "tokenizer": "byte",           # "byte" or "gpt2"; init_from's checkpoint names its own
        "k_max": 9,                    # most responses per prompt
        "max_prompt_tokens": 128,      # longer prompts: an error, or truncated (overflow)
        "max_response_tokens": 64,     # longer responses: an error, or truncated (overflow)
        "overflow": "error",           # "error" or "truncate" (logged)
        "k": 0,                        # > 0: cut every training prompt to k random responses (rm_k ablation)
        "response_budget": 0,          # > 0 (with k): train on ceil(budget / k) prompts: equal labelling effort
        "max_prompts": 0,              # > 0: train on the first max_prompts prompts only (data-scaling curve)
    })
    config.rm = ml_collections.ConfigDict({
        "pairs_shuffled": False,       # True: every pair its own example, shuffled (TRL / OpenRLHF)
        "pair_batch_size": 64,         # pairs per step when pairs_shuffled
        # > 0: pack each response (prompt + response) as a segment of rows of seq_len tokens; a step takes
        # whole prompts until this many rows are full (train.batch_size unused). 0: (batch_size, k_max,
        # seq_len) batches, every prompt padded to k_max responses and every response to seq_len.
        "packed_rows": 0,
        # With packed_rows: a prompt's K responses follow one copy of the prompt in a row, each attending to
        # the prompt and itself only (data/packing.lay_row): the same scores and gradients from about half the
        # tokens (docs/RESULTS.md, "Speed"). False: every response repeats its prompt (the pairs of TRL).
        "share_prompt": True,
    })
    config.norm = ml_collections.ConfigDict({
        "gain": False,                 # False: bias only (InstructGPT); True: also std 1 (lm-human-preferences)
        "data": "",                    # "" = the responses of data.train; or an SFT JSONL (demonstrations)
        "num_responses": 1024,         # responses scored to fit the normalisation
    })
    config.eval = ml_collections.ConfigDict({
        "gold_judge": "world",         # "" for data without the embedded world's judge
        "batch_rows": 128,             # responses scored per call
    })
    config.mesh = mesh_config()
    if arg == "smoke":
        config.model = model_config("nano")
        config.optim = optim_config(lr=1e-3, warmup_steps=2)
        config.train = train_config(steps=10, batch_size=8, seq_len=0,
                                    epochs=1.0,  # passes over the comparisons when steps = 0 (the paper: 1)
                                    log_every=5, eval_every=10, checkpoint_every=10)
        config.rm.packed_rows = 16
        config.norm.num_responses = 256
    elif arg == "default":
        config.model = model_config("tiny")
        config.optim = optim_config(lr=1e-3, warmup_steps=5, weight_decay=0.0)
        # Each evaluation scores the held-out prompts and as many training prompts (rm/train_eval_loss), so it
        # costs about as much as training on them: every 60 steps keeps evaluation a small share of the stage.
        config.train = train_config(steps=0, batch_size=16, seq_len=0, epochs=1.0, log_every=5, eval_every=60,
                                    checkpoint_every=60)
        # 20 rows of 128 tokens hold ~7.5 prompts' K 4..9 responses, each prompt laid once before its responses
        # (rm.share_prompt): 2,560 token slots a step instead of the 18,432 of 16 prompts padded to
        # (16, 9, 128), and the prompts a step of 40 rows without shared prompts held (steps and seconds a
        # step on the pipeline default's comparisons: docs/RESULTS.md).
        config.rm.packed_rows = 20
    elif arg == "gpt2":
        config.model = model_config("gpt2", dtype="bfloat16")
        config.data.tokenizer = "gpt2"
        config.optim = optim_config(lr=9e-6, warmup_steps=10, weight_decay=0.0)
        config.train = train_config(steps=0, batch_size=64, seq_len=0, epochs=1.0, eval_every=100, checkpoint_every=100)
    else:
        raise ValueError(f"configs/rm.py: unknown arg {arg!r}; expected default, smoke or gpt2")
    return config
