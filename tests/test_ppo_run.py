"""The PPO stage end to end on tiny random SFT/RM checkpoints: metrics and evaluation rows, exact resume
after a crash, clear errors for bad configs. The paper's headline on the default run: tests/test_headline.py."""

import dataclasses
import json
import os
import shutil

import jax
import numpy as np
import optax
import pytest

from instructgpt_jax import checkpoint, config_base, ppo, train
from instructgpt_jax.data import world as world_lib
from instructgpt_jax.data.formats import write_jsonl
from instructgpt_jax.presets import get_preset
from instructgpt_jax.stages import ppo as ppo_stage

ROOT = os.path.join(os.path.dirname(__file__), "..")


def _save_stage(stage_dir, head: bool, seed: int, stage: str, preset: str = "nano"):
    """A stage folder as train.run leaves it: a checkpoint with params and meta (random weights)."""
    cfg = get_preset(preset, scalar_head=head)
    setup = train.make_setup(cfg, config_base.mesh_config((1, 1, 1)), train.make_optimizer(config_base.optim_config(1e-3), 1),
                             devices=jax.devices()[:1])
    rng = np.random.default_rng(seed)
    params = jax.tree_util.tree_map_with_path(
        lambda p, x: (float(p[-1].key == "scale") + 0.02 * rng.standard_normal(x.shape)).astype(np.float32),
        setup.abstract["params"])
    manager = checkpoint.make_manager(os.path.join(stage_dir, "checkpoints"))
    checkpoint.save(manager, 5, {"params": params}, {"stage": stage, "model": dataclasses.asdict(cfg),
                                                     "tokenizer": "byte", "total_steps": 5}, force=True)
    manager.wait_until_finished()


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    _save_stage(root / "sft", False, 0, "sft")
    _save_stage(root / "rm", True, 1, "rm")
    with open(root / "rm" / "reward_norm.json", "w") as f:
        json.dump({"mean": 0.1, "std": 0.5}, f)
    prompts = world_lib.make_world(config_base.load_config("configs/world.py")).prompts("ppo")[:48]
    write_jsonl(str(root / "ppo.jsonl"), ({"prompt": p} for p in prompts))
    return root


def _config(stages, **ppo_overrides):
    config = config_base.load_config(os.path.join(ROOT, "configs/ppo.py:smoke"))
    config.init_policy, config.init_value, config.reward_model = str(stages / "sft"), str(stages / "rm"), str(stages / "rm")
    config.data.prompts = str(stages / "ppo.jsonl")
    config.model.preset = "nano"
    config.mesh.shape = (8, 1, 1)
    config.ppo.update({"rollout_batch": 16, "minibatches": 2, "epochs": 2, "max_new_tokens": 8, "ptx_batch_size": 8,
                       "ptx_seq_len": 32, "ptx_coef": 1.0, "adaptive_kl": True, "horizon": 50, **ppo_overrides})
    config.train.update({"iterations": 4, "log_every": 1, "eval_every": 2, "checkpoint_every": 2, "tensorboard": False})
    config.eval.heldout_batches = 1
    return config


def _rows(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _strip(row):
    return {k: v for k, v in row.items() if not k.startswith("time")}


TRAIN_KEYS = ("ppo/score", "ppo/kl", "ppo/reward", "ppo/approxkl", "ppo/clipfrac", "ppo/value_loss", "ppo/entropy",
              "ppo/ptx_loss", "ppo/response_length", "ppo/beta", "time/generate", "time/score", "time/update")


def test_run_writes_metrics_evaluations_and_checkpoints(stages, tmp_path):
    config = _config(stages)
    config.train.update({"iterations": 2, "checkpoint_every": 1})
    workdir = str(tmp_path / "run")
    result = ppo_stage.run(config, workdir)
    rows = _rows(workdir)
    assert [r["step"] for r in rows if "ppo/score" in r] == [1, 2]
    assert [r["step"] for r in rows if "ppo/gold_score" in r] == [0, 2]  # 0 = the SFT policy
    for key in TRAIN_KEYS:
        assert np.isfinite(rows[-2][key]), key
    # Before any update the policy is the reference: its KL is the sampler's logprobs minus the reference
    # forward's, equal to float rounding (tests/test_sampling.py bounds each logprob's difference by 1e-5).
    assert abs(rows[0]["ppo/eval_kl"]) < 1e-4
    assert set(result) == {"ppo/gold_score", "ppo/eval_score", "ppo/eval_kl", "ppo/eval_length", "ppo/pretrain_loss"}
    assert result["ppo/eval_kl"] != 0.0
    assert train.is_complete(workdir)
    step, meta = checkpoint.read_meta(os.path.join(workdir, "checkpoints"))
    assert step == 2 and meta["beta"] != 0.02  # the adaptive controller moved beta; the checkpoint keeps it
    assert meta["ema_decay"] == 0.992  # what a resume checks its own setting against (check_average)
    cfg, _, params, _ = checkpoint.load_model(workdir)  # the policy, readable as any stage's model
    assert not cfg.scalar_head and "score_kernel" not in params
    # configs/ppo.py's moving average is the released policy: `params` are the average, `online_params` the
    # trained weights; 8 gradient steps at decay 0.992 keep the average ~94% SFT, closer to it than the trained.
    assert config.ppo.ema_decay == 0.992
    online = checkpoint.load_model(workdir, item="online_params")[2]
    sft = checkpoint.load_model(str(stages / "sft"))[2]

    def moved(p):
        return sum(float(np.abs(a - b).sum()) for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(sft)))

    assert 0 < moved(params) < 0.1 * moved(online)
    assert ppo_stage.run(config, workdir) == result  # a finished run returns its last evaluation at once
    # A crashed run (its last checkpoint gone) resumed without the average it ran with: a clear error, not
    # the average read back as the trained weights.
    cut = str(tmp_path / "cut")
    shutil.copytree(workdir, cut)
    shutil.rmtree(os.path.join(cut, "checkpoints", "2"))
    config.ppo.ema_decay = 0.0
    with pytest.raises(ValueError, match=r"step 1 was written with a moving average .* config\.ppo\.ema_decay=0\.0"):
        ppo_stage.run(config, cut)


