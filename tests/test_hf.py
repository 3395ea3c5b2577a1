"""Hugging Face GPT-2 interchange: our logits equal transformers' on the same weights, both directions."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from instructgpt_jax import hf
from instructgpt_jax.model import GPTConfig, make_model
from hf_reference import assert_export_round_trip, batches, hf_logits, our_logits, perturbed, random_params

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

HF_KW = dict(n_layer=2, n_head=4, n_embd=64, vocab_size=300, n_positions=64,
             resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, initializer_range=0.1)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A random GPT2LMHeadModel saved as safetensors; every tensor (LayerNorms, biases too) is perturbed so
    that a swapped or mis-reshaped tensor cannot go unnoticed."""
    torch.manual_seed(0)
    model = perturbed(transformers.GPT2LMHeadModel(transformers.GPT2Config(**HF_KW)), seed=None)
    path = tmp_path_factory.mktemp("hf")
    model.save_pretrained(path, safe_serialization=True)
    return str(path)


def test_load_matches_transformers(hf_dir):
    cfg, params = hf.load_hf(hf_dir)
    assert cfg == GPTConfig(vocab_size=300, n_positions=64, n_layer=2, n_head=4, n_embd=64)
    expected = nnx.to_pure_dict(nnx.split(make_model(cfg))[1])
    assert jax.tree.structure(params) == jax.tree.structure(expected)
    assert jax.tree.map(np.shape, params) == jax.tree.map(np.shape, expected)
    tokens, plain, padded = batches(HF_KW["vocab_size"])
    for mask in (plain, padded):
        ours, theirs = our_logits(cfg, params, tokens, mask), hf_logits(hf_dir, tokens, mask)
        assert np.abs(theirs).max() > 1.0  # the weights are large enough for a wrong layout to show
        np.testing.assert_allclose(ours[mask], theirs[mask], rtol=0, atol=1e-4)


def test_export_matches_transformers(tmp_path):
    cfg = GPTConfig(vocab_size=300, n_positions=64, n_layer=2, n_head=4, n_embd=64)
    config = assert_export_round_trip(cfg, random_params(cfg), tmp_path)
    assert config["model_type"] == "gpt2" and config["tie_word_embeddings"] and config["eos_token_id"] == 258


def test_bare_names_and_buffers(hf_dir, tmp_path):
    """The original OpenAI upload names tensors without 'transformer.' and stores the causal-mask buffer."""
    tensors = {k.removeprefix("transformer."): v for k, v in load_file(os.path.join(hf_dir, "model.safetensors")).items()}
    tensors["h.0.attn.bias"] = np.tril(np.ones((1, 1, 64, 64), np.float32))
    tensors["lm_head.weight"] = tensors["wte.weight"]
    save_file(tensors, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(open(os.path.join(hf_dir, "config.json")).read())
    _, ref = hf.load_hf(hf_dir)
    _, params = hf.load_hf(str(tmp_path))
    jax.tree.map(np.testing.assert_array_equal, params, ref)


def test_sharded_index(hf_dir, tmp_path):
    """Large models come as shards listed in model.safetensors.index.json."""
    tensors = load_file(os.path.join(hf_dir, "model.safetensors"))
    names = sorted(tensors)
    weight_map = {}
    for shard, part in (("model-00001-of-00002.safetensors", names[::2]), ("model-00002-of-00002.safetensors", names[1::2])):
        save_file({k: tensors[k] for k in part}, str(tmp_path / shard))
        weight_map.update({k: shard for k in part})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (tmp_path / "config.json").write_text(open(os.path.join(hf_dir, "config.json")).read())
    _, ref = hf.load_hf(hf_dir)
    _, params = hf.load_hf(str(tmp_path))
    jax.tree.map(np.testing.assert_array_equal, params, ref)


def test_scalar_head_round_trip(tmp_path):
    """score.weight (1, D) is GPT2ForSequenceClassification's head: it scores our last token (minus our bias)."""
    cfg = GPTConfig(vocab_size=300, n_positions=64, n_layer=2, n_head=4, n_embd=64, scalar_head=True)
    model = make_model(cfg, seed=1)
    params = nnx.to_pure_dict(nnx.split(model)[1])
    params["score_bias"] = jnp.float32(0.5)
    hf.save_hf(cfg, params, str(tmp_path))
    cfg2, params2 = hf.load_hf(str(tmp_path))
    assert cfg2.scalar_head
    jax.tree.map(np.testing.assert_array_equal, params2, jax.tree.map(np.asarray, params))

    tokens = np.random.default_rng(1).integers(0, 300, (2, 12)).astype(np.int32)
    merged = nnx.merge(nnx.split(model)[0], params)
    h, _ = merged.trunk(jnp.asarray(tokens))
    ours = np.asarray(merged.score(h, jnp.full((2,), 11)))
    clf = transformers.GPT2ForSequenceClassification.from_pretrained(str(tmp_path), num_labels=1, pad_token_id=299)
    with torch.no_grad():
        theirs = clf.eval().to(torch.float64)(torch.tensor(tokens)).logits[:, 0].numpy()
    np.testing.assert_allclose(ours - 0.5, theirs, rtol=0, atol=1e-4)


def _copy_with(hf_dir, out, tensors=None, config=None):
    tensors = tensors if tensors is not None else load_file(os.path.join(hf_dir, "model.safetensors"))
    config = config if config is not None else json.load(open(os.path.join(hf_dir, "config.json")))
    os.makedirs(out, exist_ok=True)
    save_file(tensors, os.path.join(out, "model.safetensors"))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f)
    return str(out)


