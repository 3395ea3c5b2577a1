"""`instructgpt bench` code path on the smoke config: every stage row and the PPO split are produced; the FLOP
counts behind the floors and the real-length arithmetic against hand-computed numbers.

Speed is measured by the bench and written in notes, never asserted here.
"""

import dataclasses
import json
import os

import jax
import numpy as np
import pytest

from instructgpt_jax import bench, bench_lengths
from instructgpt_jax.config_base import from_config
from instructgpt_jax.data import batching
from instructgpt_jax.model import GPTConfig
from instructgpt_jax.ppo import PPOConfig
from instructgpt_jax.tokenizer import make_tokenizer

from test_pretrain import load_config


def test_flops_per_token_counts_matmul_weights():
    cfg = GPTConfig(vocab_size=100, n_positions=32, n_layer=2, n_head=2, n_embd=8)
    # per layer: q,k,v,o 4*8*8 + MLP 2*8*32; plus the tied unembedding 100*8
    n = 2 * (256 + 512) + 800
    assert bench.matmul_flops(cfg) == n
    assert bench.train_flops_per_token(cfg, 16) == 6 * n + 12 * 2 * 8 * 16
    assert bench.forward_flops_per_token(cfg, 16) == 2 * n + 4 * 2 * 8 * 16
    headed = GPTConfig(vocab_size=100, n_positions=32, n_layer=2, n_head=2, n_embd=8, scalar_head=True)
    assert bench.matmul_flops(headed) == n - 800 + 8  # the RM reads a D x 1 head, never the unembedding


def _ppo_config(**changes) -> PPOConfig:
    cfg = from_config(PPOConfig, load_config("configs/ppo.py", "ppo").ppo, "config.ppo")
    return dataclasses.replace(cfg, **{"sampler_logprobs": False, **changes})


def test_ppo_flops_count_each_programs_forwards():
    policy = GPTConfig(vocab_size=100, n_positions=32, n_layer=2, n_head=2, n_embd=8)
    headed = dataclasses.replace(policy, scalar_head=True)
    layers, unembed, head = 2 * (256 + 512), 800, 8  # matmul weights, as above; the RM / value head is D x 1
    n = layers + unembed
    fwd = lambda m, T: 2 * m + 4 * 2 * 8 * T  # noqa: E731 - a forward token attending over T
    trn = lambda m, T: 6 * m + 12 * 2 * 8 * T  # noqa: E731 - a training token
    # B 4 prompts of P 6 tokens, N 3 new: prefill 24 tokens over 6, then 2 decode steps of 4 tokens over 8.
    assert bench.generate_flops(policy, 4, 6, 3) == 24 * fwd(n, 6) + 8 * fwd(n, 8) == 162_816
    cfg = _ppo_config(rollout_batch=4, max_new_tokens=3, epochs=2, minibatches=2, ptx_coef=1.0, ptx_batch_size=2,
                      ptx_seq_len=5, shared_trunk=False)
    # Score: each model's trunk over the 4 x 8 fed slots (P + N - 1); the policy's and the reference's logits
    # on the 4 x 3 response slots; the value model's and the RM's D x 1 head.
    logits_read = 32 * fwd(layers, 8) + 12 * 2 * unembed
    head_read = 32 * fwd(layers + head, 8)
    score = bench.forward_flops(bench.score_forwards(policy, policy, policy, cfg, 6))
    assert score == 2 * logits_read + 2 * head_read == 498_176
    shared = dataclasses.replace(cfg, shared_trunk=True)
    assert bench.forward_flops(bench.score_forwards(policy, policy, policy, shared, 6)) == score - head_read
    # The sampler's logprobs spare the policy forward, unless a shared trunk needs it for the values.
    sampled = dataclasses.replace(cfg, sampler_logprobs=True)
    assert bench.forward_flops(bench.score_forwards(policy, policy, policy, sampled, 6)) == score - logits_read
    sampled_shared = dataclasses.replace(shared, sampler_logprobs=True)
    assert bench.forward_flops(bench.score_forwards(policy, policy, policy, sampled_shared, 6)) == score - head_read
    # Update: 2 epochs x 32 fed slots of policy (logits on 2 x 12 response slots) and value training, and
    # 2 x 2 x 2 ptx rows of 5 tokens (logits on every token).
    policy_train = 64 * trn(layers, 8) + 24 * 6 * unembed
    update = bench.train_flops(bench.update_passes(policy, headed, cfg, 6))
    assert update == policy_train + 64 * trn(layers + head, 8) + 40 * trn(n, 5) == 2_093_568
    assert bench.train_flops(bench.update_passes(policy, headed, dataclasses.replace(cfg, ptx_coef=0.0), 6)) == (
        policy_train + 64 * trn(layers + head, 8))
    assert bench.train_flops(bench.update_passes(policy, headed, shared, 6)) == policy_train + 40 * trn(n, 5)


