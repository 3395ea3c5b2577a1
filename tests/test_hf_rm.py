"""An exported reward model loads with AutoModelForSequenceClassification and scores what ours scores.

transformers' heads have no bias, so export_hf folds our trained score_bias into reward_norm.json's mean:
(HF logit - mean) / std must equal our normalised reward (raw score - RM mean) / RM std on the same tokens,
unpadded, right-padded with the exported pad_token_id, and left-padded with position ids.
"""

import dataclasses
import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from instructgpt_jax import checkpoint, hf
from instructgpt_jax.model import make_model, positions_from_mask
from instructgpt_jax.presets import get_preset
from instructgpt_jax.tokenizer import make_tokenizer
from hf_reference import random_params

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

BYTE = make_tokenizer("byte")
NORM = {"mean": 0.3, "std": 2.0, "gain": True, "n": 10}


def rm_stage(tmp_path, preset, bias=0.7, tokenizer="byte", norm=NORM, **overrides):
    """A finished RM-like stage folder: random scalar-head params (bias != 0) and reward_norm.json."""
    cfg = get_preset(preset, scalar_head=True, **overrides)
    params = random_params(cfg, init_seed=5, noise_seed=3)
    params["score_bias"] = np.float32(bias)
    stage = str(tmp_path / "rm")
    manager = checkpoint.make_manager(os.path.join(stage, "checkpoints"))
    checkpoint.save(manager, 0, {"params": jax.device_put(params)},
                    {"stage": "rm", "model": dataclasses.asdict(cfg), "tokenizer": tokenizer, "total_steps": 0}, force=True)
    manager.wait_until_finished()
    if norm is not None:
        with open(os.path.join(stage, "reward_norm.json"), "w") as f:
            json.dump(norm, f)
    return cfg, params, stage


def our_rewards(cfg, params, tokens, mask, norm):
    model = nnx.merge(nnx.split(make_model(cfg))[0], params)
    h, _ = model.trunk(tokens, positions_from_mask(mask), mask)
    last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)  # the last real slot (EOS)
    return (np.asarray(model.score(h, last)) - norm["mean"]) / norm["std"]


def sequences():
    """Three prompt + response + EOS rows of different lengths, as byte ids."""
    texts = [("Sort: b a", "a b"), ("Reverse the words: red fox sky", "sky fox red"), ("Hi", "Hello there!")]
    return [BYTE.encode_prompt(p) + BYTE.encode_response(r) for p, r in texts]


@pytest.mark.parametrize("preset, cls", [("nano", "GPT2ForSequenceClassification"),
                                         ("nano-neox", "GPTNeoXForSequenceClassification")])
def test_exported_rm_scores_equal_ours(tmp_path, preset, cls):
    cfg, params, stage = rm_stage(tmp_path, preset)
    out = str(tmp_path / "export")
    hf.export_hf(out, stage)
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["architectures"] == [cls] and config["num_labels"] == 1 and config["pad_token_id"] == BYTE.pad_id
    norm = json.load(open(os.path.join(out, "reward_norm.json")))
    assert norm["score_bias"] == pytest.approx(0.7) and norm["mean"] == pytest.approx(0.3 - 0.7) and norm["std"] == 2.0
    model = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert type(model).__name__ == cls and model.config.num_labels == 1

    seqs = sequences()
    T = max(map(len, seqs))
    right = np.full((3, T), BYTE.pad_id, np.int32)
    right_mask = np.zeros((3, T), bool)
    for i, s in enumerate(seqs):
        right[i, :len(s)], right_mask[i, :len(s)] = s, True
    left = np.full((3, T), BYTE.pad_id, np.int32)
    left_mask = np.zeros((3, T), bool)
    for i, s in enumerate(seqs):
        left[i, T - len(s):], left_mask[i, T - len(s):] = s, True
    ours = our_rewards(cfg, params, left, left_mask, NORM)
    assert np.abs(ours).max() > 0.1  # a head reading a wrong slot would show
    with torch.no_grad():
        for tokens, mask in ((right, right_mask), (left, left_mask)):
            logits = model(torch.tensor(tokens), attention_mask=torch.tensor(mask.astype(np.int64)),
                           position_ids=torch.tensor(np.maximum(np.cumsum(mask, -1) - 1, 0))).logits[:, 0].numpy()
            theirs = (logits - norm["mean"]) / norm["std"]
            print(f"{cls}: max |reward diff| {np.abs(theirs - ours).max():.2e}")
            np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-4)
        # One unpadded row, transformers' default positions.
        one = model(torch.tensor([seqs[1]])).logits[0, 0].item()
        np.testing.assert_allclose((one - norm["mean"]) / norm["std"], ours[1], rtol=0, atol=1e-4)

    # Importing the export gives back our network with the bias folded out (0), consistent with the file.
    cfg2, params2 = hf.load_hf(out)
    assert cfg2.architecture() == cfg.architecture() and cfg2.scalar_head and float(params2["score_bias"]) == 0.0


def test_value_model_without_norm_and_pad_ids(tmp_path):
    """No reward_norm.json (a value model): mean = -score_bias, std 1, i.e. the raw score."""
    _, _, stage = rm_stage(tmp_path, "nano", bias=-0.25, norm=None)
    out = str(tmp_path / "export")
    hf.export_hf(out, stage)
    norm = json.load(open(os.path.join(out, "reward_norm.json")))
    assert (norm["mean"], norm["std"], norm["source"]) == (0.25, 1.0, None)
    # The pad id must differ from EOS, where our reward is read.
    assert hf.score_pad_id(get_preset("nano"), "byte") == 256
    assert hf.score_pad_id(get_preset("gpt2"), "gpt2") == 50257  # GPT-2 BPE: EOS = PAD and no spare id
    assert hf.score_pad_id(get_preset("pythia-70m"), None) == 50304


def test_gpt2_bpe_rm_loads_with_out_of_vocab_pad(tmp_path):
    """With no id to spare for padding (GPT-2's BPE pads with EOS; here no tokenizer is recorded) the export
    names pad_token_id = vocab_size: transformers warns, accepts it, and reads the last column of left-padded
    rows."""
    cfg, params, stage = rm_stage(tmp_path, "nano", tokenizer=None, norm=NORM)
    out = str(tmp_path / "export")
    hf.export_hf(out, stage)
    assert json.load(open(os.path.join(out, "config.json")))["pad_token_id"] == cfg.vocab_size
    model = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    seqs = sequences()
    T = max(map(len, seqs))
    left = np.full((3, T), BYTE.eos_id, np.int32)
    mask = np.zeros((3, T), bool)
    for i, s in enumerate(seqs):
        left[i, T - len(s):], mask[i, T - len(s):] = s, True
    norm = json.load(open(os.path.join(out, "reward_norm.json")))
    with torch.no_grad():
        logits = model(torch.tensor(left), attention_mask=torch.tensor(mask.astype(np.int64)),
                       position_ids=torch.tensor(np.maximum(np.cumsum(mask, -1) - 1, 0))).logits[:, 0].numpy()
    np.testing.assert_allclose((logits - norm["mean"]) / norm["std"], our_rewards(cfg, params, left, mask, NORM),
                               rtol=0, atol=1e-4)
