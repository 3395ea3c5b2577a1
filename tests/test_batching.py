"""Batching: left padding, masks and positions against slow references, K-wise grouping, resumable order."""

import numpy as np
import pytest

from instructgpt_jax.data import batching
from instructgpt_jax.tokenizer import make_tokenizer

BYTE = make_tokenizer("byte")
SFT = [{"prompt": "What is 1 + 1?", "response": "2"}, {"prompt": "Reverse the words: a b", "response": "b a"},
       {"prompt": "Hi", "response": "Hello there"}]
RM = [{"prompt": "What is 1 + 1?", "responses": ["2", "3", "two", "11"], "ranks": [0, 2, 1, 2]},
      {"prompt": "Sort: 2 1", "responses": ["1 2", "2 1"], "ranks": [0, 1]},
      {"prompt": "Hi", "responses": [f"reply {i}" for i in range(6)], "ranks": [5, 4, 3, 2, 1, 0]}]


def test_sft_batch_matches_slow_reference():
    T = 40
    batch = batching.sft_batch(SFT, BYTE, T)
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
        "tokens": ((3, T), np.int32), "positions": ((3, T), np.int32),
        "attention_mask": ((3, T), bool), "loss_mask": ((3, T), bool)}
    for b, ex in enumerate(SFT):
        prompt, response = BYTE.encode_prompt(ex["prompt"]), BYTE.encode_response(ex["response"])
        n_pad = T - len(prompt) - len(response)
        tokens = [BYTE.pad_id] * n_pad + prompt + response
        np.testing.assert_array_equal(batch["tokens"][b], tokens)
        np.testing.assert_array_equal(batch["attention_mask"][b], [t >= n_pad for t in range(T)])
        np.testing.assert_array_equal(batch["positions"][b], [max(0, t - n_pad) for t in range(T)])
        np.testing.assert_array_equal(batch["loss_mask"][b], [t >= n_pad + len(prompt) for t in range(T)])
        # The response's first token is predicted from the RESPONSE marker: loss_mask[:, 1:] lines up.
        first = n_pad + len(prompt)
        assert batch["tokens"][b, first - 1] == BYTE.response_id and batch["loss_mask"][b, 1:][first - 1]
        assert BYTE.decode(batch["tokens"][b][batch["loss_mask"][b]]) == ex["response"]
        assert batch["tokens"][b, -1] == BYTE.eos_id


def test_rm_batch_keeps_each_prompts_k_responses_together():
    T, k_max = 32, 9
    batch = batching.rm_batch(RM, BYTE, T, k_max)
    assert batch["tokens"].shape == (3, k_max, T) and batch["ranks"].shape == (3, k_max)
    assert batch["last_index"].dtype == np.int32 and batch["ranks"].dtype == np.int32
    for b, ex in enumerate(RM):
        k = len(ex["responses"])
        np.testing.assert_array_equal(batch["k_mask"][b], np.arange(k_max) < k)
        np.testing.assert_array_equal(batch["ranks"][b, :k], ex["ranks"])
        assert (batch["ranks"][b, k:] == -1).all()
        for j in range(k_max):
            row, mask = batch["tokens"][b, j], batch["attention_mask"][b, j]
            response = ex["responses"][j if j < k else 0]   # padded slots copy the first response
            np.testing.assert_array_equal(row[mask], BYTE.encode_prompt(ex["prompt"]) + BYTE.encode_response(response))
            assert row[batch["last_index"][b, j]] == BYTE.eos_id and mask[-1]
            np.testing.assert_array_equal(batch["positions"][b, j][mask], np.arange(mask.sum()))
    with pytest.raises(ValueError, match="K=6 responses; need 2 <= K <= k_max=4"):
        batching.rm_batch(RM, BYTE, T, 4)


def test_ppo_batch_left_pads_prompts():
    arrays, prompts = batching.ppo_batch(["Hi", "What is 1 + 1?"], BYTE, 24)
    assert prompts == ["Hi", "What is 1 + 1?"]
    assert arrays["prompt_tokens"].shape == (2, 24) and arrays["prompt_tokens"].dtype == np.int32
    assert (arrays["prompt_tokens"][:, -1] == BYTE.response_id).all()
    assert arrays["prompt_mask"][0].sum() == len(BYTE.encode_prompt("Hi")) and arrays["prompt_mask"][1, -17:].all()


