"""The PPO scoring pass and the jitted update on random tiny models: scoring against a per-row unpadded
forward, the update's gradient against a hand-written total loss, lr 0, sharded vs single device, no
recompilation, and the shared-trunk value head."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from instructgpt_jax import config_base, ppo, sharding, train
from instructgpt_jax.model import GPTConfig
from instructgpt_jax.data.batching import left_pad
from instructgpt_jax import stages

CFG = GPTConfig(vocab_size=64, n_positions=32, n_layer=1, n_head=2, n_embd=32)
P, N, B = 8, 8, 16
EOS, PAD = 3, 0
NORM = (0.25, 2.0)  # reward_norm.json mean / std


def _setup(cfg: ppo.PPOConfig, shape=(1, 1, 1), tx=None, vtx=None, update_devices=None):
    n = int(np.prod(shape))
    optim = config_base.optim_config(3e-3)
    optim.eps = 1e-6  # see test_sharding: keeps Adam's first step from amplifying summation-order noise
    tx = tx or train.make_optimizer(optim, 100)
    vtx = vtx or train.make_optimizer(optim, 100)
    mesh = config_base.mesh_config(shape)
    # By default the update on the whole mesh (on a CPU host the stage's own default, 0, is one device).
    mesh.update_devices = n if update_devices is None else update_devices
    return stages.ppo.make_setup(CFG, mesh, cfg, tx, vtx, devices=jax.devices()[:n])


def _random(setup_part, seed):
    """GPT-2-like random params drawn on the host and placed in their shards (no XLA compile per call)."""
    rng = np.random.default_rng(seed)
    draw = lambda path, x: (float(path[-1].key == "scale") + 0.02 * rng.standard_normal(x.shape)).astype(np.float32)  # noqa: E731
    host = jax.tree_util.tree_map_with_path(draw, setup_part.abstract["params"])
    return jax.device_put(host, setup_part.shardings["params"])


def _params(setup, cfg):
    """policy (seed 0), value (seed 1), ref (seed 2: a different model, so KL is not 0), reward (seed 3)."""
    value = _random(setup.headed, 1)
    value = {k: value[k] for k in stages.ppo.HEAD} if cfg.shared_trunk else value
    return _random(setup.headless, 0), value, _random(setup.headless, 2), _random(setup.headed, 3)


def _prompts(seed=0):
    rng = np.random.default_rng(seed)
    rows = [list(rng.integers(4, CFG.vocab_size, rng.integers(1, P + 1))) for _ in range(B)]
    tokens, mask = left_pad(rows, PAD, P)
    return {"prompt_tokens": tokens, "prompt_mask": mask}


@functools.cache
def _world(cfg: ppo.PPOConfig, shape=(1, 1, 1)):
    setup = _setup(cfg, shape)
    return setup, stages.ppo.make_programs(setup, EOS, PAD, NORM), _params(setup, cfg)


def _fresh(cfg, shape=(1, 1, 1)):
    """Copies of the cached policy and value params: the update donates (deletes) the state it is given."""
    return jax.tree.map(jnp.copy, _world(cfg, shape)[2][:2])


def _rollout(cfg, shape=(1, 1, 1), seed=0):
    setup, programs, (policy, value, ref, reward) = _world(cfg, shape)
    with jax.set_mesh(setup.mesh):
        batch = sharding.shard_batch(_prompts(seed), setup.mesh)
        sample = programs.generate(policy, batch["prompt_tokens"], batch["prompt_mask"], jax.random.key(seed))
        data, stats = programs.score(policy, value, ref, reward, jnp.float32(cfg.beta), sample, batch["prompt_mask"])
    return jax.device_get(sample), jax.device_get(data), jax.device_get(stats)


# Temperature 0.7: every logprob here (sampler, scoring, update, hand-written loss) is of softmax(logits / 0.7).
BASE = dataclasses.replace(
    config_base.from_config(ppo.PPOConfig, config_base.load_config("configs/ppo.py:ppo").ppo, "config.ppo"),
    rollout_batch=B, minibatches=2, epochs=2, max_new_tokens=N, beta=0.1, eos_penalty=0.5, temperature=0.7)


@functools.partial(jax.jit, static_argnums=0)
def _hidden(graphdef, params, tokens):
    """Hidden states of left-aligned rows with positions 0.. and no mask: what the rows mean unpadded.
    What follows a row's end cannot change its earlier slots (causality)."""
    return nnx.merge(graphdef, params).trunk(tokens)[0]


