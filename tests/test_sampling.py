"""KV-cache sampling against full forward passes and a plain argmax loop without a cache."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from instructgpt_jax import checkpoint
from instructgpt_jax.model import GPTConfig, abstract_model, positions_from_mask
from instructgpt_jax.data.batching import left_pad
from instructgpt_jax.sampling import (SampleConfig, decode_step, filter_logits, inverse_cdf, make_generate, prefill,
                                      sample_cli, sample_token)

CFG = GPTConfig(vocab_size=61, n_positions=32, n_layer=2, n_head=2, n_embd=32)
P, N = 7, 6
LENGTHS = [7, 4, 1]  # real prompt tokens per row; the rest is left padding


def random_params(cfg, seed=0, std=0.3):
    """Params drawn on the host (no per-shape XLA compiles): N(0, std), LayerNorm scales around 1.

    Larger weights than GPT-2's init make next-token distributions peaked, so greedy choices are not
    near-ties that float rounding could flip between the cached and the uncached computation.
    """
    rng = np.random.default_rng(seed)
    abstract = nnx.to_pure_dict(abstract_model(cfg)[1])
    return jax.tree_util.tree_map_with_path(
        lambda path, x: (float(path[-1].key == "scale") + std * rng.standard_normal(x.shape)).astype(np.float32),
        abstract)


@functools.cache
def generator(graphdef, cfg: SampleConfig):
    """One jitted sampler per (graphdef, config) across tests: each costs an XLA compile."""
    return make_generate(graphdef, cfg)


GREEDY = SampleConfig(max_new_tokens=N, temperature=0.0, eos_id=CFG.vocab_size, pad_id=59)  # EOS never sampled


@pytest.fixture(scope="module")
def model_and_params():
    return abstract_model(CFG)[0], random_params(CFG)


def prompts(seed=0):
    rng = np.random.default_rng(seed)
    rows = [list(rng.integers(0, CFG.vocab_size, n)) for n in LENGTHS]
    return left_pad(rows, pad_id=0, length=P)


@functools.partial(jax.jit, static_argnums=0)
def forward(graphdef, params, tokens, mask):
    model = nnx.merge(graphdef, params)
    return model(tokens, positions_from_mask(mask), mask).astype(jnp.float32)


def full_logits(model_and_params, tokens, mask):
    return np.asarray(forward(*model_and_params, jnp.asarray(tokens), jnp.asarray(mask)))


def test_cached_logits_equal_full_forward(model_and_params):
    graphdef, params = model_and_params
    tokens, mask = prompts()
    cont = np.random.default_rng(1).integers(0, CFG.vocab_size, (len(LENGTHS), N)).astype(np.int32)
    full_mask = np.concatenate([mask, np.ones_like(cont, bool)], axis=1)
    # Logits at slot s predict the token at slot s + 1: new token t is predicted at slot P - 1 + t.
    ref = full_logits(model_and_params, np.concatenate([tokens, cont], axis=1), full_mask)

    merged = lambda p: nnx.merge(graphdef, p)  # noqa: E731
    pre = jax.jit(lambda p, tok, m: prefill(merged(p), tok, m, P + N - 1))
    step = jax.jit(lambda p, *args: decode_step(merged(p), *args))
    logits, cache, key_mask, n_real = pre(params, tokens, mask)
    np.testing.assert_array_equal(n_real, LENGTHS)
    np.testing.assert_allclose(logits, ref[:, P - 1], rtol=0, atol=1e-5)
    for t in range(1, N):
        logits, cache = step(params, cont[:, t - 1], n_real + t - 1, P + t - 1, cache, key_mask)
        np.testing.assert_allclose(logits, ref[:, P - 1 + t], rtol=0, atol=1e-5, err_msg=f"step {t}")


def greedy_loop(model_and_params, row, n):
    """Argmax decoding of one unpadded row, recomputing the full forward pass at every step. The sequence
    is right-padded to a fixed length (one compile): causality keeps later slots from changing earlier logits."""
    seq, length = list(row), len(row) + n
    for _ in range(n):
        padded = np.array([seq + [0] * (length - len(seq))])
        logits = full_logits(model_and_params, padded, np.ones((1, length), bool))
        seq.append(int(np.argmax(logits[0, len(seq) - 1])))
    return seq[len(row):]


def test_greedy_equals_uncached_argmax_loop(model_and_params):
    graphdef, params = model_and_params
    tokens, mask = prompts()
    out = generator(graphdef, GREEDY)(params, tokens, mask, jax.random.key(0))
    for i in range(len(LENGTHS)):
        assert out["response"][i].tolist() == greedy_loop(model_and_params, tokens[i][mask[i]].tolist(), N), f"row {i}"
    assert out["tokens"].shape == (len(LENGTHS), P + N)
    np.testing.assert_array_equal(out["tokens"][:, P:], out["response"])
    np.testing.assert_array_equal(out["tokens"][:, :P], np.where(mask, tokens, GREEDY.pad_id))
    assert out["response_mask"].all() and out["lengths"].tolist() == [N] * len(LENGTHS)


def test_top_k_1_and_tiny_top_p_equal_greedy(model_and_params):
    graphdef, params = model_and_params
    tokens, mask = prompts(2)
    greedy = generator(graphdef, GREEDY)(params, tokens, mask, jax.random.key(0))["response"]
    for kw in (dict(top_k=1), dict(top_p=1e-6)):
        cfg = dataclasses.replace(GREEDY, temperature=1.0, **kw)
        out = generator(graphdef, cfg)(params, tokens, mask, jax.random.key(7))["response"]
        np.testing.assert_array_equal(out, greedy, err_msg=str(kw))


def test_filter_logits_against_numpy():
    logits = jnp.log(jnp.array([[0.5, 0.05, 0.3, 0.15], [0.1, 0.2, 0.3, 0.4]]))
    kept = lambda x: np.isfinite(np.asarray(x))  # noqa: E731
    np.testing.assert_array_equal(kept(filter_logits(logits, 2, 1.0)), [[1, 0, 1, 0], [0, 0, 1, 1]])
    # Nucleus 0.6: row 0 keeps 0.5 then 0.3 (mass before 0.3 is 0.5 < 0.6); row 1 keeps 0.4, 0.3.
    np.testing.assert_array_equal(kept(filter_logits(logits, 0, 0.6)), [[1, 0, 1, 0], [0, 0, 1, 1]])
    np.testing.assert_array_equal(kept(filter_logits(logits, 0, 0.85)), [[1, 0, 1, 1], [0, 1, 1, 1]])
    np.testing.assert_array_equal(kept(filter_logits(logits, 3, 0.5)), [[1, 0, 0, 0], [0, 0, 1, 1]])


def test_inverse_cdf_draws_follow_the_distribution():
    """200,000 draws per row: every frequency within 5 standard errors of its probability, zero-mass entries
    (filtered, or a whole block of them, or the last entries) never drawn, for vocabularies that do and do not
    split into whole blocks."""
    rng = np.random.default_rng(0)
    n = 200_000
    for V in (8, 61, 264, 1000):
        logits = rng.normal(0, 2, (3, V))
        logits[0, : V // 3] = -np.inf  # a run of zero-mass entries, whole blocks of them for the larger V
        logits[1, -1] = -np.inf  # the last entry
        logits[2, ::2] = -np.inf  # every other entry
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        keys = jax.random.split(jax.random.key(V), n)
        draws = np.asarray(jax.jit(jax.vmap(lambda k: inverse_cdf(k, jnp.asarray(probs, jnp.float32))))(keys))
        for row in range(3):
            freq = np.bincount(draws[:, row], minlength=V) / n
            assert freq[probs[row] == 0].sum() == 0, (V, row)
            se = np.sqrt(probs[row] * (1 - probs[row]) / n)
            np.testing.assert_array_less(np.abs(freq - probs[row]), 5 * se + 1e-9, err_msg=f"V={V} row {row}")


def test_sample_token_samples_the_filtered_tempered_distribution():
    """top-k then top-p, at temperature 0.7: the draws' frequencies equal the renormalised kept mass (NumPy)."""
    logits = np.log(np.array([[0.05, 0.3, 0.1, 0.25, 0.2, 0.1]]))
    cfg = SampleConfig(max_new_tokens=1, temperature=0.7, top_k=4, top_p=0.8, eos_id=1, pad_id=0)
    scaled = logits[0] / 0.7
    p = np.exp(scaled - scaled.max()) / np.exp(scaled - scaled.max()).sum()
    order = np.argsort(-p)[:4]  # top-k 4
    mass = p[order] / p[order].sum()
    keep = order[: int(np.searchsorted(np.cumsum(mass), 0.8) + 1)]  # smallest prefix reaching 0.8
    ref = np.zeros(6)
    ref[keep] = p[keep] / p[keep].sum()
    n = 100_000
    tokens, logprobs, entropy = jax.jit(jax.vmap(lambda k: sample_token(k, jnp.asarray(logits, jnp.float32), cfg)))(
        jax.random.split(jax.random.key(0), n))
    freq = np.bincount(np.asarray(tokens)[:, 0], minlength=6) / n
    np.testing.assert_array_less(np.abs(freq - ref), 5 * np.sqrt(ref * (1 - ref) / n) + 1e-9)
    np.testing.assert_allclose(np.asarray(logprobs)[:, 0], np.log(p)[np.asarray(tokens)[:, 0]], rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(entropy)[:, 0], -(p * np.log(p)).sum(), rtol=1e-5)  # unfiltered, tempered


