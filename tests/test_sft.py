"""SFT: the response-only loss against NumPy, packing against unpacked examples, overfitting one batch,
the sharded step, and the whole stage (base figures at step 0, gold scores, exact resume) on the smoke world."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from instructgpt_jax import checkpoint, config_base, sft, train
from instructgpt_jax.data import batching
from instructgpt_jax.model import GPTConfig, make_model
from instructgpt_jax.tokenizer import make_tokenizer
from instructgpt_jax.data import packing
from instructgpt_jax import stages
from stage_inputs import assert_sharded_step_matches, nano_config, world_and_checkpoint

CFG = GPTConfig(vocab_size=264, n_positions=128, n_layer=2, n_head=2, n_embd=32)
TOK = make_tokenizer("byte")
EXAMPLES = [
    {"prompt": "Reverse the words: cat dog", "response": "dog cat"},
    {"prompt": "Compute 2 + 3.", "response": "5"},
    {"prompt": "Uppercase this: sun", "response": "SUN"},
    {"prompt": "Write a line about rain.", "response": "Rain is calm and slow."},
    {"prompt": "Join with commas: a b c", "response": "a, b, c"},
]


def test_sft_loss_is_cross_entropy_of_response_tokens_only():
    model = make_model(CFG, seed=1)
    batch = batching.sft_batch(EXAMPLES, TOK, 64)
    loss, aux = sft.sft_loss(model, {k: jnp.asarray(v) for k, v in batch.items()}, None)
    logits = np.asarray(model(jnp.asarray(batch["tokens"]), jnp.asarray(batch["positions"]),
                              jnp.asarray(batch["attention_mask"])), np.float64)
    total, n = 0.0, 0
    for b, ex in enumerate(EXAMPLES):
        response = TOK.encode_response(ex["response"])
        for t in range(64 - len(response), 64):  # left-padded: the response is the row's last tokens
            row = logits[b, t - 1]  # token t is predicted by the logits at t - 1
            total += np.log(np.exp(row - row.max()).sum()) + row.max() - row[batch["tokens"][b, t]]
            n += 1
    assert int(aux["tokens"]) == n == sum(len(ex["response"]) + 1 for ex in EXAMPLES)  # bytes + EOS
    np.testing.assert_allclose(float(loss), total / n, rtol=1e-5)


def test_pack_rows_places_every_example_once_within_the_row():
    lengths = [30, 50, 20, 64, 10, 5, 40]
    rows = packing.pack_rows(lengths, 64, [3, 0, 1, 2, 4, 5, 6])
    assert sorted(i for row in rows for i in row) == list(range(7))
    assert [i for row in rows for i in row] == [3, 0, 1, 2, 4, 5, 6]
    assert all(sum(lengths[i] for i in row) <= 64 for row in rows)
    assert rows == [[3], [0], [1], [2, 4, 5], [6]]


def _best_fit_reference(lengths, seq_len, order, window, seed):
    """Best fit decreasing, spelled out: for each window, examples longest first (ties in window order), each
    into the fullest row it fits, then the window's rows in a seeded order."""
    rows = []
    for w, start in enumerate(range(0, len(order), window)):
        chunk = list(order[start:start + window])
        chunk = [chunk[j] for j in np.argsort([-lengths[i] for i in chunk], kind="stable")]
        bins = []
        for i in chunk:
            room = [seq_len - sum(lengths[m] for m in b) for b in bins]
            ok = [r for r in range(len(bins)) if room[r] >= lengths[i]]
            if ok:
                bins[min(ok, key=lambda r: (room[r], r))].append(i)
            else:
                bins.append([i])
        rows += [bins[r] for r in np.random.default_rng([*seed, w]).permutation(len(bins))]
    return rows


