"""Reward model: eq. 1 against a NumPy double loop, one forward per response, overfitting, sharding, the
pairs-shuffled and K-subsampling data transforms, normalisation and resume of the whole stage."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from instructgpt_jax import config_base, reward, train
from instructgpt_jax.data import batching
from instructgpt_jax.model import GPT, GPTConfig, make_model
from instructgpt_jax.tokenizer import make_tokenizer
from instructgpt_jax.data import packing
from instructgpt_jax import stages
from stage_inputs import assert_sharded_step_matches, nano_config, world_and_checkpoint

CFG = GPTConfig(vocab_size=264, n_positions=64, n_layer=2, n_head=2, n_embd=32, scalar_head=True)
LONG = dataclasses.replace(CFG, n_positions=128)  # packed rows longer than one sequence
TOK = make_tokenizer("byte")


def numpy_kwise_loss(scores, ranks, k_mask):
    """Eq. 1, obviously: per prompt, the mean of -log sigmoid(r_w - r_l) over its untied pairs; then the
    mean over prompts that have any."""
    per_prompt = []
    for b in range(scores.shape[0]):
        terms = []
        for i in range(scores.shape[1]):
            for j in range(scores.shape[1]):
                if k_mask[b, i] and k_mask[b, j] and ranks[b, i] < ranks[b, j]:
                    terms.append(np.log1p(np.exp(-(float(scores[b, i]) - float(scores[b, j])))))
        if terms:
            per_prompt.append(np.mean(terms))
    return np.mean(per_prompt)


def random_group(rng, B, k_max=9):
    """Scores, ranks with ties and K in 2..9 padded to k_max (padding ranks are -1, as batching writes)."""
    scores = rng.normal(size=(B, k_max)).astype(np.float32) * 2
    ranks = np.full((B, k_max), -1, np.int32)
    k_mask = np.zeros((B, k_max), bool)
    for b in range(B):
        k = rng.integers(2, k_max + 1)
        ranks[b, :k] = rng.integers(0, max(2, k - 2), size=k)  # fewer ranks than responses: ties
        k_mask[b, :k] = True
    return scores, ranks, k_mask


def test_kwise_loss_matches_numpy_double_loop():
    rng = np.random.default_rng(0)
    for trial in range(5):
        scores, ranks, k_mask = random_group(rng, B=6)
        scores[0, ~k_mask[0]] = 1e3  # padded slots must not matter, whatever they score
        loss, aux = reward.kwise_loss(jnp.asarray(scores), jnp.asarray(ranks), jnp.asarray(k_mask))
        np.testing.assert_allclose(float(loss), numpy_kwise_loss(scores, ranks, k_mask), rtol=1e-6, atol=1e-6)
        right = total = 0
        for b in range(6):
            for i in range(9):
                for j in range(9):
                    if k_mask[b, i] and k_mask[b, j] and ranks[b, i] < ranks[b, j]:
                        total += 1
                        right += scores[b, i] > scores[b, j]
        assert int(aux["pairs"]) == total
        np.testing.assert_allclose(float(aux["accuracy"]), right / total, rtol=1e-6)


def test_all_tied_prompt_adds_nothing():
    scores = jnp.asarray([[1.0, 0.0, 5.0], [0.3, -0.2, 0.0]])
    ranks = jnp.asarray([[0, 1, 2], [0, 0, 0]])  # the second prompt's responses all tie
    k_mask = jnp.ones((2, 3), bool)
    loss, _ = reward.kwise_loss(scores, ranks, k_mask)
    np.testing.assert_allclose(float(loss), numpy_kwise_loss(np.asarray(scores)[:1], np.asarray(ranks)[:1], np.ones((1, 3), bool)), rtol=1e-6)


def rm_examples(n, rng, k_lo=2, k_hi=5):
    words = ["cat", "dog", "sun", "tree", "map", "ink", "fox", "jam"]
    out = []
    for i in range(n):
        k = int(rng.integers(k_lo, k_hi + 1))
        responses = [" ".join(rng.choice(words, size=int(rng.integers(1, 5)))) + f" {i}.{j}" for j in range(k)]
        out.append({"prompt": f"Say something {i}", "responses": responses, "ranks": rng.integers(0, k, size=k).tolist()})
    return out


def test_rm_loss_reads_each_response_at_its_last_token():
    """The batched K-wise loss equals eq. 1 over scores of each response forwarded alone, unpadded."""
    model = make_model(CFG, seed=1)
    rng = np.random.default_rng(1)
    # Responses of two lengths (two compiled shapes alone), left-padded to 48 in the batch.
    examples = [{"prompt": f"Rank these {b}", "responses": [f"{'xy'[j % 2] * (3 + 5 * (j % 2))}{b}{j}" for j in range(k)],
                 "ranks": rng.integers(0, k, size=k).tolist()} for b, k in enumerate((4, 3))]
    batch = batching.rm_batch(examples, TOK, 48, k_max=4)
    loss, _ = reward.rm_loss(model, {k: jnp.asarray(v) for k, v in batch.items()}, None)
    alone = jax.jit(lambda ids: model.score(model.trunk(ids)[0])[0, -1])
    scores = np.zeros((2, 4), np.float32)
    for b, ex in enumerate(examples):
        for k, y in enumerate(ex["responses"]):
            scores[b, k] = float(alone(jnp.asarray([TOK.encode_prompt(ex["prompt"]) + TOK.encode_response(y)])))
    np.testing.assert_allclose(float(loss), numpy_kwise_loss(scores, batch["ranks"], batch["k_mask"]), rtol=1e-5)


def test_one_trunk_forward_of_k_responses_per_prompt(monkeypatch):
    """K forwards per prompt (one trunk call on B*K rows), not 2 * C(K, 2)."""
    calls = []
    trunk = GPT.trunk

    def counting_trunk(self, tokens, *args, **kwargs):
        calls.append(tokens.shape)
        return trunk(self, tokens, *args, **kwargs)

    monkeypatch.setattr(GPT, "trunk", counting_trunk)
    graphdef, params = nnx.split(make_model(CFG, seed=0))
    batch = batching.rm_batch(rm_examples(4, np.random.default_rng(2), 5, 5), TOK, 40, k_max=5)
    jax.make_jaxpr(lambda p: jax.grad(lambda p: reward.rm_loss(nnx.merge(graphdef, p), batch, None)[0])(p))(params)
    assert calls == [(4 * 5, 40)]


def _packed(examples, rows=10, seq_len=96, multiple=2, share_prompt=False):
    """The packed batch of all `examples` (one step) and the padded batch of the same prompts."""
    batches, steps = packing.packed_rm_batches(examples, TOK, rows, seq_len, seed=0, epochs=1.0, multiple=multiple,
                                               share_prompt=share_prompt)
    assert steps == 1, "the examples should fit one packed step"
    return batches(0), batching.rm_batch(examples, TOK, seq_len, k_max=max(len(e["responses"]) for e in examples))


@pytest.mark.parametrize("share_prompt", [False, True])
def test_packed_batch_gives_the_padded_loss_and_gradient(share_prompt):
    """Packing responses as segments of shared rows changes no score: loss and gradient equal the padded
    (B, K, T) batch's, each response seeing only its own segment at its own positions (or, sharing its
    prompt's one copy, that prompt and itself)."""
    examples = rm_examples(5, np.random.default_rng(7), 2, 5)
    packed, padded = _packed(examples, share_prompt=share_prompt)
    assert packed["tokens"].shape == (10, 96) and padded["tokens"].size > 2 * packed["tokens"].size
    unshared = _packed(examples)[0]["attention_mask"].sum()
    assert packed["attention_mask"].sum() < 0.8 * unshared if share_prompt else ("branch_ids" not in packed)
    graphdef, params = nnx.split(make_model(LONG, seed=3))
    # The packed prompt order is the epoch's shuffle; the loss is a mean over prompts, so order is free.
    grads = []
    for batch in (packed, padded):
        f = lambda p, b=batch: reward.rm_loss(nnx.merge(graphdef, p), {k: jnp.asarray(v) for k, v in b.items()}, None)[0]
        loss, g = jax.value_and_grad(f)(params)
        grads.append((float(loss), g))
    np.testing.assert_allclose(grads[0][0], grads[1][0], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(grads[0][1]), jax.tree.leaves(grads[1][1])):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("share_prompt", [False, True])
