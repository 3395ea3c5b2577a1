"""`instructgpt bench` code path on the smoke config: every stage row and the PPO split are produced.

Speed is measured by the bench and written in notes, never asserted here.
"""

import json
import os

import pytest

from instructgpt_jax import bench
from instructgpt_jax.model import GPTConfig

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


@pytest.mark.slow  # the default suite stays under 12 minutes on 2 cores (README)
def test_smoke_bench_writes_every_figure(tmp_path):
    config = load_config("configs/bench.py", "smoke")
    config.steps = 1
    bench.run(config, str(tmp_path))
    result = json.load(open(os.path.join(tmp_path, "bench_smoke.json")))
    assert result["peak_flops"] > 0
    assert [r["stage"] for r in result["steps"]] == ["pretrain", "sft", "rm"]
    for row in result["steps"]:
        assert row["tokens_per_s"] > 0 and 0 < row["mfu"] and row["compile_s"] > 0
        assert row["recompiles_after_warmup"] == 0
        assert row["peak_bytes"] > 0
    ppo = result["ppo"]
    assert ppo["recompiles_after_warmup"] == 0
    assert abs(ppo["generate_s"] + ppo["score_s"] + ppo["update_s"] - ppo["iteration_s"]) < 0.5 * ppo["iteration_s"] + 1e-3
    assert "| pretrain |" in result["table"]