def test_errors(hf_dir, tmp_path):
    tensors = load_file(os.path.join(hf_dir, "model.safetensors"))
    missing = {k: v for k, v in tensors.items() if k != "transformer.h.1.mlp.c_fc.bias"}
    with pytest.raises(ValueError, match=r"missing tensors \['transformer.h.1.mlp.c_fc.bias'\]"):
        hf.load_hf(_copy_with(hf_dir, tmp_path / "missing", tensors=missing))

    bad = {**tensors, "transformer.wpe.weight": np.zeros((32, 64), np.float32)}
    with pytest.raises(ValueError, match=r"transformer.wpe.weight has shape \(32, 64\), expected \(64, 64\)"):
        hf.load_hf(_copy_with(hf_dir, tmp_path / "bad", tensors=bad))

    untied = {**tensors, "lm_head.weight": tensors["transformer.wte.weight"] + 1}
    with pytest.raises(ValueError, match="untied"):
        hf.load_hf(_copy_with(hf_dir, tmp_path / "untied", tensors=untied))

    config = json.load(open(os.path.join(hf_dir, "config.json")))
    with pytest.raises(ValueError, match="model_type 'llama' is not supported"):
        hf.load_hf(_copy_with(hf_dir, tmp_path / "llama", config={**config, "model_type": "llama"}))
    with pytest.raises(ValueError, match="activation_function 'relu'"):
        hf.load_hf(_copy_with(hf_dir, tmp_path / "relu", config={**config, "activation_function": "relu"}))

    no_config = _copy_with(hf_dir, tmp_path / "no_config")
    os.remove(os.path.join(no_config, "config.json"))
    with pytest.raises(FileNotFoundError, match="config.json"):
        hf.load_hf(no_config)
    no_weights = _copy_with(hf_dir, tmp_path / "no_weights")
    os.remove(os.path.join(no_weights, "model.safetensors"))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        hf.load_hf(no_weights)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        hf.load_hf(str(tmp_path / "nowhere"))

    cfg, params = hf.load_hf(hf_dir)
    del params["h"][1]["attn"]["c_proj_bias"]
    with pytest.raises(ValueError, match="params have no h/1/attn/c_proj_bias"):
        hf.save_hf(cfg, params, str(tmp_path / "out"))


def test_import_export_checkpoint(hf_dir, tmp_path):
    from instructgpt_jax import train

    stage = str(tmp_path / "pretrain")
    result = hf.import_hf(hf_dir, stage)
    assert result["tokenizer"] == "byte" and result["n_params"] > 0
    assert train.is_complete(stage)  # a pipeline skips the stage and SFT starts from these weights
    with pytest.raises(FileExistsError):
        hf.import_hf(hf_dir, stage)
    out = str(tmp_path / "exported")
    hf.export_hf(out, stage)
    a = load_file(os.path.join(hf_dir, "model.safetensors"))
    b = load_file(os.path.join(out, "model.safetensors"))
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