def test_layout_figures_arithmetic():
    # 3 steps of 100 slots holding 240 real tokens, 0.5 s a step.
    assert bench_lengths.layout_figures(240, 3, 100, 0.5) == pytest.approx(
        {"padding_share": 0.2, "real_tokens_per_step": 80, "real_tokens_per_s": 160, "epoch_s": 1.5})


def _examples(n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"prompt": "p" * int(rng.integers(1, 20)), "response": "r" * int(rng.integers(1, 30))} for _ in range(n)]


def test_real_length_layouts_count_the_tokens_their_batches_hold():
    tokenizer = make_tokenizer("byte")
    examples = _examples(16)  # 2 padded steps of 8: the whole epoch is timed
    padded, packed, best_fit = bench_lengths.sft_layouts(examples, tokenizer, 8, 64, 256, 0, 10)
    real = sum(len(tokenizer.encode_prompt(e["prompt"])) + len(tokenizer.encode_response(e["response"]))
               for e in examples)
    assert padded.real_tokens == packed.real_tokens == best_fit.real_tokens == real
    assert len(padded.batches) == padded.steps_per_epoch == 2
    assert sum(b["attention_mask"].sum() for b in padded.batches) == real
    # The epoch's packed rows hold every example once (its last step wraps round to the first rows).
    for layout in (packed, best_fit):
        rows = int(layout.steps_per_epoch * 8)
        segment_ids = np.concatenate([b["segment_ids"] for b in layout.batches])[:rows]
        assert rows < 16 and segment_ids.max(-1).sum() == 16 and (segment_ids > 0).sum() == real
    def share(layout):
        return bench_lengths.layout_figures(layout.real_tokens, layout.steps_per_epoch, layout.slots_per_step,
                                            1.0)["padding_share"]

    assert share(padded) == pytest.approx(1 - real / (16 * 64))
    assert 0 <= share(best_fit) <= share(packed) < share(padded) < 1

    records = [{"prompt": e["prompt"], "responses": [e["response"], e["response"] + "x", "y"][:2 + i % 2],
                "ranks": list(range(2 + i % 2))} for i, e in enumerate(examples[:8])]
    rm_padded, rm_packed, rm_shared = bench_lengths.rm_layouts(records, tokenizer, 4, 8, 64, 256, 0, 10, 1)
    batch_real = sum((b["attention_mask"] & b["k_mask"][:, :, None]).sum() for b in rm_padded.batches)
    # K-padding copies are not real tokens; shared prompts do the same sequences' work in fewer tokens
    assert rm_padded.real_tokens == rm_packed.real_tokens == rm_shared.real_tokens == batch_real
    assert rm_padded.shape == "4 x 3 x 64" and rm_padded.slots_per_step == 4 * 3 * 64
    assert rm_packed.steps_per_epoch == len(rm_packed.batches)
    assert sum(b["attention_mask"].sum() for b in rm_packed.batches) == batch_real
    assert sum(b["attention_mask"].sum() for b in rm_shared.batches) < batch_real and "branch_ids" in rm_shared.batches[0]


