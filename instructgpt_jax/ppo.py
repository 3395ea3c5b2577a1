"""PPO-ptx, stage 3 of InstructGPT: the math and the one jitted update.

The objective (Ouyang et al. 2022, eq. 2) is
    E_{(x,y)~pi_RL}[ r(x,y) - beta * log(pi_RL(y|x) / pi_SFT(y|x)) ] + gamma * E_{x~D_pretrain}[ log pi_RL(x) ].
The KL term is paid per token (reward -beta * kl_t at every response token, + the normalised RM score at
the last one), advantages come from GAE over the variable-length responses, and each minibatch step takes
one gradient of  clipped policy loss + vf_coef * clipped value loss + ptx_coef * LM loss on a pretraining
minibatch (the paper's gamma is `ptx_coef` here, since `gamma` is GAE's discount). beta is fixed or follows
the adaptive controller of Ziegler et al. 2019. rollout.py scores the samples; stages/ppo.py runs the stage.
With `ema_decay` > 0 the state also keeps an exponential moving average of the policy's weights, updated after
every gradient step (the paper's Appendix C.4: decay 0.992): rollouts and gradients use the trained weights,
evaluation and the stage's released policy the average.

Every loss is a mean over real (unmasked) response tokens of the minibatch. The value model is a separate
GPT with a scalar head (initialised from the RM, as in the paper) or, with `shared_trunk`, a scalar head on
the policy's own trunk; either way its parameters and optimizer state are `value_params`/`value_opt_state`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from instructgpt_jax import train
from instructgpt_jax.model import materialise_grad
from instructgpt_jax.pretrain import lm_loss


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """`config.ppo`, checked once at the stage boundary; configs/ppo.py holds the values
    (config_base.from_config builds it)."""

    beta: float  # KL reward coefficient: each response token pays -beta * log(pi_RL / pi_SFT) (eq. 2)
    adaptive_kl: bool  # steer beta towards target_kl (Ziegler et al. 2019); False = fixed
    target_kl: float  # adaptive_kl: nats per response that beta steers to
    horizon: int  # adaptive_kl: the controller's horizon, in episodes
    kl_estimator: str  # "kl": log-ratio; "k3": (r - 1) - log r with r = pi_SFT / pi_RL, always >= 0
    gamma: float  # GAE discount
    lam: float  # GAE lambda
    clip: float  # policy ratio clip
    vf_clip: float  # value clip (absolute, in normalised reward units)
    vf_coef: float  # weight of the value loss
    epochs: int  # passes over each rollout
    minibatches: int  # gradient steps per epoch; rollout_batch is split into them
    ptx_coef: float  # weight of the pretraining loss (the paper's gamma); 0 = plain PPO
    ptx_batch_size: int  # pretraining rows per minibatch step
    ptx_seq_len: int  # tokens per pretraining row
    rollout_batch: int  # prompts per iteration
    max_new_tokens: int  # most tokens per response
    temperature: float  # sampling temperature (> 0: PPO needs the samples' logprobs)
    eos_penalty: float  # subtracted from the score of a response that ends without EOS
    whiten: bool  # whiten advantages over real tokens
    shared_trunk: bool  # value head on the policy trunk instead of a separate value network
    frozen_dtype: str  # dtype of ref_params / reward_params ("bfloat16" halves their memory)
    sampler_logprobs: bool  # the rollout's old logprobs and entropy from the sampler, not a policy forward
    ema_decay: float  # the released policy: an EMA of the trained weights, per gradient step; 0 = the weights

    def __post_init__(self):
        def need(ok, key, expected):
            if not ok:
                raise ValueError(f"config.ppo.{key}={getattr(self, key)!r}; expected {expected}")

        need(self.beta >= 0, "beta", ">= 0")
        need(self.target_kl > 0, "target_kl", "> 0")
        need(self.horizon > 0, "horizon", "> 0")
        need(self.kl_estimator in ("kl", "k3"), "kl_estimator", "'kl' or 'k3'")
        need(0 <= self.gamma <= 1, "gamma", "in [0, 1]")
        need(0 <= self.lam <= 1, "lam", "in [0, 1]")
        need(self.clip > 0, "clip", "> 0")
        need(self.vf_clip > 0, "vf_clip", "> 0")
        need(self.vf_coef >= 0, "vf_coef", ">= 0")
        need(self.epochs >= 1, "epochs", ">= 1")
        need(self.minibatches >= 1, "minibatches", ">= 1")
        need(self.rollout_batch % self.minibatches == 0, "rollout_batch", f"a multiple of minibatches={self.minibatches}")
        need(self.ptx_coef >= 0, "ptx_coef", ">= 0")
        need(self.ptx_batch_size >= 1, "ptx_batch_size", ">= 1")
        need(self.ptx_seq_len >= 2, "ptx_seq_len", ">= 2")
        need(self.max_new_tokens >= 1, "max_new_tokens", ">= 1")
        need(self.temperature > 0, "temperature", "> 0 (PPO samples from the policy; greedy has no logprobs)")
        need(0 <= self.ema_decay < 1, "ema_decay", "in [0, 1) (0: no average)")
        need(self.frozen_dtype in ("float32", "bfloat16"), "frozen_dtype", "'float32' or 'bfloat16'")


# ---------------------------------------------------------------- per-token KL rewards, GAE, whitening


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    # `where`, not `x * mask`: an inf at a padding position times 0 would be NaN.
    mask = mask.astype(bool)
    return jnp.where(mask, x, 0.0).sum() / jnp.maximum(mask.sum(), 1).astype(jnp.float32)


def per_token_kl(logprobs: jax.Array, ref_logprobs: jax.Array, estimator: str = "kl") -> jax.Array:
    """KL(pi_RL || pi_SFT) estimated at each sampled token. (B, N) -> (B, N).

    "kl" is the log-ratio log pi_RL - log pi_SFT: its sum over a response is the sequence log-ratio of
    eq. 2. "k3" (Schulman 2020) is (r - 1) - log r with r = pi_SFT / pi_RL: unbiased too, never negative.
    """
    log_ratio = logprobs - ref_logprobs
    if estimator == "kl":
        return log_ratio
    if estimator == "k3":
        return jnp.expm1(-log_ratio) + log_ratio
    raise ValueError(f"kl_estimator={estimator!r}; expected 'kl' or 'k3'")


def kl_rewards(scores: jax.Array, kl: jax.Array, response_mask: jax.Array, beta) -> jax.Array:
    """Per-token rewards (B, N): -beta * kl at every response token, + the score (B,) at the last one."""
    mask = response_mask.astype(jnp.float32)
    last = jnp.sum(response_mask, axis=-1) - 1  # the sampler always emits >= 1 token, so last >= 0
    at_last = jax.nn.one_hot(last, kl.shape[-1], dtype=jnp.float32)
    return -beta * kl * mask + scores[:, None] * at_last


def gae(rewards: jax.Array, values: jax.Array, response_mask: jax.Array, gamma: float, lam: float):
    """Generalised advantage estimation over right-padded responses: (advantages, returns), each (B, N).

    delta_t = r_t + gamma * V_{t+1} - V_t and A_t = delta_t + gamma * lam * A_{t+1}, where V and A past a
    response's last token are 0 (the episode ends there: no bootstrap from padding). A reverse lax.scan.
    """
    mask = response_mask.astype(jnp.float32)
    values = values * mask
    next_values = jnp.concatenate([values[:, 1:], jnp.zeros_like(values[:, :1])], axis=1)
    deltas = (rewards + gamma * next_values - values) * mask

    def step(next_adv, x):
        delta, m = x
        adv = (delta + gamma * lam * next_adv) * m
        return adv, adv

    _, adv = jax.lax.scan(step, jnp.zeros(rewards.shape[0]), (deltas.T, mask.T), reverse=True)
    advantages = adv.T  # (N, B) -> (B, N)
    return advantages, (advantages + values) * mask


def whiten(x: jax.Array, mask: jax.Array, eps: float = 1e-8) -> jax.Array:
    """(x - mean) / std over real tokens only (population variance); padding stays 0."""
    m = mask.astype(jnp.float32)
    mean = masked_mean(x, m)
    var = masked_mean(jnp.square(x - mean), m)
    return (x - mean) * jax.lax.rsqrt(var + eps) * m


def adaptive_beta(beta, kl, cfg: PPOConfig):
    """Ziegler et al. 2019: beta *= 1 + clip(KL / target - 1, -0.2, 0.2) * batch / horizon.

    `kl` is the rollout's mean sequence KL (nats per response). Fixed beta when `adaptive_kl` is off.
    """
    if not cfg.adaptive_kl:
        return beta
    error = jnp.clip(kl / cfg.target_kl - 1.0, -0.2, 0.2)
    return beta * (1.0 + error * cfg.rollout_batch / cfg.horizon)


# ---------------------------------------------------------------- losses


def policy_loss(logprobs, old_logprobs, advantages, mask, clip: float):
    """Clipped surrogate (Schulman et al. 2017): mean of max(-A r, -A clip(r, 1 - c, 1 + c)) over real tokens."""
    # Zero the log-ratio at padding before exp: an overflow there would give NaN gradients through `where`.
    log_ratio = jnp.where(mask.astype(bool), logprobs - old_logprobs, 0.0)
    ratio = jnp.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * jnp.clip(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(jnp.maximum(unclipped, clipped), mask)
    stats = {
        "clipfrac": masked_mean((clipped > unclipped).astype(jnp.float32), mask),
        "approxkl": 0.5 * masked_mean(jnp.square(log_ratio), mask),
    }
    return loss, stats


def value_loss(values, old_values, returns, mask, vf_clip: float):
    """0.5 * mean of max((V - R)^2, (V_clipped - R)^2), V_clipped = V_old + clip(V - V_old, +-vf_clip)."""
    clipped = old_values + jnp.clip(values - old_values, -vf_clip, vf_clip)
    err, err_clipped = jnp.square(values - returns), jnp.square(clipped - returns)
    loss = 0.5 * masked_mean(jnp.maximum(err, err_clipped), mask)
    return loss, {"vf_clipfrac": masked_mean((err_clipped > err).astype(jnp.float32), mask)}


def response_logprobs(logits: jax.Array, response: jax.Array, temperature: float):
    """(logprobs (B, N) of the sampled tokens, entropy (B, N)) under softmax(logits / temperature), float32.

    The sampler draws from the same temperature-scaled distribution, so old and new logprobs (and the
    reference's) are all of one distribution.
    """
    logp = jax.nn.log_softmax(logits.astype(jnp.float32) / temperature, axis=-1)
    picked = jnp.take_along_axis(logp, response[..., None], axis=-1)[..., 0]
    entropy = -jnp.sum(jnp.exp(logp) * logp, axis=-1)
    return picked, entropy


def response_hidden(model, tokens, positions, attention_mask, prompt_len: int):
    """Hidden states (B, N, D) that predict the N response tokens: slots P-1 .. P+N-2.

    The off-by-one: the state at slot t predicts token t+1, so the last token is never fed.
    """
    h, _ = model.trunk(tokens[:, :-1], positions[:, :-1], attention_mask[:, :-1])
    return h[:, prompt_len - 1:]


def response_read(model, tokens, positions, attention_mask, prompt_len: int, temperature: float,
                  *, differentiated: bool = False):
    """(logprobs, entropy, hidden) (B, N[, D]) of the response tokens tokens[:, P:] under `model`: the policy
    read of the rollout's old logprobs, the reference's, the update's new ones and evaluation's KL.

    differentiated: the caller takes gradients (the update). The logits' gradient is then written to memory
    once (model.materialise_grad); without the cut XLA:CPU recomputes the log-softmax's gradient inside the
    transposed copy that feeds the unembedding's weight gradient, a (V, B*N) pass in the wrong order. The
    update is faster with it, SFT's loss was slower (docs/RESULTS.md, "Speed"), so only here.
    """
    h = response_hidden(model, tokens, positions, attention_mask, prompt_len)
    logits = model.logits(h)
    if differentiated:
        logits = materialise_grad(logits)
    logprobs, entropy = response_logprobs(logits, tokens[:, prompt_len:], temperature)
    return logprobs, entropy, h


def policy_forward(policy_graphdef, value_graphdef, params, value_params, tokens, positions, attention_mask,
                   prompt_len: int, temperature: float):
    """(policy model, logprobs, entropy, values), each (B, N), of the sampled responses: the one forward of the
    policy and value model: the update's new logprobs, and with sampler_logprobs False the rollout's old ones,
    so both are computed identically (by default the old ones are the sampler's, equal to float rounding).
    `value_graphdef=None` means a shared trunk (the value head on the policy's hidden states)."""
    shared = value_graphdef is None
    policy = nnx.merge(policy_graphdef, {**params, **value_params} if shared else params)
    inputs = (tokens, positions, attention_mask)
    logprobs, entropy, h = response_read(policy, *inputs, prompt_len, temperature, differentiated=True)
    values = policy.score(h) if shared else value_forward(value_graphdef, value_params, *inputs, prompt_len)
    return policy, logprobs, entropy, values


def value_forward(value_graphdef, value_params, tokens, positions, attention_mask, prompt_len: int) -> jax.Array:
    """Values (B, N) of the states that predict each response token, under a separate value network."""
    value = nnx.merge(value_graphdef, value_params)
    return value.score(response_hidden(value, tokens, positions, attention_mask, prompt_len))


def ppo_loss(policy_graphdef, value_graphdef, cfg: PPOConfig, prompt_len: int, params, value_params, mb, ptx_tokens):
    """Total loss of one minibatch and its statistics. `value_graphdef=None` means a shared trunk."""
    policy, logprobs, entropy, values = policy_forward(policy_graphdef, value_graphdef, params, value_params,
                                                       mb["tokens"], mb["positions"], mb["attention_mask"],
                                                       prompt_len, cfg.temperature)
    mask = mb["response_mask"]
    pg, pg_stats = policy_loss(logprobs, mb["logprobs"], mb["advantages"], mask, cfg.clip)
    vf, vf_stats = value_loss(values, mb["values"], mb["returns"], mask, cfg.vf_clip)
    loss = pg + cfg.vf_coef * vf
    stats = {"policy_loss": pg, "value_loss": vf, "entropy": masked_mean(entropy, mask), **pg_stats, **vf_stats}
    if cfg.ptx_coef > 0:
        ptx, _ = lm_loss(policy, ptx_tokens)
        loss = loss + cfg.ptx_coef * ptx
        stats["ptx_loss"] = ptx
    return loss, {"loss": loss, **stats}


# ---------------------------------------------------------------- the update

# What the update's steps change; `ema_params` only when config.ppo.ema_decay > 0.
TRAINED = ("params", "opt_state", "value_params", "value_opt_state", "ema_params")


def ema(average, params, decay):
    """One step of the exponential moving average: decay * average + (1 - decay) * params, leaf by leaf."""
    return jax.tree.map(lambda a, p: decay * a + (1 - decay) * p, average, params)


ROLLOUT_KEYS = ("tokens", "positions", "attention_mask", "response_mask", "logprobs", "values", "advantages",
                "returns", "kl")


def update(policy_graphdef, value_graphdef, cfg: PPOConfig, policy_tx, value_tx, constrain,
           state: dict, rollout: dict, ptx_tokens, rng):
    """epochs x minibatches gradient steps on one rollout, in one lax.scan; then the KL controller.

    state: {step, params, opt_state, value_params, value_opt_state, beta, bad_step[, ema_params]}. rollout:
    ROLLOUT_KEYS, each (B, ...). ptx_tokens: (epochs * minibatches, ptx_batch_size, ptx_seq_len) or None. Each epoch
    visits the rollout in a fresh random order. A non-finite loss or gradient skips that minibatch and
    records the iteration in `bad_step`. Returns (state, metrics), metrics stacked per minibatch step.
    The prompt width P is the rollout's own (tokens (B, P + N), response_mask (B, N)): a batch padded only to
    its longest prompt compiles once per width and computes nothing for the rest of config.data.prompt_len.
    """
    E, M = cfg.epochs, cfg.minibatches
    B = rollout["tokens"].shape[0]
    prompt_len = rollout["tokens"].shape[1] - rollout["response_mask"].shape[1]
    rollout = {k: rollout[k] for k in ROLLOUT_KEYS}
    orders = jax.vmap(lambda k: jax.random.permutation(k, B))(jax.random.split(rng, E))
    minibatch_rows = orders.reshape(E * M, B // M)
    loss_fn = functools.partial(ppo_loss, policy_graphdef, value_graphdef, cfg, prompt_len)
    grad_fn = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)

    def step(carry, xs):
        rows, ptx = xs
        mb = constrain({k: v[rows] for k, v in rollout.items()})
        (loss, stats), (grads, value_grads) = grad_fn(carry["params"], carry["value_params"], mb, ptx)
        grad_norm, value_grad_norm = optax.tree.norm(grads), optax.tree.norm(value_grads)
        updates, new_opt = policy_tx.update(grads, carry["opt_state"], carry["params"])
        value_updates, new_value_opt = value_tx.update(value_grads, carry["value_opt_state"], carry["value_params"])
        new = {"params": optax.apply_updates(carry["params"], updates), "opt_state": new_opt,
               "value_params": optax.apply_updates(carry["value_params"], value_updates),
               "value_opt_state": new_value_opt}
        if "ema_params" in carry:
            new["ema_params"] = ema(carry["ema_params"], new["params"], cfg.ema_decay)
        old = {k: carry[k] for k in new}
        kept, ok = train.keep_if_finite(new, old, loss, grad_norm, value_grad_norm)
        return {**kept, "ok": carry["ok"] & ok}, {**stats, "grad_norm": grad_norm, "value_grad_norm": value_grad_norm}

    init = {k: state[k] for k in TRAINED if k in state}
    out, metrics = jax.lax.scan(step, {**init, "ok": jnp.bool_(True)}, (minibatch_rows, ptx_tokens))
    mean_kl = jnp.mean(jnp.sum(rollout["kl"] * rollout["response_mask"], axis=-1))
    new_state = {
        **{k: out[k] for k in init},
        "step": state["step"] + 1,
        "beta": adaptive_beta(state["beta"], mean_kl, cfg).astype(jnp.float32),
        "bad_step": train.first_bad_step(state["bad_step"], state["step"], out["ok"]),
    }
    return new_state, metrics


def make_update(policy_graphdef, value_graphdef, cfg: PPOConfig, policy_tx, value_tx, state_shardings=None,
                batch_sharding=None):
    """The update, jitted with the state donated (compiled once per prompt width).

    With shardings (a mesh run), the state keeps its shardings and every minibatch is constrained to the
    batch sharding, so the minibatch gathered from the shuffled rollout is split over data x fsdp again.
    """
    def constrain(mb):
        if batch_sharding is None:
            return mb
        return {k: jax.lax.with_sharding_constraint(v, batch_sharding(v.ndim)) for k, v in mb.items()}

    fn = functools.partial(update, policy_graphdef, value_graphdef, cfg, policy_tx, value_tx, constrain)
    if state_shardings is None:
        return jax.jit(fn, donate_argnums=0)
    return jax.jit(fn, out_shardings=(state_shardings, None), donate_argnums=0)