@pytest.mark.parametrize("sampler_logprobs", [True, False])
def test_scoring_matches_unpadded_forward(sampler_logprobs):
    """logprobs, entropy, ref log-ratio, values and the RM score of each row, recomputed with no left padding,
    whether the old logprobs come from the sampler or from a policy forward."""
    cfg = dataclasses.replace(BASE, sampler_logprobs=sampler_logprobs)
    sample, data, stats = _rollout(cfg)
    setup, _, (policy, value, ref, reward) = _world(cfg)
    lengths = sample["lengths"]
    assert 1 <= lengths.min() and lengths.max() <= N and (lengths < N).any(), lengths  # some rows stop at EOS
    prompts = _prompts(0)
    rows = [np.concatenate([prompts["prompt_tokens"][b][prompts["prompt_mask"][b]], sample["response"][b, :lengths[b]]])
            for b in range(B)]
    aligned = np.full((B, P + N), PAD, np.int32)
    for b, row in enumerate(rows):
        aligned[b, :len(row)] = row

    def logprobs(params):
        model = nnx.merge(setup.ref_graphdef, params)
        logits = model.logits(_hidden(setup.ref_graphdef, params, aligned)).astype(jnp.float32)
        return np.asarray(jax.nn.log_softmax(logits / BASE.temperature))

    lp_all, ref_all = logprobs(policy), logprobs(ref)
    entropy = -(np.exp(lp_all) * lp_all).sum(-1)
    ent = []
    values_all = np.asarray(nnx.merge(setup.headed.graphdef, value).score(_hidden(setup.headed.graphdef, value, aligned)))
    rm_all = np.asarray(nnx.merge(setup.reward_graphdef, reward).score(_hidden(setup.reward_graphdef, reward, aligned)))
    for b in range(B):
        n, n_prompt = lengths[b], len(rows[b]) - lengths[b]
        before = n_prompt - 1 + np.arange(n)  # the state before response token t predicts it
        resp = sample["response"][b, :n]
        lp, ref_lp = lp_all[b, before, resp], ref_all[b, before, resp]
        np.testing.assert_allclose(data["logprobs"][b, :n], lp, atol=2e-5)
        np.testing.assert_allclose(data["kl"][b, :n], lp - ref_lp, atol=3e-5)
        np.testing.assert_allclose(data["values"][b, :n], values_all[b, before], atol=2e-5)
        np.testing.assert_allclose(data["scores"][b], (rm_all[b, len(rows[b]) - 1] - NORM[0]) / NORM[1], atol=2e-5)
        ent.extend(entropy[b, before])
    np.testing.assert_allclose(stats["rollout_entropy"], np.mean(ent), rtol=1e-5)
    assert not data["logprobs"][~sample["response_mask"]].any() and not data["kl"][~sample["response_mask"]].any()
    # The sampler drew from the same temperature-scaled distribution the scoring pass recomputes.
    np.testing.assert_allclose(data["logprobs"], sample["logprobs"], atol=2e-5)
    # summed per-token reward = score - eos_penalty (no EOS) - beta * sequence log-ratio
    ended = np.array([(sample["response"][b, :lengths[b]] == EOS).any() for b in range(B)])
    expected_reward = data["scores"] - cfg.eos_penalty * ~ended - cfg.beta * data["kl"].sum(-1)
    np.testing.assert_allclose(stats["reward"], expected_reward.mean(), atol=1e-5)
    np.testing.assert_allclose(stats["eos_fraction"], ended.mean())
    assert 0 < ended.mean() < 1


def _record_grads():
    """An 'optimizer' that leaves params alone and keeps the last gradient as its state."""
    return optax.GradientTransformation(lambda p: jax.tree.map(jnp.zeros_like, p),
                                        lambda g, s, p=None: (jax.tree.map(jnp.zeros_like, g), g))