def test_prompt_figures():
    tokenizer = make_tokenizer("byte")  # encode_prompt adds 3 tokens: 4, 6 and 13 tokens
    figures = bench_lengths.prompt_figures(["a", "abc", "abcdefghij"], tokenizer, 8, 16)
    assert (figures["min"], figures["median"], figures["max"]) == (4, 6, 13)
    assert figures["longer_than_prompt_len"] == pytest.approx(1 / 3) and figures["longer_than_stage_prompt_len"] == 0
    assert figures["real_share_at_prompt_len"] == pytest.approx((4 + 6 + 8) / 24)
    assert figures["real_share_at_stage_prompt_len"] == pytest.approx(23 / 48)
    assert "bucket" not in figures
    # A PPO run's first epoch of batches of two of the four prompts, each padded to its longest rounded up to 8.
    lengths = [4, 6, 13, 5]
    figures = bench_lengths.prompt_figures(["a", "abc", "abcdefghij", "ab"], tokenizer, 8, 16, batch_size=2,
                                           bucket=8, seed=3)
    order = np.concatenate([batching.global_indices(4, 2, step, 3) for step in range(2)])
    assert sorted(order) == [0, 1, 2, 3]
    pairs = [[lengths[i] for i in order[:2]], [lengths[i] for i in order[2:]]]
    widths = [8 if max(p) <= 8 else 16 for p in pairs]
    assert figures["mean_width_bucketed"] == pytest.approx(np.mean(widths))
    assert figures["real_share_bucketed"] == pytest.approx(sum(map(sum, pairs)) / (2 * sum(widths)))


@pytest.mark.slow  # the default suite stays under 12 minutes on 2 cores (README)
def test_smoke_bench_writes_every_figure(tmp_path):
    config = load_config("configs/bench.py", "smoke")
    config.steps = 1
    config.real_lengths.steps = 1
    bench.run(config, str(tmp_path))
    result = json.load(open(os.path.join(tmp_path, "bench_smoke.json")))
    assert result["peak_flops"] > 0
    assert result["torch_peak_flops"] is None or result["torch_peak_flops"] > 0
    assert [r["stage"] for r in result["steps"]] == ["pretrain", "sft", "rm"]
    assert result["compile_cache"] == jax.config.jax_compilation_cache_dir  # conftest's folder: loads, maybe
    for row in result["steps"]:
        assert row["tokens_per_s"] > 0 and 0 < row["mfu"] and row["compile_s"] > 0
        assert row["floor_s"] > 0 and row["time_over_floor"] == pytest.approx(1 / row["mfu"])
        assert row["recompiles_after_warmup"] == 0
        assert row["peak_bytes"] > 0
    ppo = result["ppo"]
    assert ppo["recompiles_after_warmup"] == 0
    assert abs(ppo["generate_s"] + ppo["score_s"] + ppo["update_s"] - ppo["iteration_s"]) < 0.5 * ppo["iteration_s"] + 1e-3
    for k in ("generate", "score", "update"):
        assert ppo[f"{k}_flops"] > 0 and ppo[f"{k}_floor_s"] > 0 and ppo[f"{k}_time_over_floor"] > 0
    real = result["real_lengths"]
    assert [(r["stage"], r["layout"]) for r in real["rows"]] == [
        ("sft", "padded"), ("sft", "packed"), ("sft", "packed best-fit"),
        ("rm", "padded"), ("rm", "packed"), ("rm", "packed, shared prompts")]
    for row in real["rows"]:
        assert row["real_tokens_per_s"] > 0 and row["padding_share"] < 1
        assert row["recompiles_after_warmup"] == 0
        # Shared prompts still count every response's own prompt as real work (the work the other layouts do),
        # so where sharing saves more slots than padding wastes, that layout's share is below 0.
        if row["layout"] != "packed, shared prompts":
            assert row["padding_share"] >= 0
    for padded, packed in (real["rows"][:2], real["rows"][3:5]):
        assert packed["padding_share"] <= padded["padding_share"]
    prompts = real["ppo_prompts"]
    assert 0 < prompts["min"] <= prompts["median"] <= prompts["max"]
    assert 0 < prompts["real_share_at_stage_prompt_len"] <= 1
    for line in ("| pretrain |", "floors: generate", "| rm | packed |", "matmul peak XLA"):
        assert line in result["table"]


def test_the_table_says_when_compile_times_may_be_cache_loads():
    result = {"name": "n", "devices": 2, "platform": "cpu", "model": {}, "peak_flops": 6e10, "dtype": "float32",
              "torch_peak_flops": None, "torch_peak_note": "torch not installed", "steps": [], "compile_cache": None}
    assert "compilation cache" not in bench.format_table(result)
    header = bench.format_table(result | {"compile_cache": "/c/xla"}).splitlines()[0]
    assert header.endswith("; compile times may be loads from the compilation cache /c/xla")
