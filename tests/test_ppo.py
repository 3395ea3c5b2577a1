"""PPO math against slow, obviously-correct NumPy loops: per-token KL rewards, GAE over variable-length
responses, whitening, the clipped policy and value losses, the ptx term and the adaptive KL controller."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from flax import nnx

from instructgpt_jax import ppo
from instructgpt_jax.config_base import from_config, load_config
from instructgpt_jax.model import GPTConfig, make_model

B, N = 5, 9
LENGTHS = [9, 1, 4, 7, 2]  # real response tokens per row (a prefix: the sampler pads after EOS)
PPO = from_config(ppo.PPOConfig, load_config("configs/ppo.py:ppo").ppo, "config.ppo")  # plain PPO (ptx_coef 0)


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    mask = np.arange(N)[None, :] < np.array(LENGTHS)[:, None]
    f = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
    return mask, f


def test_per_token_kl_estimators():
    mask, f = _batch()
    lp, ref = f(B, N) - 2.0, f(B, N) - 2.0
    np.testing.assert_allclose(ppo.per_token_kl(lp, ref, "kl"), lp - ref, atol=1e-6)
    r = np.exp(ref.astype(np.float64) - lp)
    k3 = np.asarray(ppo.per_token_kl(lp, ref, "k3"))
    np.testing.assert_allclose(k3, (r - 1) - np.log(r), rtol=1e-5, atol=1e-6)
    assert (k3 >= 0).all()
    with pytest.raises(ValueError, match="kl_estimator"):
        ppo.per_token_kl(lp, ref, "k2")


def test_kl_rewards_match_loop_and_sum_to_score_minus_beta_log_ratio():
    mask, f = _batch(1)
    lp, ref, scores, beta = f(B, N), f(B, N), f(B), 0.05
    kl = np.where(mask, lp - ref, 0.0)
    rewards = np.asarray(ppo.kl_rewards(jnp.asarray(scores), jnp.asarray(kl), jnp.asarray(mask), beta))
    expected = np.zeros((B, N))
    for b in range(B):
        for t in range(LENGTHS[b]):
            expected[b, t] = -beta * (lp[b, t] - ref[b, t]) + (scores[b] if t == LENGTHS[b] - 1 else 0.0)
    np.testing.assert_allclose(rewards, expected, atol=1e-6)
    # eq. 2: the summed per-token reward is the score minus beta times the sequence log-ratio.
    seq_log_ratio = np.array([np.sum(lp[b, :LENGTHS[b]] - ref[b, :LENGTHS[b]]) for b in range(B)])
    np.testing.assert_allclose(rewards.sum(-1), scores - beta * seq_log_ratio, atol=1e-6)


def gae_loop(rewards, values, lengths, gamma, lam):
    adv, ret = np.zeros_like(rewards, np.float64), np.zeros_like(rewards, np.float64)
    for b, n in enumerate(lengths):
        last = 0.0
        for t in reversed(range(n)):
            next_value = values[b, t + 1] if t + 1 < n else 0.0
            delta = rewards[b, t] + gamma * next_value - values[b, t]
            last = delta + gamma * lam * last
            adv[b, t] = last
            ret[b, t] = last + values[b, t]
    return adv, ret


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.8), (1.0, 1.0), (0.99, 0.0)])
def test_gae_matches_loop_on_variable_lengths(gamma, lam):
    mask, f = _batch(2)
    rewards = np.where(mask, f(B, N), 0.0)
    values = f(B, N)  # garbage at padding on purpose: it must not leak into real tokens
    adv, ret = ppo.gae(jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(mask), gamma, lam)
    ref_adv, ref_ret = gae_loop(rewards, values, LENGTHS, gamma, lam)
    np.testing.assert_allclose(adv, ref_adv, atol=1e-6)
    np.testing.assert_allclose(ret, ref_ret, atol=1e-6)


def test_whiten_over_real_tokens_only():
    mask, f = _batch(3)
    x = f(B, N) * 3.0 + 1.0
    x[~mask] = 1e6  # padding must not move the statistics
    real = x[mask].astype(np.float64)
    expected = np.where(mask, (x - real.mean()) / np.sqrt(real.var() + 1e-8), 0.0)
    out = np.asarray(ppo.whiten(jnp.asarray(x), jnp.asarray(mask)))
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose([out[mask].mean(), out[mask].std()], [0.0, 1.0], atol=1e-6)


def test_clipped_policy_loss_matches_loop():
    mask, f = _batch(4)
    old, adv, clip = f(B, N) - 1.0, f(B, N), 0.2
    new = old + 0.3 * f(B, N)
    new[~mask] = 500.0  # exp(500 - old) overflows: padding must still give a finite loss
    loss, stats = ppo.policy_loss(jnp.asarray(new), jnp.asarray(old), jnp.asarray(adv), jnp.asarray(mask), clip)
    terms, clipped, sq = [], [], []
    for b in range(B):
        for t in range(LENGTHS[b]):
            r = np.exp(np.float64(new[b, t]) - old[b, t])
            a = -adv[b, t] * r
            c = -adv[b, t] * min(max(r, 1 - clip), 1 + clip)
            terms.append(max(a, c))
            clipped.append(c > a)
            sq.append((np.float64(new[b, t]) - old[b, t]) ** 2)
    np.testing.assert_allclose(float(loss), np.mean(terms), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(float(stats["clipfrac"]), np.mean(clipped), atol=1e-6)
    np.testing.assert_allclose(float(stats["approxkl"]), 0.5 * np.mean(sq), rtol=1e-6, atol=1e-7)
    assert 0 < float(stats["clipfrac"]) < 1  # both branches exercised
    grads = jax.grad(lambda x: ppo.policy_loss(x, jnp.asarray(old), jnp.asarray(adv), jnp.asarray(mask), clip)[0])(jnp.asarray(new))
    assert np.isfinite(np.asarray(grads)).all() and not np.asarray(grads)[~mask].any()


def test_clipped_value_loss_matches_loop():
    mask, f = _batch(5)
    old, ret, clip = f(B, N), f(B, N), 0.2
    new = old + 0.4 * f(B, N)
    loss, stats = ppo.value_loss(jnp.asarray(new), jnp.asarray(old), jnp.asarray(ret), jnp.asarray(mask), clip)
    terms, clipped = [], []
    for b in range(B):
        for t in range(LENGTHS[b]):
            v, vo, r = np.float64(new[b, t]), old[b, t], ret[b, t]
            vc = vo + min(max(v - vo, -clip), clip)
            terms.append(max((v - r) ** 2, (vc - r) ** 2))
            clipped.append((vc - r) ** 2 > (v - r) ** 2)
    np.testing.assert_allclose(float(loss), 0.5 * np.mean(terms), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(float(stats["vf_clipfrac"]), np.mean(clipped), atol=1e-6)
    assert 0 < float(stats["vf_clipfrac"]) < 1


def test_response_logprobs_and_entropy_with_temperature():
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(2, 3, 7)).astype(np.float32) * 3
    tokens = rng.integers(0, 7, (2, 3))
    lp, ent = ppo.response_logprobs(jnp.asarray(logits), jnp.asarray(tokens), 0.7)
    for b in range(2):
        for t in range(3):
            z = logits[b, t].astype(np.float64) / 0.7
            logp = z - np.log(np.exp(z - z.max()).sum()) - z.max()
            np.testing.assert_allclose(lp[b, t], logp[tokens[b, t]], atol=1e-6)
            np.testing.assert_allclose(ent[b, t], -(np.exp(logp) * logp).sum(), atol=1e-5)


def test_ptx_term_is_the_lm_loss_in_the_total():
    """ppo_loss = policy + vf_coef * value + ptx_coef * LM loss, the LM loss checked against NumPy."""
    cfg_model = GPTConfig(vocab_size=32, n_positions=32, n_layer=1, n_head=2, n_embd=16)
    policy = make_model(cfg_model, 0)
    value = make_model(GPTConfig(**{**cfg_model.__dict__, "scalar_head": True}), 1)
    gp, params = nnx.split(policy)
    gv, vparams = nnx.split(value)
    params, vparams = nnx.to_pure_dict(params), nnx.to_pure_dict(vparams)
    rng = np.random.default_rng(7)
    P, T = 4, 4 + N
    mask, f = _batch(7)
    mb = {
        "tokens": jnp.asarray(rng.integers(0, 32, (B, T)), jnp.int32),
        "attention_mask": jnp.asarray(np.concatenate([np.ones((B, P), bool), mask], 1)),
        "response_mask": jnp.asarray(mask),
        "logprobs": jnp.asarray(f(B, N) - 3.0), "values": jnp.asarray(f(B, N)),
        "advantages": jnp.asarray(f(B, N)), "returns": jnp.asarray(f(B, N)),
    }
    mb["positions"] = jnp.broadcast_to(jnp.arange(T), (B, T))
    ptx = rng.integers(0, 32, (3, 10)).astype(np.int32)
    base = dataclasses.replace(PPO, vf_coef=0.3, ptx_coef=0.0)
    with_ptx = dataclasses.replace(PPO, vf_coef=0.3, ptx_coef=2.5)
    l0, s0 = jax.jit(functools.partial(ppo.ppo_loss, gp, gv, base, P))(params, vparams, mb, None)
    l1, s1 = jax.jit(functools.partial(ppo.ppo_loss, gp, gv, with_ptx, P))(params, vparams, mb, jnp.asarray(ptx))
    np.testing.assert_allclose(float(l0), float(s0["policy_loss"] + 0.3 * s0["value_loss"]), rtol=1e-6)
    logits = np.asarray(jax.jit(lambda p, t: nnx.merge(gp, p)(t))(params, jnp.asarray(ptx)), np.float64)
    nll = [np.log(np.exp(logits[b, t] - logits[b, t].max()).sum()) + logits[b, t].max() - logits[b, t, ptx[b, t + 1]]
           for b in range(3) for t in range(9)]
    np.testing.assert_allclose(float(s1["ptx_loss"]), np.mean(nll), rtol=1e-5)
    np.testing.assert_allclose(float(l1), float(l0) + 2.5 * np.mean(nll), rtol=1e-5)


def test_adaptive_beta_follows_ziegler():
    cfg = dataclasses.replace(PPO, adaptive_kl=True, target_kl=6.0, horizon=10_000, rollout_batch=32)
    for kl in [0.0, 3.0, 5.9, 6.0, 7.0, 60.0]:
        expected = 0.02 * (1 + np.clip(kl / 6.0 - 1, -0.2, 0.2) * 32 / 10_000)
        np.testing.assert_allclose(float(ppo.adaptive_beta(jnp.float32(0.02), jnp.float32(kl), cfg)), expected, rtol=1e-6)
    fixed = dataclasses.replace(PPO, adaptive_kl=False)
    assert float(ppo.adaptive_beta(jnp.float32(0.02), jnp.float32(60.0), fixed)) == np.float32(0.02)


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match=r"config\.ppo\.rollout_batch=30; expected a multiple of minibatches=4"):
        dataclasses.replace(PPO, rollout_batch=30, minibatches=4)
    with pytest.raises(ValueError, match=r"config\.ppo\.kl_estimator"):
        dataclasses.replace(PPO, kl_estimator="k2")
    with pytest.raises(ValueError, match=r"unknown keys \['betta'\]"):
        from_config(ppo.PPOConfig, ml_collections.ConfigDict({"betta": 0.1}), "config.ppo")
    section = load_config("configs/ppo.py").ppo
    del section["beta"]
    with pytest.raises(ValueError, match=r"config\.ppo\.beta is missing"):
        from_config(ppo.PPOConfig, section, "config.ppo")
