"""Benchmark pod configs (TL;DR with Pythia 1B / 2.8B / 6.9B, HH with GPT-2 XL) without an accelerator: each stage
config is a runnable stage config with the reference recipe's settings and prefixed data paths, every leaf
shards on an abstract mesh of the slice, and per-chip memory of SFT, RM and PPO fits the chip."""

import math
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))

import pod_check  # noqa: E402

from instructgpt_jax.config_base import load_config  # noqa: E402

CONFIGS = {
    ("tldr", "pythia-1b"): ("v4-32", "v5p-16", "gpu-8xh100"),
    ("tldr", "pythia-2.8b"): ("v4-64", "v5p-32"),
    ("tldr", "pythia-6.9b"): ("v4-128", "v5p-64"),
    ("hh_gpt2_xl", "gpt2-xl"): ("v4-64", "v5p-32"),
}
# The first slice of each model runs by default; the others with -m slow.
CASES = [pytest.param(name, preset, s, marks=() if i == 0 else pytest.mark.slow)
         for (name, preset), slices in CONFIGS.items() for i, s in enumerate(slices)]


def spec(name, preset, stage, slice_name):
    model = f"{preset}," if name == "tldr" else ""
    return f"configs/pods/{name}.py:{stage},{model}{slice_name}"


@pytest.mark.parametrize("name, preset, slice_name", CASES)
def test_benchmark_pod_config_shards_and_fits(name, preset, slice_name):
    config = load_config(spec(name, preset, "all", slice_name))
    mesh = tuple(config.sft.mesh.shape)
    assert config.pod.slice == slice_name and math.prod(mesh) == config.pod.chips
    result = pod_check.check(config)  # raises if any leaf's sharding does not divide its dimension
    assert set(result) == {"sft", "rm", "ppo"}
    for stage, figures in result.items():
        assert figures["fits"], (stage, figures["total"] / pod_check.GIB, config.pod.hbm_gib)
    ideal = result["sft"]["n_params"] * 4 / (mesh[1] * mesh[2])
    assert result["sft"]["params"] <= 1.1 * ideal + 2 ** 20
    shards = mesh[0] * mesh[1]
    for size in (config.sft.train.batch_size, config.rm.train.batch_size,
                 config.ppo.ppo.rollout_batch // config.ppo.ppo.minibatches):
        assert size % shards == 0


@pytest.mark.parametrize("name, preset", [("tldr", "pythia-2.8b"), ("hh_gpt2_xl", "gpt2-xl")])
def test_stage_configs_carry_the_reference_recipe(name, preset):
    slice_name = CONFIGS[(name, preset)][0]
    layout = "tldr:" if name == "tldr" else "hh:"
    sft, rm, ppo = (load_config(spec(name, preset, s, slice_name)) for s in ("sft", "rm", "ppo"))
    assert (sft.stage, rm.stage, ppo.stage) == ("sft", "rm", "ppo")
    for c in (sft, rm, ppo):
        assert c.model.preset == preset and c.model.dtype == "bfloat16" and c.model.remat and c.model.dropout == 0
        assert (c.optim.lr, c.optim.eps, c.optim.warmup_steps, c.optim.min_lr_ratio) == (3e-6, 1e-5, 0, 0.0)
        assert c.eval.gold_judge == "" and c.pod.slice == slice_name
    assert sft.data.train.startswith(layout) and rm.data.train.startswith(layout) and ppo.data.prompts.startswith(layout)
    assert (sft.train.batch_size, sft.train.epochs, rm.train.batch_size, rm.train.epochs, rm.data.k_max) == (128, 1, 64, 1, 2)
    assert rm.norm.data == sft.data.train and not rm.norm.gain  # reward 0 on the SFT set's reference summaries
    p = ppo.ppo
    assert (p.beta, p.temperature, p.rollout_batch, p.minibatches, p.epochs, p.ptx_coef, p.eos_penalty) == \
        (0.05, 0.7, 512, 1, 4, 0.0, 1.0)
    assert ppo.train.iterations == 1_000_000 // 512
    if name == "tldr":
        assert (sft.data.max_prompt_tokens, sft.data.max_response_tokens, rm.data.max_response_tokens,
                p.max_new_tokens) == (512, 53, 169, 53)


def test_unknown_slices_are_errors():
    with pytest.raises(ValueError, match="unknown model/slice"):
        load_config("configs/pods/tldr.py:all,pythia-6.9b,gpu-8xh100")  # PPO does not fit one 8 x 80 GiB host
    with pytest.raises(ValueError, match="unknown slice"):
        load_config("configs/pods/hh_gpt2_xl.py:all,v4-8")
    with pytest.raises(ValueError, match="unknown stage"):
        load_config("configs/pods/benchmark.py:pretrain,tldr,pythia-1b,v4-32,1,16,1")