def test_ppo_batches_pad_to_the_global_batch_longest_prompt_rounded_up():
    prompts = ["Hi", "Say yes.", "What is 1 + 1?", "Name a colour, please.", "Ok", "Count to three slowly now."]
    lengths = [len(BYTE.encode_prompt(p)) for p in prompts]
    full = batching.ppo_batches(prompts, BYTE, 4, 40, seed=1)
    bucketed = batching.ppo_batches(prompts, BYTE, 4, 40, seed=1, bucket=8)
    hosts = [batching.ppo_batches(prompts, BYTE, 4, 40, seed=1, process_index=p, process_count=2, bucket=8)
             for p in range(2)]
    widths = set()
    for step in range(6):
        longest = max(lengths[i] for i in full.indices(step))
        width = -(-longest // 8) * 8
        widths.add(width)
        (wide, strings), (narrow, same) = full[step], bucketed[step]
        assert strings == same and wide["prompt_tokens"].shape == (4, 40) and narrow["prompt_tokens"].shape == (4, width)
        for key in wide:  # the same left-padded rows, without the columns that are padding in every row
            np.testing.assert_array_equal(narrow[key], wide[key][:, 40 - width:])
        # Each host pads its two rows to the whole batch's width, whatever its own rows' lengths.
        assert [h[step][0]["prompt_tokens"].shape for h in hosts] == [(2, width), (2, width)]
    assert len(widths) > 1  # the batches really differ in width
    assert batching.prompt_width(prompts, BYTE, 40, 8) == 32 and batching.prompt_width(prompts, BYTE, 30, 8) == 30
    assert batching.prompt_width(prompts, BYTE, 40, 0) == 40


def test_batches_are_resumable_epochs_and_host_slices():
    examples = [{"prompt": f"p{i}", "response": f"r{i}"} for i in range(10)]
    batches = batching.sft_batches(examples, BYTE, batch_size=4, seq_len=16, seed=3)
    seen = np.concatenate([batches.indices(s) for s in range(5)])          # 20 examples = 2 epochs
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
    assert list(seen[:10]) != list(seen[10:20])                            # reshuffled per epoch
    # Resuming at step 3 gives exactly the batches an uninterrupted run had at steps 3 and 4.
    fresh = batching.sft_batches(examples, BYTE, batch_size=4, seq_len=16, seed=3)
    for step in (3, 4):
        got, want = fresh[step], batches[step]
        assert all(np.array_equal(got[k], want[k]) for k in want)
    assert not np.array_equal(batching.sft_batches(examples, BYTE, 4, 16, seed=4).indices(0), batches.indices(0))
    # Two hosts split every global batch; together they hold exactly it.
    hosts = [batching.sft_batches(examples, BYTE, 4, 16, seed=3, process_index=p, process_count=2) for p in range(2)]
    for step in range(5):
        np.testing.assert_array_equal(np.concatenate([h.indices(step) for h in hosts]), batches.indices(step))
        np.testing.assert_array_equal(hosts[1][step]["tokens"], batches[step]["tokens"][2:])
    with pytest.raises(ValueError, match="does not split over 3 processes"):
        batching.sft_batches(examples, BYTE, 4, 16, seed=3, process_index=0, process_count=3)[0]


def test_batch_builders_reject_what_does_not_fit():
    with pytest.raises(ValueError, match=r"1 SFT examples do not fit in 20 tokens \(first: example 1, 29 tokens\)"):
        batching.sft_batches(SFT, BYTE, 2, 20, seed=0)
    with pytest.raises(ValueError, match="RM examples do not fit in 10 tokens"):
        batching.rm_batches(RM, BYTE, 2, 10, 9, seed=0)
    with pytest.raises(ValueError, match="PPO prompts do not fit in 8 tokens"):
        batching.ppo_batches(["What is 1 + 1?"], BYTE, 1, 8, seed=0)


def test_lm_windows_cover_the_corpus():
    ids = np.arange(103, dtype=np.int32)
    # 10 windows, last 3 ids unused
    first_epoch = np.concatenate([batching.lm_windows(ids, s, 5, 10, seed=0) for s in range(2)])
    assert first_epoch.shape == (10, 10) and first_epoch.dtype == np.int32
    np.testing.assert_array_equal(np.sort(first_epoch[:, 0]), np.arange(0, 100, 10))
    assert (np.diff(first_epoch, axis=1) == 1).all()                       # contiguous windows
    np.testing.assert_array_equal(batching.eval_windows(ids, 2, 4, 10)[:, 0], [80, 90, 0, 10])
    with pytest.raises(ValueError, match="shorter than one window"):
        batching.lm_windows(ids[:5], 0, 1, 10, seed=0)