def test_best_fit_rows_match_the_reference_and_fill_more_than_greedy():
    rng = np.random.default_rng(3)
    lengths = [int(x) for x in rng.integers(5, 60, 300)]
    order = [int(i) for i in rng.permutation(300)]
    rows = packing.best_fit_rows(lengths, 64, order, 50, [7, 1])
    assert rows == _best_fit_reference(lengths, 64, order, 50, [7, 1])
    assert all(sum(lengths[i] for i in row) <= 64 for row in rows)
    # every example once, and each within its window of `order`
    assert sorted(i for row in rows for i in row) == list(range(300))
    place = {i: k // 50 for k, i in enumerate(order)}
    assert all(len({place[i] for i in row}) == 1 for row in rows)
    assert len(rows) < len(packing.pack_rows(lengths, 64, order))
    # one window over the whole order: the reference again, and no more rows than windows of 50 give
    one = packing.best_fit_rows(lengths, 64, order, 300, [0, 0])
    assert one == _best_fit_reference(lengths, 64, order, 300, [0, 0])
    assert len(one) <= len(rows)


def test_packed_batches_cover_each_epoch_once_with_best_fit():
    encoded = packing.encode_examples(EXAMPLES * 5, TOK)
    batches, steps = packing.packed_batches(encoded, 2, 96, seed=0, epochs=2.0, pad_id=TOK.pad_id, window=8)
    epochs = [packing.epoch_rows([len(p) + len(r) for p, r in encoded], 96, 0, e, 8) for e in (0, 1)]
    for rows in epochs:
        assert sorted(i for row in rows for i in row) == list(range(len(encoded)))
    assert epochs[0] != epochs[1]
    assert steps == -(-(len(epochs[0]) + len(epochs[1])) // 2)
    assert batches(3)["segment_ids"].shape == (2, 96)


def test_packed_rows_give_the_same_losses_as_separate_examples():
    """Block-diagonal attention and per-example positions: packing changes no example's token losses."""
    model = make_model(CFG, seed=2)
    encoded = packing.encode_examples(EXAMPLES, TOK)
    rows = packing.pack_rows([len(p) + len(r) for p, r in encoded], 96, range(len(EXAMPLES)))
    assert len(rows) < len(EXAMPLES)  # something is actually packed
    packed = packing.packed_batch(encoded, rows, 96, TOK.pad_id)
    unpacked = batching.sft_batch(EXAMPLES, TOK, 64)
    sums = []
    for batch in (packed, unpacked):
        loss, aux = jax.jit(lambda b: sft.sft_loss(model, b, None))({k: jnp.asarray(v) for k, v in batch.items()})
        sums.append((float(loss) * float(aux["tokens"]), float(aux["tokens"])))
    assert sums[0][1] == sums[1][1]
    np.testing.assert_allclose(sums[0][0], sums[1][0], rtol=1e-5)


def _config(steps, batch_size=8):
    return nano_config(steps, batch_size, seq_len=64, lr=1e-2, checkpoint_every=100)


def _packed_batch(batch_size=8):
    encoded = packing.encode_examples(EXAMPLES, TOK)
    rows = packing.pack_rows([len(p) + len(r) for p, r in encoded], 64, range(len(EXAMPLES)))
    return packing.packed_batch(encoded, (rows * batch_size)[:batch_size], 64, TOK.pad_id)


@pytest.mark.slow  # the default suite stays under 12 minutes on 2 cores (README)
def test_overfits_one_batch(tmp_path):
    config = _config(120)
    setup = train.make_setup(train.model_config(config.model), config.mesh, train.make_optimizer(config.optim, 120))
    batch = _packed_batch()
    train.run(stage="sft", workdir=str(tmp_path), config=config, setup=setup, loss_fn=sft.sft_loss,
              batches=lambda s: batch, total_steps=120, init_params=lambda: train.random_params(setup, 0))
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert rows[0]["sft/loss"] > 3.0 and rows[-1]["sft/loss"] < 0.1, (rows[0]["sft/loss"], rows[-1]["sft/loss"])


def test_sharded_step_equals_single_device_step():
    assert_sharded_step_matches(lambda: _config(2), sft.sft_loss, _packed_batch())


@pytest.fixture(scope="module")
def stage_inputs(tmp_path_factory):
    """The smoke world's files and a nano 'pretrain' checkpoint (2 LM steps)."""
    root = tmp_path_factory.mktemp("sft_stage")
    world_and_checkpoint(root, "pretrain", _config(2))
    return root


def test_stage_writes_base_and_final_figures_and_resumes_exactly(stage_inputs, tmp_path):
    config = config_base.load_config("configs/sft.py:smoke")
    config.init_from = str(stage_inputs / "pretrain")
    config.data.train = str(stage_inputs / "world" / "sft.jsonl")
    config.train.update(steps=6, checkpoint_every=4, eval_every=6, tensorboard=False)
    config.eval.update(num_prompts=8, batch_size=8, max_new_tokens=8, val_batches=1)
    first = stages.sft.run(config, str(tmp_path))
    for key in ("sft/val_loss", "sft/gold_score", "sft/gold_score_t1", "sft/loss"):
        assert np.isfinite(first[key]), key
    for key in ("sft/val_loss_base", "sft/gold_score_base", "sft/gold_score_t1_base"):
        assert np.isfinite(first[key]), key
    assert first["sft/val_loss"] < first["sft/val_loss_base"]  # 6 steps of SFT on demonstrations do help
    assert 0.0 <= first["sft/gold_score"] <= 1.0

    full = checkpoint.load_model(str(tmp_path))[2]
    shutil.rmtree(tmp_path / "checkpoints" / "6")  # as if the run had died after its step-4 checkpoint
    assert stages.sft.run(config, str(tmp_path))["sft/val_loss"] == first["sft/val_loss"]
    resumed = checkpoint.load_model(str(tmp_path))[2]
    for x, y in zip(jax.tree.leaves(full), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(x, y)
    steps = [json.loads(line)["step"] for line in open(tmp_path / "metrics.jsonl")]
    assert steps == sorted(steps) and steps[0] == 0 and steps.count(0) == 1


def test_missing_init_from_names_the_config_key():
    config = config_base.load_config("configs/sft.py:smoke")
    config.data.train = "x.jsonl"
    with pytest.raises(ValueError, match="config.init_from is empty"):
        stages.sft.run(config, "/nonexistent")