def _hand_loss(setup, cfg, params, value_params, d, ptx):
    """The total loss written out directly: full forward passes, explicit clipping, mean over real tokens."""
    policy = nnx.merge(setup.policy_graphdef, params)
    value = nnx.merge(setup.value_graphdef, value_params)
    m = d["response_mask"].astype(jnp.float32)
    n = m.sum()
    logits = policy(d["tokens"], d["positions"], d["attention_mask"])[:, P - 1:-1] / cfg.temperature
    logp = jnp.take_along_axis(jax.nn.log_softmax(logits), d["tokens"][:, P:, None], -1)[..., 0]
    ratio = jnp.exp(jnp.where(m > 0, logp - d["logprobs"], 0.0))
    pg = jnp.maximum(-d["advantages"] * ratio, -d["advantages"] * jnp.clip(ratio, 1 - cfg.clip, 1 + cfg.clip))
    h, _ = value.trunk(d["tokens"], d["positions"], d["attention_mask"])
    v = value.score(h)[:, P - 1:-1]
    vc = d["values"] + jnp.clip(v - d["values"], -cfg.vf_clip, cfg.vf_clip)
    vf = 0.5 * jnp.maximum((v - d["returns"]) ** 2, (vc - d["returns"]) ** 2)
    lm = policy(ptx)[:, :-1]
    nll = -jnp.take_along_axis(jax.nn.log_softmax(lm), ptx[:, 1:, None], -1)[..., 0].mean()
    return (pg * m).sum() / n + cfg.vf_coef * (vf * m).sum() / n + cfg.ptx_coef * nll


