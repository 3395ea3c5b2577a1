"""Pod configs (GPT-2 XL, GPT-3 1.3B, 6.7B on v4 / v5e / v5p slices) without a TPU: every parameter and
optimizer-state leaf gets a valid sharding on an abstract mesh of the slice, per-chip memory of every stage
fits the chip's HBM, the sharded SFT step lowers for TPU, and experiments/tpu_pod.sh issues the right gcloud
commands."""

import math
import os
import subprocess
import sys

import jax
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))

import pod_check  # noqa: E402

from instructgpt_jax.config_base import load_config  # noqa: E402

CONFIGS = {
    "gpt2_xl": ("v4-32", "v5litepod-16", "v5p-32"),
    "gpt3_1b3": ("v4-64", "v5litepod-32", "v5p-32"),
    "gpt3_6b7": ("v4-128", "v5litepod-64", "v5p-64"),
}
PRESETS = {"gpt2_xl": "gpt2-xl", "gpt3_1b3": "instructgpt-1.3b", "gpt3_6b7": "instructgpt-6b"}
# The first slice of each model runs by default; the others (same code, other meshes and chips) with -m slow.
CASES = [pytest.param(name, s, marks=() if i == 0 else pytest.mark.slow)
         for name, slices in CONFIGS.items() for i, s in enumerate(slices)]


@pytest.mark.parametrize("name, slice_name", CASES)
def test_pod_config_shards_and_fits(name, slice_name):
    config = load_config(f"configs/pods/{name}.py:{slice_name}")
    assert config.pod.slice == slice_name and config.model == PRESETS[name] and config.tokenizer == "gpt2"
    mesh = tuple(config.sft.mesh.shape)
    assert math.prod(mesh) == config.pod.chips
    for stage in ("pretrain", "sft", "rm", "ppo", "ppo_ptx", "compare"):
        assert tuple(config[stage].mesh.shape) == mesh, stage
    for stage in ("pretrain", "sft", "rm", "ppo", "ppo_ptx"):
        assert config[stage].model.preset == PRESETS[name] and config[stage].model.remat
    result = pod_check.check(config)  # raises if any leaf's sharding does not divide its dimension
    ideal = result["sft"]["n_params"] * 4 / (mesh[1] * mesh[2])  # float32 params split over fsdp x tensor
    for stage, figures in result.items():
        assert figures["fits"], (stage, figures["total"] / pod_check.GIB, config.pod.hbm_gib)
    # FSDP / tensor parallelism really split the model: per-chip params within 10% of the ideal split (the
    # only replicated dimensions are small: biases, LayerNorms, and the 50257-token vocab on the tensor axis).
    assert result["sft"]["params"] <= 1.1 * ideal + 2 ** 20
    assert result["sft"]["opt_state"] <= 2.2 * ideal + 2 ** 20


def test_every_batch_splits_over_the_mesh():
    for name, slices in CONFIGS.items():
        for s in slices:
            config = load_config(f"configs/pods/{name}.py:{s}")
            shards = config.sft.mesh.shape[0] * config.sft.mesh.shape[1]
            sizes = {"pretrain": config.pretrain.train.batch_size, "sft": config.sft.train.batch_size,
                     "rm": config.rm.train.batch_size, "ppo": config.ppo.ppo.rollout_batch // config.ppo.ppo.minibatches,
                     "ptx": config.ppo_ptx.ppo.ptx_batch_size, "eval": config.eval.batch_size}
            assert all(v % shards == 0 for v in sizes.values()), (name, s, sizes)


def test_sharded_sft_step_lowers_for_tpu():
    config = load_config("configs/pods/gpt3_6b7.py:v4-128")
    from instructgpt_jax import train
    from instructgpt_jax.model import abstract_model

    text = pod_check.lower_train_step(config).as_text()
    n_params = len(jax.tree.leaves(abstract_model(train.model_config(config.sft.model))[1]))
    # Every parameter, its two Adam moments and the batch arrive sharded; FSDP and tensor axes both appear.
    assert text.count("sdy.sharding") >= 3 * n_params
    assert '"tensor"' in text and '"fsdp"' in text


def test_unknown_slice_is_an_error():
    with pytest.raises(ValueError, match="unknown slice"):
        load_config("configs/pods/gpt3_6b7.py:v4-8")


def test_tpu_pod_script_dry_run():
    env = {**os.environ, "DRY_RUN": "1", "TPU_NAME": "igpt", "ZONE": "us-central2-b", "ACCELERATOR": "v4-128",
           "BUCKET": "my-bucket"}
    script = os.path.join(ROOT, "experiments", "tpu_pod.sh")

    def run(*args):
        out = subprocess.run([script, *args], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    create = run("create")
    assert "gcloud compute tpus tpu-vm create igpt --zone=us-central2-b --accelerator-type=v4-128" in create
    assert "--version=tpu-ubuntu2204-base" in create
    setup = run("setup")
    assert setup.count("--worker=all") == 3 and "gcsfuse" in setup and "jax\\[tpu\\]" in setup
    launch = run("run", "pipeline", "--config", "configs/pods/gpt3_6b7.py:v4-128", "--workdir", "/gcs/runs/6b7")
    assert "--worker=all" in launch and "multihost_worker.py\\ --\\ pipeline\\ --config" in launch
    out = subprocess.run([script, "bogus"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "usage" in out.stderr
