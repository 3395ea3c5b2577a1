"""PPO rollouts: sample responses with the KV-cache sampler, then score them in one jitted pass.

Sampling uses sampling.make_generate at the PPO temperature (1 by default). Scoring runs each model once
over the sampled sequences (prompt left-padded, response right-padded after EOS): the frozen reference (SFT)
gives its ref_logprobs, the value model the values V(s_t) of the states that predict each response token,
and the frozen reward model its scalar head at the last response token, normalised with the RM stage's
reward_norm.json. The policy's own ("old") logprobs of the sampled tokens are the sampler's
(`sampler_logprobs`, the default: the KV-cache decode computes the same log_softmax(logits / T) as a full
forward, to float rounding), or with sampler_logprobs False a full policy forward recomputes them, the same
computation as the update's new ones. Then per-token KL rewards, GAE and whitening (ppo.py), still on device.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from instructgpt_jax import ppo
from instructgpt_jax.reward import rm_scores
from instructgpt_jax.model import positions_from_mask


def score(policy_graphdef, value_graphdef, ref_graphdef, reward_graphdef, cfg: ppo.PPOConfig, eos_id: int,
          reward_norm: tuple[float, float], params, value_params, ref_params, reward_params, beta, sample: dict,
          prompt_mask):
    """Everything the update needs from one sampled batch, plus the rollout's statistics.

    sample: make_generate's output {tokens (B, P + N), response (B, N), response_mask, lengths}; P is the
    batch's prompt width, prompt_mask's (B, P), so each width compiles once.
    Returns (rollout: ppo.ROLLOUT_KEYS + 'scores' (B,), stats: scalars).
    """
    P = prompt_mask.shape[1]
    response, response_mask = sample["response"], sample["response_mask"]
    mask_f = response_mask.astype(jnp.float32)
    attention_mask = jnp.concatenate([prompt_mask.astype(bool), response_mask], axis=1)
    positions = positions_from_mask(attention_mask)
    inputs = (sample["tokens"], positions, attention_mask)

    if cfg.sampler_logprobs and value_graphdef is not None:
        logprobs, entropy = sample["logprobs"], sample["entropy"]
        values = ppo.value_forward(value_graphdef, value_params, *inputs, P)
    else:
        _, logprobs, entropy, values = ppo.policy_forward(policy_graphdef, value_graphdef, params, value_params,
                                                          *inputs, P, cfg.temperature)
    ref_logprobs, _, _ = ppo.response_read(nnx.merge(ref_graphdef, ref_params), *inputs, P, cfg.temperature)
    # The RM reads its scalar head at the last response token (EOS when the response ended), as in training.
    raw_scores = rm_scores(nnx.merge(reward_graphdef, reward_params), *inputs, P + sample["lengths"] - 1)
    scores = (raw_scores - reward_norm[0]) / reward_norm[1]
    ended = jnp.any((response == eos_id) & response_mask, axis=-1)
    penalised = scores - cfg.eos_penalty * (~ended).astype(jnp.float32)

    logprobs, ref_logprobs, values = logprobs * mask_f, ref_logprobs * mask_f, values * mask_f
    kl = ppo.per_token_kl(logprobs, ref_logprobs, cfg.kl_estimator) * mask_f
    rewards = ppo.kl_rewards(penalised, kl, response_mask, beta)
    advantages, returns = ppo.gae(rewards, values, response_mask, cfg.gamma, cfg.lam)
    if cfg.whiten:
        advantages = ppo.whiten(advantages, response_mask)
    rollout = {"tokens": sample["tokens"], "positions": positions, "attention_mask": attention_mask,
               "response_mask": response_mask, "logprobs": logprobs, "values": values, "advantages": advantages,
               "returns": returns, "kl": kl, "scores": scores}
    stats = {
        "score": scores.mean(),
        "score_raw": raw_scores.mean(),
        "kl": kl.sum(-1).mean(),
        "reward": rewards.sum(-1).mean(),
        "response_length": sample["lengths"].astype(jnp.float32).mean(),
        "eos_fraction": ended.astype(jnp.float32).mean(),
        "rollout_entropy": ppo.masked_mean(entropy, response_mask),
        "value_mean": ppo.masked_mean(values, response_mask),
        "beta": jnp.asarray(beta, jnp.float32),
    }
    return rollout, stats


def make_score(policy_graphdef, value_graphdef, ref_graphdef, reward_graphdef, cfg: ppo.PPOConfig, eos_id: int,
               reward_norm: tuple[float, float]):
    """fn(params, value_params, ref_params, reward_params, beta, sample, prompt_mask) -> (rollout, stats), jitted
    (once per prompt width)."""
    return jax.jit(functools.partial(score, policy_graphdef, value_graphdef, ref_graphdef, reward_graphdef, cfg,
                                     eos_id, (float(reward_norm[0]), float(reward_norm[1]))))