def test_update_gradient_equals_grad_of_hand_written_loss():
    cfg = dataclasses.replace(BASE, epochs=1, minibatches=1, ptx_coef=1.7, ptx_batch_size=4, ptx_seq_len=12,
                              vf_clip=0.05)
    sample, data, _ = _rollout(BASE)  # the rollout does not depend on the update's settings
    rng = np.random.default_rng(1)
    # Move the "old" logprobs and values away from the current model so that both clips are active.
    data["logprobs"] = np.where(data["response_mask"], data["logprobs"] + 0.4 * rng.normal(size=data["logprobs"].shape), 0)
    data["values"] = np.where(data["response_mask"], data["values"] + 0.3 * rng.normal(size=data["values"].shape), 0)
    data = {k: jnp.asarray(v, jnp.float32 if v.dtype == np.float64 else None) for k, v in data.items()}
    ptx = jnp.asarray(rng.integers(0, CFG.vocab_size, (1, 4, 12)), jnp.int32)
    setup = _setup(cfg, tx=_record_grads(), vtx=_record_grads())
    policy, value = _fresh(BASE)
    update = ppo.make_update(setup.policy_graphdef, setup.value_graphdef, cfg, setup.policy_tx, setup.value_tx)
    state = stages.ppo.init_state(setup, *_fresh(BASE))
    new_state, metrics = update(state, data, ptx, jax.random.key(0))
    assert 0 < float(metrics["clipfrac"][0]) < 1 and 0 < float(metrics["vf_clipfrac"][0]) < 1
    hand = jax.jit(functools.partial(_hand_loss, setup, cfg))
    grads = jax.jit(jax.grad(hand, argnums=(0, 1)))(policy, value, data, ptx[0])
    for got, want in zip(jax.tree.leaves((new_state["opt_state"], new_state["value_opt_state"])), jax.tree.leaves(grads)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(metrics["loss"][0], hand(policy, value, data, ptx[0]), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(new_state["params"]), jax.tree.leaves(policy)):
        np.testing.assert_array_equal(a, b)


def test_lr_zero_leaves_params_and_gives_zero_approxkl():
    sample, data, _ = _rollout(BASE)
    optim = config_base.optim_config(0.0)
    setup = _setup(BASE, tx=train.make_optimizer(optim, 10), vtx=train.make_optimizer(optim, 10))
    policy, value = _fresh(BASE)
    before = jax.device_get((policy, value))
    update = ppo.make_update(setup.policy_graphdef, setup.value_graphdef, BASE, setup.policy_tx, setup.value_tx)
    state, metrics = update(stages.ppo.init_state(setup, policy, value), data, None, jax.random.key(0))
    for a, b in zip(jax.tree.leaves(jax.device_get((state["params"], state["value_params"]))), jax.tree.leaves(before)):
        np.testing.assert_array_equal(a, b)
    assert metrics["approxkl"].shape == (BASE.epochs * BASE.minibatches,)
    # The old logprobs come from the scoring program (16 rows), the new from the update's (8-row minibatch):
    # XLA may sum in another order, so the log-ratio is 0 up to float32 rounding of |logprob| ~ 5 (~1e-6),
    # i.e. approxkl ~1e-13; one step at any learning rate that moves the policy gives >1e-6.
    assert float(metrics["approxkl"][0]) < 1e-11 and float(metrics["clipfrac"][0]) == 0.0
    assert int(state["step"]) == 1 and int(state["bad_step"]) == -1


def test_nonfinite_minibatch_is_skipped_and_recorded():
    """NaN advantages make every minibatch's loss non-finite: the policy, the value model and both optimizer
    states stay as they were (the value's own gradients are finite: the two skip together), bad_step names it."""
    sample, data, _ = _rollout(BASE)
    data = {**data, "advantages": np.full(np.shape(data["advantages"]), np.nan, np.float32)}
    optim = config_base.optim_config(1e-2)
    setup = _setup(BASE, tx=train.make_optimizer(optim, 10), vtx=train.make_optimizer(optim, 10))
    state = stages.ppo.init_state(setup, *_fresh(BASE))
    before = jax.device_get(state)
    update = ppo.make_update(setup.policy_graphdef, setup.value_graphdef, BASE, setup.policy_tx, setup.value_tx)
    state, metrics = update(state, data, None, jax.random.key(0))
    assert not np.isfinite(metrics["loss"]).any() and np.isfinite(metrics["value_grad_norm"]).all()
    assert BASE.ema_decay > 0  # configs/ppo.py's: the moving average skips the step too
    for key in ("params", "value_params", "opt_state", "value_opt_state", "ema_params"):
        for a, b in zip(jax.tree.leaves(jax.device_get(state[key])), jax.tree.leaves(before[key])):
            np.testing.assert_array_equal(a, b)
    assert int(state["step"]) == 1 and int(state["bad_step"]) == 0


def test_moving_average_follows_every_gradient_step():
    """With ema_decay d, an update of two gradient steps (p0 -> p1 -> p2) leaves the trained weights at p2 and the
    average at d^2 p0 + d (1 - d) p1 + (1 - d) p2 (ppo.ema after each step, not once per rollout); p1 and p2
    come from two one-step updates without an average. Each step's minibatch is the whole rollout, so the two
    runs differ only in the order rows are summed (float rounding, as in test_sharded_update_equals_single_device)."""
    d = 0.75
    _, data, _ = _rollout(BASE)
    plain = dataclasses.replace(BASE, epochs=1, minibatches=1, ema_decay=0.0)
    averaged = dataclasses.replace(BASE, epochs=2, minibatches=1, ema_decay=d)
    trained = []
    for cfg, keys in ((plain, (0, 1)), (averaged, (0,))):
        setup = _setup(cfg)
        assert ("ema_params" in setup.abstract) == (cfg.ema_decay > 0)
        update = ppo.make_update(setup.policy_graphdef, setup.value_graphdef, cfg, setup.policy_tx, setup.value_tx)
        state = stages.ppo.init_state(setup, *_fresh(BASE))
        for k in keys:
            state, _ = update(state, data, None, jax.random.key(k))
            trained.append(jax.device_get(state))
    p0 = jax.device_get(_world(BASE)[2][0])
    (p1, p2), final = [s["params"] for s in trained[:2]], trained[2]
    want = jax.tree.map(lambda a, b, c: d * d * a.astype(np.float64) + d * (1 - d) * b + (1 - d) * c, p0, p1, p2)
    for got, ref in ((final["params"], p2), (final["ema_params"], want)):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The steps moved the weights by more than that tolerance: an average taken once per rollout would fail.
    assert max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p0))) > 1e-3


def _one_iteration(shape, cfg):
    setup, programs, (policy, value, ref, reward) = _world(cfg, shape)
    with jax.set_mesh(setup.mesh):
        state = stages.ppo.init_state(setup, *_fresh(cfg, shape))
        batch = sharding.shard_batch(_prompts(5), setup.mesh)
        state, sample, stats, metrics, _ = stages.ppo.iteration(programs, state, ref, reward, batch, None, jax.random.key(3))
        return jax.device_get((state, sample, stats, metrics)), programs