def test_packed_scores_are_each_response_forwarded_alone(share_prompt):
    model = make_model(LONG, seed=1)
    examples = rm_examples(4, np.random.default_rng(8), 3, 5)
    packed, _ = _packed(examples, share_prompt=share_prompt)
    scores = np.asarray(reward.packed_scores(model, {k: jnp.asarray(v) for k, v in packed.items()}))
    alone = jax.jit(lambda ids: model.score(model.trunk(ids)[0])[0, -1])
    order = [int(i) for i in batching.epoch_order(len(examples), 0, 0)]  # the packed prompt slots
    for slot, i in enumerate(order):
        for k, y in enumerate(examples[i]["responses"]):
            ids = jnp.asarray([TOK.encode_prompt(examples[i]["prompt"]) + TOK.encode_response(y)])
            np.testing.assert_allclose(scores[slot, k], float(alone(ids)), rtol=1e-5, atol=1e-6)
    assert packed["k_mask"].sum() == sum(len(e["responses"]) for e in examples)


@pytest.mark.slow  # the default suite stays under 12 minutes on 2 cores (README)
def test_score_texts_packs_without_changing_a_score():
    """Scoring packs texts into rows over several calls (more segments than one call holds): each score
    equals the text forwarded alone."""
    model = make_model(LONG, seed=2)
    params = nnx.split(model)[1]
    setup = train.make_setup(LONG, config_base.mesh_config((1, 1, 1)), optax.sgd(0.0), devices=jax.devices()[:1])
    rng = np.random.default_rng(10)
    prompts = [f"p{i // 4}" for i in range(70)]  # runs of one prompt share its copy, cut by rows and calls
    responses = ["ab" * int(rng.integers(0, 12)) for _ in range(70)]
    score_texts = reward.make_score_texts(setup.graphdef, setup.mesh, TOK, 64, batch_rows=2)  # 2 rows of 64, <= 8 segments a call
    got = score_texts(params, prompts, responses)
    alone = jax.jit(lambda ids: model.score(model.trunk(ids)[0])[0, -1])
    want = [float(alone(jnp.asarray([TOK.encode_prompt(p) + TOK.encode_response(y)]))) for p, y in zip(prompts, responses)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert len(score_texts(params, [], [])) == 0


def test_pack_prompts_keeps_prompts_whole_and_rows_within_the_budget():
    rng = np.random.default_rng(9)
    lengths = [rng.integers(5, 40, size=rng.integers(2, 10)).tolist() for _ in range(200)]
    order = rng.permutation(200)
    batches = packing.pack_prompts(lengths, order, rows=12, seq_len=64)
    assert [i for b in batches for i in b] == order.tolist()  # every prompt once, in order
    for b in batches:
        rows = sft_rows([n for i in b for n in lengths[i]], 64)
        assert rows <= 12
    for b, nxt in zip(batches, batches[1:]):  # greedy: the next prompt would not have fitted
        assert sft_rows([n for i in b + nxt[:1] for n in lengths[i]], 64) > 12
    with pytest.raises(ValueError, match="packed_rows=2"):
        packing.pack_prompts([[60, 60, 60]], [0], rows=2, seq_len=64)


def test_a_prompt_longer_than_packed_rows_widens_every_step_with_grow():
    """prompt_rows is the most rows one prompt's units take alone. packed_rm_batches with rows below it is an
    error naming packed_rows; with grow every step gets that many rows, rounded up to `multiple`, every prompt
    trains whole, and data that fits packs exactly as without grow."""
    assert packing.prompt_rows([[60, 60, 60], [10, 20]], 64) == 3 and packing.prompt_rows([], 64) == 0
    rng = np.random.default_rng(5)
    examples = rm_examples(12, rng)
    examples[3] = {"prompt": "Say something long", "responses": ["cat dog sun tree map ink fox"] * 9,
                   "ranks": list(range(9))}
    with pytest.raises(ValueError, match="packed_rows=2"):
        packing.packed_rm_batches(examples, TOK, 2, 64, seed=0, epochs=1.0, multiple=2)
    batches, steps = packing.packed_rm_batches(examples, TOK, 2, 64, seed=0, epochs=1.0, multiple=2, grow=True)
    encoded = [[(TOK.encode_prompt(e["prompt"]), TOK.encode_response(y)) for y in e["responses"]] for e in examples]
    need = packing.prompt_rows([[packing.unit_length(e, u) for u in packing.shared_units(e, 64, False)]
                                for e in encoded], 64)
    assert need > 2 and batches.rows == need + need % 2
    seen = [b for step in range(steps) for b in [batches(step)]]
    assert all(b["tokens"].shape == (batches.rows, 64) for b in seen)
    assert sum(int(b["k_mask"].sum()) for b in seen) == sum(len(e["responses"]) for e in examples)
    small = examples[:3]
    a, n = packing.packed_rm_batches(small, TOK, 8, 64, seed=0, epochs=1.0, multiple=2)
    b, m = packing.packed_rm_batches(small, TOK, 8, 64, seed=0, epochs=1.0, multiple=2, grow=True)
    assert n == m and b.rows == 8 and all(np.array_equal(a(0)[k], b(0)[k]) for k in a(0))


def sft_rows(lengths, seq_len):
    from instructgpt_jax.data.packing import pack_rows

    return len(pack_rows(lengths, seq_len, range(len(lengths))))


def test_packed_sharded_step_equals_single_device_step():
    batch = _packed(rm_examples(6, np.random.default_rng(4)), rows=16, seq_len=64, multiple=8)[0]
    assert_sharded_step_matches(lambda: _rm_config(2), reward.rm_loss, batch, scalar_head=True)


def _rm_config(steps, batch_size=8):
    return nano_config(steps, batch_size, seq_len=48, lr=3e-3, checkpoint_every=4)


@pytest.mark.slow  # the default suite stays under 12 minutes on 2 cores (README)
def test_overfits_one_batch(tmp_path):
    config = _rm_config(40)
    config.optim.lr = 1e-2
    setup = train.make_setup(train.model_config(config.model, scalar_head=True), config.mesh,
                             train.make_optimizer(config.optim, 40))
    batch = batching.rm_batch(rm_examples(8, np.random.default_rng(3), 3, 5), TOK, 48, k_max=5)
    train.run(stage="rm", workdir=str(tmp_path), config=config, setup=setup, loss_fn=reward.rm_loss,
              batches=lambda s: batch, total_steps=40, init_params=lambda: train.random_params(setup, 0))
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert rows[0]["rm/loss"] > 0.5 and rows[-1]["rm/loss"] < 0.05, (rows[0]["rm/loss"], rows[-1]["rm/loss"])
    assert rows[-1]["rm/batch_accuracy"] == 1.0


def test_sharded_step_equals_single_device_step():
    batch = batching.rm_batch(rm_examples(8, np.random.default_rng(4)), TOK, 48, k_max=5)
    assert_sharded_step_matches(lambda: _rm_config(2), reward.rm_loss, batch, scalar_head=True)


def test_shuffled_pairs_are_the_untied_pairs_better_first():
    rec = {"prompt": "p", "responses": ["a", "b", "c", "d"], "ranks": [1, 0, 1, 2]}
    pairs = reward.shuffled_pairs([rec])
    got = sorted(tuple(p["responses"]) for p in pairs)
    assert got == sorted([("b", "a"), ("b", "c"), ("b", "d"), ("a", "d"), ("c", "d")])  # a = c tie: skipped
    assert all(p["ranks"] == [0, 1] for p in pairs)


def test_subsample_k_keeps_the_labelers_order_and_the_budget():
    rng = np.random.default_rng(5)
    records = rm_examples(40, rng, 4, 9)
    cut = reward.subsample_k(records, 3, response_budget=30, seed=0)
    assert len(cut) == 10 and all(len(r["responses"]) == 3 for r in cut)
    by_prompt = {r["prompt"]: r for r in records}
    for r in cut:
        full = by_prompt[r["prompt"]]
        orig = [full["ranks"][full["responses"].index(y)] for y in r["responses"]]
        for i in range(3):
            for j in range(3):
                assert (orig[i] < orig[j]) == (r["ranks"][i] < r["ranks"][j])
    with pytest.raises(ValueError, match="response_budget=1000 with config.data.k=3 needs 334 prompts"):
        reward.subsample_k(records, 3, response_budget=1000, seed=0)


def test_load_reward_norm_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="reward_norm.json"):
        reward.load_reward_norm(str(tmp_path))
    (tmp_path / "reward_norm.json").write_text(json.dumps({"mean": 0.5, "std": 0.0}))
    with pytest.raises(ValueError, match="'std' must be > 0"):
        reward.load_reward_norm(str(tmp_path))


