"""The language-model objective: pretraining's loss, SFT's and PPO-ptx's, and the held-out loss.

`lm_loss` is the one next-token loss of the project: pretraining (every token), SFT (response tokens
only, via `loss_mask`) and the pretraining mix of PPO-ptx (Ouyang et al. 2022, eq. 2, gamma term) all call
it. `heldout_loss` is the one held-out measure: the pretraining stage's validation loss and the alignment
tax of evaluation and PPO-ptx. The stage that trains the base model is stages/pretrain.py.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from instructgpt_jax import sharding
from instructgpt_jax.data import batching


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


@functools.partial(jax.jit, static_argnums=0)
def _window_loss(graphdef, params, tokens):
    return lm_loss(nnx.merge(graphdef, params), tokens)[0]


def heldout_loss(graphdef, params, heldout_ids: np.ndarray, batch_size: int, seq_len: int, n_batches: int,
                 mesh=None) -> float:
    """Mean next-token loss over `n_batches` fixed windows of held-out text (batching.eval_windows): the
    pretraining stage's validation figure and the alignment tax of evaluation and PPO-ptx. With `mesh`, each
    batch of windows is split over it."""
    losses = []
    for i in range(n_batches):
        tokens = batching.eval_windows(heldout_ids, i, batch_size, seq_len)
        tokens = sharding.put_global({"tokens": tokens}, mesh)["tokens"] if mesh is not None else jnp.asarray(tokens)
        losses.append(_window_loss(graphdef, params, tokens))
    return float(np.mean(jax.device_get(losses)))