def test_sharded_update_equals_single_device():
    """The same rollout through the update on one device and on a (2, 2, 2) mesh (FSDP x tensor x data)."""
    cfg = dataclasses.replace(BASE, adaptive_kl=True, target_kl=0.5, horizon=100)
    _, data, _ = _rollout(BASE)
    out = []
    for shape in [(1, 1, 1), (2, 2, 2)]:
        setup = _setup(cfg, shape)
        policy, value, _, _ = _params(setup, cfg)  # host draws: the same values on both meshes
        update = ppo.make_update(setup.policy_graphdef, setup.value_graphdef, cfg, setup.policy_tx, setup.value_tx,
                                 setup.shardings, lambda ndim: sharding.batch_sharding(setup.mesh, ndim))
        with jax.set_mesh(setup.mesh):
            state = stages.ppo.init_state(setup, policy, value)
            if shape != (1, 1, 1):
                assert state["params"]["h"][0]["mlp"]["c_fc_kernel"].sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
            state, metrics = update(state, sharding.shard_batch(data, setup.mesh), None, jax.random.key(3))
        out.append(jax.device_get((state, metrics)))
    (one, m1), (many, m8) = out
    for k in m1:
        np.testing.assert_allclose(m1[k], m8[k], rtol=1e-4, atol=1e-6, err_msg=k)
    assert float(one["beta"]) != cfg.beta  # the controller moved beta, identically on both meshes
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(many)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_params_move_and_nothing_recompiles():
    # The same cache key as _fresh's call: built outside the mesh context, as the stage runner builds it.
    setup, programs, (policy, value, ref, reward) = _world(BASE, (1, 1, 1))
    with jax.set_mesh(setup.mesh):
        state = stages.ppo.init_state(setup, *_fresh(BASE))
        for it in range(3):
            batch = sharding.shard_batch(_prompts(it), setup.mesh)
            state, *_ = stages.ppo.iteration(programs, state, ref, reward, batch, None, jax.random.key(it))
    assert int(state["step"]) == 3
    assert not np.allclose(jax.device_get(state["params"]["wte"]["embedding"]), jax.device_get(policy["wte"]["embedding"]))
    for name in ("generate", "score", "update"):
        assert getattr(programs, name)._cache_size() == 1, name


def test_shared_trunk_value_head_trains_the_trunk():
    cfg = dataclasses.replace(BASE, shared_trunk=True)
    setup = _setup(cfg)
    assert setup.value_graphdef is None and set(setup.abstract["value_params"]) == set(stages.ppo.HEAD)
    (state, _, stats, metrics), _ = _one_iteration((1, 1, 1), cfg)
    assert np.isfinite(metrics["value_loss"]).all() and np.isfinite(stats["value_mean"])
    _, _, (policy, head, _, _) = _world(cfg)
    assert not np.allclose(state["value_params"]["score_kernel"], jax.device_get(head["score_kernel"]))
    # The value loss reaches the trunk: that is what sharing means.
    _, data, _ = _rollout(cfg)
    value_loss = lambda p: ppo.ppo_loss(setup.policy_graphdef, None, cfg, P, p, head, data, None)[1]["value_loss"]  # noqa: E731
    grads = jax.jit(jax.grad(value_loss))(policy)
    assert np.abs(grads["h"][0]["mlp"]["c_fc_kernel"]).max() > 0


def test_frozen_models_in_bfloat16():
    """bf16 reference and reward model: half the memory, scores and KL within bf16 rounding of float32."""
    setup, programs, (policy, value, ref, reward) = _world(BASE)
    cast = stages.ppo.frozen(dataclasses.replace(setup, cfg=dataclasses.replace(BASE, frozen_dtype="bfloat16")), (ref, reward))
    assert {x.dtype for x in jax.tree.leaves(cast)} == {jnp.dtype(jnp.bfloat16)}
    sample, data, _ = _rollout(BASE)
    mask = jnp.asarray(_prompts(0)["prompt_mask"])
    data16, _ = programs.score(policy, value, *cast, jnp.float32(BASE.beta), jax.tree.map(jnp.asarray, sample), mask)
    data16 = jax.device_get(data16)
    np.testing.assert_allclose(data16["logprobs"], data["logprobs"], atol=1e-6)  # the policy stays float32
    np.testing.assert_allclose(data16["kl"], data["kl"], atol=0.05)
    np.testing.assert_allclose(data16["scores"], data["scores"], atol=0.05)
    assert np.abs(data16["kl"] - data["kl"]).max() > 0  # the reference really ran in bf16