# ---------------------------------------------------------------- the whole stage on the smoke world

@pytest.fixture(scope="module")
def stage_inputs(tmp_path_factory):
    """The smoke world's files and a nano 'SFT' checkpoint (2 LM steps: the RM only needs its trunk)."""
    root = tmp_path_factory.mktemp("rm_stage")
    world_and_checkpoint(root, "sft", _rm_config(2))
    return root


def _stage_config(root, steps, **rm):
    config = config_base.load_config("configs/rm.py:smoke")
    config.init_from = str(root / "sft")
    config.data.train = str(root / "world" / "rm.jsonl")
    config.train.steps = steps
    config.train.tensorboard = False
    config.eval.batch_rows = 64
    config.norm.num_responses = 64
    for k, v in rm.items():
        config[k.split(".")[0]][k.split(".")[1]] = v
    return config


def test_stage_resumes_to_identical_params_and_normalises_sft_samples(stage_inputs, tmp_path):
    import shutil

    from instructgpt_jax import checkpoint

    config = _stage_config(stage_inputs, 6, **{"train.checkpoint_every": 4, "norm.gain": True})
    first = stages.rm.run(config, str(tmp_path))
    full = checkpoint.load_model(str(tmp_path))[2]
    shutil.rmtree(tmp_path / "checkpoints" / "6")  # as if the run had died after its step-4 checkpoint
    stages.rm.run(config, str(tmp_path))
    cfg, _, resumed, meta = checkpoint.load_model(str(tmp_path))
    for x, y in zip(jax.tree.leaves(full), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(x, y)
    for key in ("rm/loss", "rm/val_loss", "rm/accuracy", "rm/gold_accuracy", "rm/length_corr", "rm/train_eval_loss"):
        assert np.isfinite(first[key]), key
    assert 0.0 <= first["rm/accuracy"] <= 1.0

    # reward_norm.json: the RM data's responses (SFT samples when the compare stage wrote them) score
    # mean 0 and, with the gain, std 1 after normalisation.
    norm = reward.load_reward_norm(str(tmp_path))
    setup = train.make_setup(cfg, config.mesh, optax.sgd(0.0))
    score_texts = reward.make_score_texts(setup.graphdef, setup.mesh, TOK, meta["seq_len"], 64)
    records = [json.loads(line) for line in open(stage_inputs / "world" / "rm.jsonl")]
    samples = [(r["prompt"], y) for r in records for y in r["responses"]][:config.norm.num_responses]
    raw = score_texts(jax.device_put(resumed, setup.shardings["params"]), [p for p, _ in samples], [y for _, y in samples])
    normalised = (raw - norm["mean"]) / norm["std"]
    assert abs(normalised.mean()) < 1e-5
    np.testing.assert_allclose(normalised.std(), 1.0, rtol=1e-5)


def test_bias_only_normalisation_keeps_the_scale():
    raw = np.random.default_rng(0).normal(3.0, 2.0, size=500)
    norm = reward.reward_norm(raw, gain=False)
    assert norm["std"] == 1.0
    np.testing.assert_allclose((raw - norm["mean"]).mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(reward.reward_norm(raw, gain=True)["std"], raw.std())


def test_shared_prompt_units_cut_where_the_next_response_would_not_fit():
    """A prompt's responses share one copy of it per row-sized unit; a unit that would overflow starts a new
    one with the prompt again, and the scores of every layout equal each response forwarded alone."""
    encoded = [([1] * 20, [2] * 15), ([1] * 20, [3] * 15), ([1] * 20, [4] * 15), ([5] * 10, [6] * 30)]
    units = packing.shared_units(encoded, 64, share_prompt=True)
    assert units == [[0, 1], [2], [3]]  # 20 + 15 + 15 = 50 fits 64; a third response (65) does not
    assert [packing.unit_length(encoded, u) for u in units] == [50, 35, 40]
    assert packing.shared_units(encoded, 64, share_prompt=False) == [[0], [1], [2], [3]]
    assert packing.shared_units(encoded[:2], 64, True, groups=[0, 1]) == [[0], [1]]  # two records, one prompt
    model = make_model(LONG, seed=4)
    examples = rm_examples(6, np.random.default_rng(11), 4, 8)
    packed, _ = _packed(examples, rows=16, seq_len=64, share_prompt=True)
    assert (packed["branch_ids"] > 1).any() and packed["tokens"].shape == (16, 64)
    scores = np.asarray(reward.packed_scores(model, {k: jnp.asarray(v) for k, v in packed.items()}))
    alone = jax.jit(lambda ids: model.score(model.trunk(ids)[0])[0, -1])
    order = [int(i) for i in batching.epoch_order(len(examples), 0, 0)]
    for slot, i in enumerate(order):
        for k, y in enumerate(examples[i]["responses"]):
            ids = jnp.asarray([TOK.encode_prompt(examples[i]["prompt"]) + TOK.encode_response(y)])
            np.testing.assert_allclose(scores[slot, k], float(alone(ids)), rtol=1e-5, atol=1e-6)
