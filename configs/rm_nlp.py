"""The RM's start of the paper's Appendix C.2: a model fine-tuned on public NLP datasets before it learns
rankings. Here: the world's analogue (instructgpt_jax/data/nlp.py: reading comprehension and claim checking
about passages and lists), written into W/data/ and fine-tuned on as SFT is, scored by its answer key.

  instructgpt rm_nlp --config configs/rm_nlp.py:tiny --workdir W/rm_nlp --config.init_from=W/pretrain

Args: `tiny` (default: 16,384 training and 512 held-out records, two epochs) and `smoke` (the nano preset,
256 records, one epoch: a pulse). Every other key is configs/sft.py's, with the same meaning. The pipeline
runs it as the stage `rm_nlp` when `config.rm_init` is "nlp" (from the base model) or "sft_nlp" (from SFT);
what it gives the tiny models: docs/RESULTS.md, "The RM from a model fine-tuned on the world's NLP datasets".
"""

import ml_collections

from instructgpt_jax.config_base import load_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or "tiny"
    if arg not in ("tiny", "smoke"):
        raise ValueError(f"configs/rm_nlp.py:{arg}; expected tiny or smoke")
    smoke = arg == "smoke"
    config = load_config(f"configs/sft.py:{arg}")
    config.stage = "rm_nlp"
    # data.train / data.val are where the stage writes the datasets: "" (the default) is W/data/train.jsonl
    # and W/data/val.jsonl; any other path is an error, so no user file is ever overwritten.
    config.nlp = ml_collections.ConfigDict({
        "examples": 256 if smoke else 16384,   # training records, the eight kinds in turn
        "val_examples": 64 if smoke else 512,  # held-out records (val loss, and the answer key's score)
        "seed": 0,                             # the records' draw (the pipeline adds its seed)
    })
    config.train.epochs = 1.0 if smoke else 2.0
    config.eval.gold_judge = "nlp"  # the answer key (data/nlp.py), read back from each held-out prompt
    config.eval.max_new_tokens = 4  # an answer is one word (at most 3 world tokens) and its end
    if not smoke:
        config.eval.num_prompts = 256
    return config