@pytest.mark.slow  # the default suite stays under 12 minutes on 2 cores (README)
def test_reward_and_value_models_larger_than_the_policy(stages, tmp_path):
    """The paper's 6B RM and value function serve its 1.3B policy: their architecture comes from their checkpoints."""
    big = tmp_path / "rm_tiny"
    _save_stage(big, True, 2, "rm", preset="tiny")
    shutil.copy(stages / "rm" / "reward_norm.json", big / "reward_norm.json")
    config = _config(stages)
    config.init_value = config.reward_model = str(big)
    config.train.update({"iterations": 2, "checkpoint_every": 2})
    workdir = str(tmp_path / "run")
    result = ppo_stage.run(config, workdir)
    assert np.isfinite(result["ppo/eval_score"]) and result["ppo/eval_kl"] != 0.0
    stored = checkpoint.make_manager(os.path.join(workdir, "checkpoints")).item_metadata(2)["value_params"]
    assert stored["score_kernel"].shape == (get_preset("tiny").n_embd,)  # the value model is the tiny RM
    policy_cfg = checkpoint.load_model(workdir)[0]
    assert policy_cfg.n_embd == get_preset("nano").n_embd
    # A larger reward network beside a policy-sized value model (init_value = SFT): two headed networks.
    nano, tiny = get_preset("nano"), get_preset("tiny")
    setup = ppo_stage.make_setup(nano, config.mesh, config_base.from_config(ppo.PPOConfig, config.ppo, "config.ppo"), optax.sgd(0.0), optax.sgd(0.0),
                                value_cfg=nano, reward_cfg=tiny)
    assert setup.headed.model_cfg.n_embd == nano.n_embd and setup.rewarder.model_cfg.n_embd == tiny.n_embd
    assert setup.abstract["value_params"]["score_kernel"].shape == (nano.n_embd,)
    # One network for policy and value cannot start from a value model of another size.
    config = _config(stages, shared_trunk=True)
    config.init_value = str(big)
    with pytest.raises(ValueError, match=r"shared_trunk needs the value model \(init_value\) to have the policy's"):
        ppo_stage.run(config, str(tmp_path / "run3"))


@pytest.mark.slow
def test_resume_after_a_crash_is_exact(stages, tmp_path):
    config = _config(stages)
    full = str(tmp_path / "full")
    result = ppo_stage.run(config, full)
    # A crash right after the iteration-2 checkpoint: resume from it and finish.
    cut = str(tmp_path / "cut")
    shutil.copytree(full, cut)
    shutil.rmtree(os.path.join(cut, "checkpoints", "4"))
    assert ppo_stage.run(config, cut) == result
    assert [_strip(r) for r in _rows(cut)] == [_strip(r) for r in _rows(full)]
    for item in ("params", "online_params"):  # the released average and the trained weights
        for x, y in zip(jax.tree.leaves(checkpoint.load_model(full, item)[2]),
                        jax.tree.leaves(checkpoint.load_model(cut, item)[2])):
            np.testing.assert_array_equal(x, y)


def test_bad_configs_name_the_key(stages, tmp_path):
    config = _config(stages)
    config.init_policy = ""
    with pytest.raises(ValueError, match=r"config\.init_policy is empty"):
        ppo_stage.run(config, str(tmp_path))
    config = _config(stages, max_new_tokens=200)
    with pytest.raises(ValueError, match=r"config\.data\.prompt_len=80 \+ config\.ppo\.max_new_tokens=200 exceeds"):
        ppo_stage.run(config, str(tmp_path))
    config = _config(stages, rollout_batch=12, minibatches=2)
    with pytest.raises(ValueError, match=r"config\.ppo\.rollout_batch=12 must be divisible by data x fsdp = 8"):
        ppo_stage.run(config, str(tmp_path))
    # The update's own batches are split over the update's devices: all eight here (on a CPU host the default
    # update runs on one device, where any minibatch and ptx batch divide).
    config = _config(stages, minibatches=4)
    config.mesh.update_devices = 8
    with pytest.raises(ValueError, match=r"rows per minibatch must be divisible by data x fsdp = 8"):
        ppo_stage.run(config, str(tmp_path))
    config = _config(stages, ptx_batch_size=4)
    config.mesh.update_devices = 8
    with pytest.raises(ValueError, match=r"config\.ppo\.ptx_batch_size=4 must be divisible by data x fsdp = 8"):
        ppo_stage.run(config, str(tmp_path))
    config = _config(stages)
    config.mesh.update_devices = 9
    with pytest.raises(ValueError, match=r"config\.mesh\.update_devices=9; expected 0 \(automatic\) or 1 to 8"):
        ppo_stage.run(config, str(tmp_path))