def test_logprobs_are_temperature_scaled_unfiltered(model_and_params):
    """What PPO recomputes: log_softmax(logits / T) of a full forward pass over the sampled sequence."""
    graphdef, params = model_and_params
    tokens, mask = prompts(3)
    cfg = SampleConfig(max_new_tokens=N, temperature=0.7, top_k=5, top_p=0.9, eos_id=CFG.vocab_size, pad_id=0)
    out = make_generate(graphdef, cfg)(params, tokens, mask, jax.random.key(3))
    full_mask = np.concatenate([mask, out["response_mask"]], axis=1)
    logits = full_logits(model_and_params, out["tokens"], full_mask)[:, P - 1:-1] / 0.7
    log_p = np.asarray(jax.nn.log_softmax(logits))
    ref = np.take_along_axis(log_p, out["response"][..., None], -1)[..., 0]
    np.testing.assert_allclose(out["logprobs"], ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(out["entropy"], -(np.exp(log_p) * log_p).sum(-1), rtol=0, atol=1e-5)
    # Each sampled token survived the filters: it is among the 5 most likely at its step.
    rank = (logits > np.take_along_axis(logits, out["response"][..., None], -1)).sum(-1)
    assert (rank < 5).all()


def test_eos_stops_row_and_masks_after(model_and_params):
    graphdef, params = model_and_params
    tokens, mask = prompts()
    pad = GREEDY.pad_id
    ref = generator(graphdef, GREEDY)(params, tokens, mask, jax.random.key(0))
    eos = int(ref["response"][0, 2])
    out = generator(graphdef, dataclasses.replace(GREEDY, eos_id=eos))(params, tokens, mask, jax.random.key(0))
    for i in range(len(LENGTHS)):
        row = ref["response"][i].tolist()
        stop = row.index(eos) + 1 if eos in row else N
        assert out["response"][i].tolist() == row[:stop] + [pad] * (N - stop), f"row {i}"
        assert out["response_mask"][i].tolist() == [True] * stop + [False] * (N - stop)
        assert out["lengths"][i] == stop
        np.testing.assert_array_equal(out["logprobs"][i, :stop], ref["logprobs"][i, :stop])
        assert (out["logprobs"][i, stop:] == 0).all()
    assert out["lengths"][0] <= 3


def test_all_rows_finish_at_first_token(model_and_params):
    """When every row emits EOS at step 0 the loop stops at once: all later slots are padding."""
    graphdef, params = model_and_params
    tokens, mask = prompts()
    tokens, mask = tokens[:1].repeat(3, 0), mask[:1].repeat(3, 0)  # three copies of one prompt
    first = int(generator(graphdef, GREEDY)(params, tokens, mask, jax.random.key(0))["response"][0, 0])
    out = generator(graphdef, dataclasses.replace(GREEDY, eos_id=first))(params, tokens, mask, jax.random.key(0))
    assert out["lengths"].tolist() == [1, 1, 1] and (out["response"][:, 1:] == GREEDY.pad_id).all()


def test_no_recompilation_and_bf16_params(model_and_params):
    graphdef, params = model_and_params
    cfg = SampleConfig(max_new_tokens=4, temperature=1.0, top_p=0.9, eos_id=1, pad_id=0)
    generate = make_generate(graphdef, cfg)
    a, mask_a = prompts(4)
    b, mask_b = prompts(5)
    mask_b[1, :2] = False  # other padding, same shapes
    generate(params, a, mask_a, jax.random.key(0))
    generate(jax.tree.map(lambda x: x * 1.01, params), b, mask_b, jax.random.key(1))
    assert generate._cache_size() == 1

    # A bf16 params tree (e.g. a frozen reference policy kept in bf16) with bf16 compute.
    bf16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)
    out = make_generate(abstract_model(dataclasses.replace(CFG, dtype="bfloat16"))[0], cfg)(bf16, a, mask_a, jax.random.key(0))
    assert out["logprobs"].dtype == jnp.float32 and np.isfinite(out["logprobs"]).all()
    assert out["response"].shape == (len(LENGTHS), 4)