def _assert_same_iteration(a, b):
    """Two (state, sample, stats, update metrics) of stages.ppo.iteration computed in two layouts: the rollout's
    statistics and the update's metrics to float32 rounding, the state after four Adam steps from the same
    gradients summed in another order to the sharded test's tolerance."""
    (state_a, _, stats_a, metrics_a), (state_b, _, stats_b, metrics_b) = a, b
    for k in stats_a:
        np.testing.assert_allclose(stats_a[k], stats_b[k], rtol=1e-5, atol=1e-6, err_msg=k)
    for k in metrics_a:
        np.testing.assert_allclose(metrics_a[k], metrics_b[k], rtol=1e-4, atol=1e-6, err_msg=k)
    for x, y in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


def test_prompt_width_changes_nothing_but_the_work():
    """The same prompts left-padded 5 slots wider (a batch padded to prompt_len instead of its longest prompt):
    the same samples, the same rollout (logprobs, values, KL, rewards' advantages and returns, scores) and the
    same update, to float32 rounding; each program compiles once more, for the new width."""
    setup, programs, (policy, value, ref, reward) = _world(BASE, (1, 1, 1))  # _fresh's cache key, outside the mesh
    extra = 5
    prompts = _prompts(0)
    wide = {"prompt_tokens": np.pad(prompts["prompt_tokens"], ((0, 0), (extra, 0)), constant_values=PAD),
            "prompt_mask": np.pad(prompts["prompt_mask"], ((0, 0), (extra, 0)))}
    out = []
    for batch in (prompts, wide):
        params = _fresh(BASE)
        with jax.set_mesh(setup.mesh):
            state = stages.ppo.init_state(setup, *params)
            batch = sharding.shard_batch(batch, setup.mesh)
            state, sample, stats, metrics, _ = stages.ppo.iteration(programs, state, ref, reward, batch, None,
                                                                    jax.random.key(3))
            out.append(jax.device_get((state, sample, stats, metrics)))
    (s1, sample1, _, _), (s2, sample2, _, _) = out
    assert sample2["tokens"].shape[1] == sample1["tokens"].shape[1] + extra
    np.testing.assert_array_equal(sample1["response"], sample2["response"])
    np.testing.assert_array_equal(sample1["tokens"], sample2["tokens"][:, extra:])
    _assert_same_iteration(*out)
    for name in ("generate", "score", "update"):
        assert getattr(programs, name)._cache_size() >= 2, name
    assert not np.allclose(s1["params"]["wte"]["embedding"], jax.device_get(policy["wte"]["embedding"]))


def test_update_on_one_device_samples_on_all():
    """The stage's default on a CPU host: sampling and scoring over the (8, 1, 1) mesh, the update and the state on
    its first device; one iteration equals the iteration whose update runs over all eight."""
    out = []
    for update_devices in (0, 8):
        setup = _setup(BASE, (8, 1, 1), update_devices=update_devices)
        assert setup.update_mesh.devices.size == (1 if update_devices == 0 else 8)
        programs = stages.ppo.make_programs(setup, EOS, PAD, NORM)
        policy, value, ref, reward = _params(setup, BASE)
        with jax.set_mesh(setup.mesh):
            state = stages.ppo.init_state(setup, policy, value)
            batch = sharding.shard_batch(_prompts(5), setup.mesh)
            state, sample, stats, metrics, _ = stages.ppo.iteration(programs, state, ref, reward, batch, None,
                                                                    jax.random.key(3))
            placed = {x.sharding.device_set == set(setup.update_mesh.devices.flat) for x in jax.tree.leaves(state)}
            rollout = programs.for_rollout(state)
            assert placed == {True} and sample["tokens"].sharding.device_set == set(jax.devices())
            assert {x.sharding.device_set == set(jax.devices()) for x in jax.tree.leaves(rollout)} == {True}
            out.append(jax.device_get((state, sample, stats, metrics)))
    np.testing.assert_array_equal(out[0][1]["tokens"], out[1][1]["tokens"])
    _assert_same_iteration(*out)
