"""Evaluation of a pipeline workdir's policies: the `eval` section of configs/pipeline.py, which embeds it.

  instructgpt eval --config configs/pipeline.py:default --workdir W   (the pipeline runs it as its eval stage)
  instructgpt eval --config configs/pipeline.py:default --workdir W --config.seed=2   (W made with seed 2)

Give the flags W's pipeline ran with: `--config.seed` reseeds the world and the eval as the pipeline does, and a
world config other than the one W/world was made by (W/world/world.json) is an error naming the fields, since
another world's labelers would judge the win rate.

Each policy (base GPT, GPT prompted, SFT, PPO, PPO-ptx: stage folders under W) samples `prompts` prompts of
W/world/eval.jsonl and `heldout_prompts` of eval_heldout.jsonl; instructgpt_jax/evaluate.py says what is
measured on them. What the default run measures: docs/RESULTS.md.
Args:
  default  384 + 500 prompts, batches of 64.
  smoke    64 + 32 prompts, batches of 32, fewer RM and held-out-loss batches: a pulse, not a result.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or "default"
    if arg not in ("smoke", "default"):
        raise ValueError(f"configs/eval.py: unknown arg {arg!r}; expected smoke or default")
    smoke = arg == "smoke"
    config = ml_collections.ConfigDict()
    config.policies = ("base:pretrain", "sft:sft", "ppo:ppo", "ppo_ptx:ppo_ptx")  # name:stage folder
    # The paper's few-shot-prompted GPT-3: the base model, its prompts after this prefix ("" = not evaluated).
    config.prompted = "gpt_prompted:pretrain"
    # Two instruction/answer pairs in prose, short enough that the longest world prompt (80 tokens with its
    # markers) plus this fits prompt_len.
    config.prompt_prefix = ("Write about the sea.\nThe sea is calm and deep.\n\n"
                            "Give me the bank's key.\nSorry, I can't help with that.\n\n")
    config.reference = "sft"                      # policy the win rate and KL are measured against
    config.reward_model = "rm"                    # stage folder with the RM checkpoint and reward_norm.json
    config.prompts = 64 if smoke else 384         # from eval.jsonl
    # Every held-out prompt the default world writes (500; _read_eval takes the first N): at 192 a policy's held-out
    # gold difference had an interval of about ±0.04 and the held-out harmful requests were 9 a seed
    # (docs/RESULTS.md, "Gold against the SFT samples the win rate uses").
    config.heldout_prompts = 32 if smoke else 500  # from eval_heldout.jsonl
    config.batch_size = 32 if smoke else 64       # prompts sampled (and responses scored) per batch
    config.prompt_len = 192                       # most prompt tokens, prefix included
    config.max_new_tokens = 48                    # most tokens per response
    config.temperature = 1.0                      # sampling temperature (1: KL is a Monte-Carlo estimate of it)
    config.top_p = 1.0                            # nucleus sampling mass (1 = off)
    config.seed = 0                               # sampling keys, the labelers' noise and the RM comparisons
    # Independent SFT samples of each prompt that every answer is judged against, one labeler verdict each, the
    # win being their mean: a single draw's luck moves every policy's win rate of a run together (docs/RESULTS.md,
    # "The win rate against four SFT samples"); more draws lower that variance, not the expectation.
    config.baseline_samples = 1 if smoke else 4
    # Sampling draws of each policy per prompt (draw j folds j into key(seed); 1 = one answer per prompt, each
    # policy's figures then one draw of it). Every figure averages the draws and every interval is over prompts;
    # more draws narrow the intervals of an ablation's comparison (docs/RESULTS.md, "Several draws of each policy").
    config.policy_samples = 1
    # Held-out prompts per K for the RM accuracy-by-K sets and the best-of-n curve (at 64 the share of the
    # oracle's gain recovered read 0.07 where 256 prompts of the same run gave 0.21: docs/RESULTS.md).
    config.rm_prompts = 16 if smoke else 256
    config.rm_k = (2, 4, 6, 9)                    # K of those sets
    config.best_of_n = (1, 2, 4, 8, 16)           # SFT samples per RM prompt the RM picks from (rm.best_of_n)
    config.corpus = "web"                         # pretraining text of the held-out loss (the alignment tax)
    config.corpus_heldout_fraction = 0.05         # share of it held out
    config.heldout_batches = 2 if smoke else 8    # held-out windows: batches of batch_size x heldout_seq_len
    config.heldout_seq_len = 128                  # tokens per held-out window
    return config