def test_errors():
    with pytest.raises(ValueError, match="top_p"):
        SampleConfig(max_new_tokens=4, top_p=0.0, eos_id=1, pad_id=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        SampleConfig(max_new_tokens=0, eos_id=1, pad_id=0)
    with pytest.raises(ValueError, match="expected 1 to 3"):
        left_pad([[1, 2, 3, 4]], pad_id=0, length=3)
    generate = make_generate(abstract_model(CFG)[0], SampleConfig(max_new_tokens=30, eos_id=1, pad_id=0))
    params = random_params(CFG)
    tokens, mask = prompts()
    with pytest.raises(ValueError, match="exceeds n_positions=32"):
        generate(params, tokens, mask, jax.random.key(0))


def test_sample_cli(tmp_path):
    cfg = GPTConfig(vocab_size=264, n_positions=64, n_layer=1, n_head=2, n_embd=16)
    params = random_params(cfg, std=0.02)
    manager = checkpoint.make_manager(str(tmp_path / "checkpoints"))
    checkpoint.save(manager, 5, {"params": params}, {"model": dataclasses.asdict(cfg), "tokenizer": "byte"})
    manager.wait_until_finished()
    out = sample_cli(str(tmp_path), ["Reverse: abc", "hi"], max_new_tokens=5, seed=1)
    assert out["step"] == 5 and [s["prompt"] for s in out["samples"]] == ["Reverse: abc", "hi"]
    assert all(1 <= s["length"] <= 5 and isinstance(s["response"], str) for s in out["samples"])


def test_sharded_equals_single_device(model_and_params):
    """Params sharded by the default logical rules and the batch over ('data', 'fsdp') on a (2, 2, 2) mesh."""
    from instructgpt_jax import sharding

    graphdef, params = model_and_params
    tokens, mask = left_pad([[1, 2, 3], [4], [5, 6], [7, 8, 9, 10]] * 2, pad_id=0)
    generate = generator(graphdef, GREEDY)
    ref = generate(params, tokens, mask, jax.random.key(0))
    mesh = sharding.make_mesh((2, 2, 2))
    # abstract_model outside the mesh: under one, nnx.eval_shape turns the logical names into mesh specs.
    shardings = sharding.param_shardings(abstract_model(CFG)[1], mesh)
    with jax.set_mesh(mesh):
        sharded = jax.device_put(params, shardings)
        batch = sharding.shard_batch({"tokens": tokens, "mask": mask}, mesh)
        out = generate(sharded, batch["tokens"], batch["mask"], jax.random.key(0))
    np.testing.assert_array_equal(out["response"], ref["response"])
    np.testing.assert_allclose(out["logprobs"], ref["logprobs"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_rows_decoded_per_device_equal_one_program(model_and_params, temperature):
    """On a mesh that splits only the batch (8 x 1 x 1) each device decodes its own rows in its own loop and
    stops when they have ended: every row samples the tokens (and logprobs, to rounding) it samples without a
    mesh, greedy and at temperature 1, with an EOS that ends some rows early and others not (in the greedy run
    the first device's two rows, one prompt twice, by step 1: that device's loop stops while the others run on)."""
    from instructgpt_jax import sharding

    graphdef, params = model_and_params
    mesh = sharding.make_mesh((-1, 1, 1))
    rng = np.random.default_rng(5)
    rows = [list(rng.integers(0, CFG.vocab_size, rng.integers(1, P + 1))) for _ in range(2 * mesh.size)]
    rows[1] = rows[0]
    tokens, mask = left_pad(rows, pad_id=0, length=P)
    cfg = dataclasses.replace(GREEDY, temperature=temperature)
    key = jax.random.key(3)
    first = make_generate(graphdef, cfg)(params, tokens, mask, key)
    cfg = dataclasses.replace(cfg, eos_id=int(first["response"][0, 1]))
    ref = make_generate(graphdef, cfg)(params, tokens, mask, key)
    with jax.set_mesh(mesh):
        batch = sharding.shard_batch({"tokens": tokens, "mask": mask}, mesh)
        out = make_generate(graphdef, cfg, mesh)(jax.device_put(params, sharding.replicated(mesh)), batch["tokens"],
                                                 batch["mask"], key)
    lengths = np.asarray(ref["lengths"])
    assert temperature or lengths[0] == lengths[1] <= 2
    assert lengths.min() < N and lengths.max() == N  # rows end at different steps
    for name in ("response", "response_mask", "lengths", "tokens"):
        np.testing.assert_array_equal(out[name], ref[name], err_msg=name)
    np.testing.assert_allclose(out["logprobs"], ref["logprobs"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(out["entropy"], ref["entropy"], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match=r"prompts in a sampling batch=3 is not divisible by data x fsdp = 8"):
        make_generate(graphdef, cfg, mesh)(params, tokens[:3], mask[:3], key)


def test_generate_texts_buckets_prompts_by_length_without_changing_a_sample():
    """Batches of one prompt-length bucket (a shorter prefill and cache) give every prompt, in its own
    place, the greedy text it gets in one batch padded to the longest prompt."""
    from instructgpt_jax.sampling import generate_texts
    from instructgpt_jax.tokenizer import make_tokenizer

    cfg = dataclasses.replace(CFG, vocab_size=264, n_positions=64)
    graphdef, params = abstract_model(cfg)[0], random_params(cfg, seed=3)
    tok = make_tokenizer("byte")
    greedy = SampleConfig(max_new_tokens=N, temperature=0.0, eos_id=cfg.vocab_size, pad_id=tok.pad_id)
    texts = ["a" * n for n in (3, 40, 17, 5, 33, 12, 1, 20)]
    one_shape, _ = generate_texts(generator(graphdef, greedy), params, tok, texts, 48, 4, jax.random.key(0), bucket=0)
    bucketed, lengths = generate_texts(generator(graphdef, greedy), params, tok, texts, 48, 4, jax.random.key(0),
                                       bucket=16)
    assert bucketed == one_shape and lengths.tolist() == [N] * len(texts) and len(set(bucketed)) > 4
    alone = [generate_texts(generator(graphdef, greedy), params, tok, [t], 48, 4, jax.random.key(0), bucket=16)[0][0]
             for t in texts[:3]]
    assert alone == bucketed[:3]


def test_generate_texts_batch_keys_are_the_documented_fold_ins():
    """At temperature 1 each batch samples with fold_in(rng, its start), as a hand loop of one batch at a time
    gives it: the salt folded inside the program, and the next batch dispatched before the last is read, change
    no sample."""
    from instructgpt_jax.sampling import generate_texts
    from instructgpt_jax.tokenizer import make_tokenizer

    cfg = dataclasses.replace(CFG, vocab_size=264, n_positions=64)
    graphdef, params = abstract_model(cfg)[0], random_params(cfg, seed=5, std=0.1)
    tok = make_tokenizer("byte")
    sample_cfg = SampleConfig(max_new_tokens=N, temperature=1.0, eos_id=cfg.vocab_size, pad_id=tok.pad_id)
    generate = generator(graphdef, sample_cfg)
    texts = ["ab", "cde", "f", "ghij", "kl", "m", "nop"]
    key = jax.random.key(7)
    got, _ = generate_texts(generate, params, tok, texts, 8, 3, key)
    by_hand = []
    for start in range(0, len(texts), 3):
        chunk = texts[start:start + 3]
        tokens, mask = left_pad([tok.encode_prompt(t) for t in chunk + [chunk[0]] * (3 - len(chunk))], tok.pad_id, 8)
        out = generate(params, tokens, mask, jax.random.fold_in(key, start))
        rows = zip(np.asarray(out["response"]), np.asarray(out["response_mask"]))
        by_hand += [tok.decode(r[m]) for r, m in rows][:len(chunk)]
        salted = generate(params, tokens, mask, key, start)
        np.testing.assert_array_equal(salted["response"], out["response"])
    assert got == by_hand and len(set(got)) == len(texts)
