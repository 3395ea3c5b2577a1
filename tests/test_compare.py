"""Comparison stage: distinct-sample selection and K-wise JSONL that the RM reader
accepts, from a nano policy on the smoke world (K uniform or fixed, gold scores, labelers, no-op rerun)."""

import json
import os

import numpy as np
import pytest

from instructgpt_jax import config_base, metrics
from instructgpt_jax.data import formats
from instructgpt_jax.data.judge import gold_score
from instructgpt_jax.tokenizer import make_tokenizer
from instructgpt_jax import sampling
from instructgpt_jax import stages
from stage_inputs import world_and_checkpoint


def test_pick_distinct_keeps_sampling_order_and_skips_blanks():
    assert sampling.pick_distinct(["a", "b", "a", " ", "", "c", "d"], 3) == ["a", "b", "c"]
    assert sampling.pick_distinct(["a", "a"], 4) == ["a"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The smoke world's files and a nano policy checkpoint (2 LM steps: diverse samples are what we need)."""
    import ml_collections

    root = tmp_path_factory.mktemp("compare")
    config = ml_collections.ConfigDict()
    config.model = config_base.model_config("nano")
    config.mesh = config_base.mesh_config((-1, 1, 1))
    config.optim = config_base.optim_config(1e-3)
    config.train = config_base.train_config(2, 8, 32, tensorboard=False)
    world_and_checkpoint(root, "sft", config)
    return root


def _config(root, **compare_overrides):
    config = config_base.load_config("configs/compare.py:smoke")
    config.policy = str(root / "sft")
    config.data.prompts = str(root / "world" / "rm_prompts.jsonl")
    config.data.num_prompts = 16
    config.compare.update(max_new_tokens=8, batch_rows=32, **compare_overrides)
    return config


def test_writes_kwise_jsonl_the_rm_reader_accepts(inputs, tmp_path):
    figures = stages.compare.run(_config(inputs), str(tmp_path))
    path = str(tmp_path / "rm.jsonl")
    records = list(formats.read_rm(path, make_tokenizer("byte"), k_max=9))  # validates distinctness and rankings
    raw = [json.loads(line) for line in open(path)]
    prompts = [json.loads(line)["prompt"] for line in open(inputs / "world" / "rm_prompts.jsonl")][:16]
    assert [r["prompt"] for r in records] == [p for p in prompts if p in {r["prompt"] for r in records}]
    assert figures["compare/prompts"] == len(records) and figures["compare/prompts"] + figures["compare/dropped"] == 16
    assert all(2 <= len(r["responses"]) <= 9 for r in records)
    assert len({len(r["responses"]) for r in records}) > 1  # K drawn per prompt from 4..9
    for r in raw:
        np.testing.assert_allclose(r["gold"], gold_score([r["prompt"]] * len(r["responses"]), r["responses"]), atol=1e-4)
        assert 0 <= r["labeler"] < 40
    assert 0.0 <= figures["compare/labeler_agreement"] <= 1.0
    mtime = os.path.getmtime(path)
    assert stages.compare.run(_config(inputs), str(tmp_path)) == figures  # a finished stage is not redone
    assert os.path.getmtime(path) == mtime
    events = {tag: value for step, tag, value in metrics.read_tensorboard(str(tmp_path)) if step == 0}
    assert set(events) == set(figures)  # TensorBoard gets the figures too
    assert events["compare/labeler_agreement"] == pytest.approx(figures["compare/labeler_agreement"], rel=1e-6)


def test_fixed_k(inputs, tmp_path):
    stages.compare.run(_config(inputs, k_min=3, k_max=3, extra_samples=3), str(tmp_path))
    records = list(formats.read_rm(str(tmp_path / "rm.jsonl"), k_max=9))
    assert records and all(len(r["responses"]) == 3 for r in records)


def test_bad_k_range_names_the_keys(inputs, tmp_path):
    with pytest.raises(ValueError, match=r"k_min \(5\) <= k_max \(4\)"):
        stages.compare.run(_config(inputs, k_min=5, k_max=4), str(tmp_path))


def test_a_budget_beyond_the_prompt_file_is_an_error_not_a_smaller_budget(inputs, tmp_path):
    available = sum(1 for line in open(inputs / "world" / "rm_prompts.jsonl") if line.strip())
    config = _config(inputs)
    first = available - 8
    config.data.first_prompt, config.data.num_prompts = first, 16
    asked = rf"config.data.first_prompt={first} and config.data.num_prompts=16 ask for prompts {first}\.\.{first + 15}"
    with pytest.raises(ValueError, match=rf"has {available} prompts; {asked}"):
        stages.compare.run(config, str(tmp_path))
    config.data.first_prompt, config.data.num_prompts = available, 0
    with pytest.raises(ValueError, match=rf"ask for prompts after the first {available}"):
        stages.compare.run(config, str(tmp_path))
    assert not os.path.exists(tmp_path / "rm.jsonl")


def test_first_prompt_skips_and_mix_policy_samples_a_share(inputs, tmp_path):
    """Later RLHF rounds: fresh prompts (data.first_prompt), a share of the samples from a second policy."""
    import shutil

    other = tmp_path / "other"
    shutil.copytree(inputs / "sft", other)
    config = _config(inputs, mix_fraction=0.5)
    config.data.first_prompt, config.mix_policy = 16, str(other)
    figures = stages.compare.run(config, str(tmp_path / "out"))
    raw = [json.loads(line) for line in open(tmp_path / "out" / "rm.jsonl")]
    prompts = [json.loads(line)["prompt"] for line in open(inputs / "world" / "rm_prompts.jsonl")]
    assert raw and {r["prompt"] for r in raw} <= set(prompts[16:32])
    sources = [p for r in raw for p in r["policies"]]
    assert set(sources) == {config.policy, str(other)} and all(len(r["policies"]) == len(r["responses"]) for r in raw)
    assert 0.2 < figures["compare/mix_share"] < 0.8
    assert "policies" not in json.loads(open(inputs / "world" / "rm_prompts.jsonl").readline())
