"""Build the `world` tokenizer: a byte-level BPE of 2,048 ids trained on the embedded world's text.

  python experiments/build_world_tokenizer.py            # writes instructgpt_jax/data/world_bpe.json
  python experiments/build_world_tokenizer.py --check    # rebuilds in memory, fails if the shipped file differs

GPT-2's BPE was trained on the text its model reads (WebText); this one is trained the same way on the text
the embedded world's models read: the world's web text (data/web.py, version 1: the web of the day the file
was built; version 2 only adds signs in capitals and more topics) as many bytes as the training plays,
a fifth of the training plays (Shakespeare's rarer words would otherwise take the merges that make the
world's words single tokens, upper-case ones included), and the prompts and demonstrations of the default
world's SFT, RM and PPO splits (seed 0, scale 0.5; eval prompts are never read). The shipped file is what
every run loads (tokenizer.WorldTokenizer), so checkpoints never see their ids change; rebuild only to change
the tokenizer, under a new name.
"""

import argparse
import json
import os
import sys

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from instructgpt_jax.config_base import load_config
from instructgpt_jax.data import web, world as world_lib
from instructgpt_jax.data.corpus import shakespeare
from instructgpt_jax.tokenizer import WORLD_BPE_PATH, WORLD_SPECIALS

VOCAB = 2048
PLAYS_SHARE = 0.2
CHUNK = 100_000   # characters per trainer input (the trainer splits words within a chunk)


def training_text() -> list[str]:
    plays = shakespeare(0.05).train
    texts = [web.web_text(0, len(plays), version=1), plays[: int(PLAYS_SHARE * len(plays))]]
    cfg = load_config("configs/world.py:default")
    cfg.scale, cfg.tokenizer = 0.5, "byte"   # the byte tokenizer only checks lengths here
    world = world_lib.make_world(cfg)
    for split, rng_salt in (("sft", 0), ("rm", 1), ("ppo", 2)):
        rng = np.random.default_rng([0, 1000 + rng_salt])
        for p in world.prompts(split):
            texts.append(" " + p)
            if split == "sft":
                texts.append(" " + world.demonstration(p, rng))
    return [t[i:i + CHUNK] for t in texts for i in range(0, len(t), CHUNK)]


def build() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=list(WORLD_SPECIALS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_text(), trainer)
    if tok.get_vocab_size() != VOCAB:
        raise RuntimeError(f"the trainer gave {tok.get_vocab_size()} ids, expected {VOCAB}")
    return tok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare a rebuild with the shipped file")
    args = parser.parse_args(argv)
    built = json.loads(build().to_str())
    if args.check:
        with open(WORLD_BPE_PATH, encoding="utf-8") as f:
            shipped = json.load(f)
        same = built["model"] == shipped["model"] and built["added_tokens"] == shipped["added_tokens"]
        print(f"{WORLD_BPE_PATH}: {'matches' if same else 'DIFFERS FROM'} a rebuild")
        return 0 if same else 1
    os.makedirs(os.path.dirname(WORLD_BPE_PATH), exist_ok=True)
    with open(WORLD_BPE_PATH, "w", encoding="utf-8") as f:
        json.dump(built, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {WORLD_BPE_PATH} ({VOCAB} ids)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
