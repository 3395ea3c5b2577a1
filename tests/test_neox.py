"""GPT-NeoX (Pythia): logits equal transformers' GPTNeoXForCausalLM both ways, KV-cache decoding equals the full
forward, Pythia presets' exact parameter counts, and a local tokenizer.json through `tokenizers`."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from instructgpt_jax import hf
from instructgpt_jax.model import GPTConfig, count_params, make_model
from instructgpt_jax.presets import get_preset
from decoding import assert_decoding_equals_full_forward
from hf_reference import assert_export_round_trip, batches, hf_logits, our_logits, perturbed, random_params

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# Small widths with Pythia's shape choices; an MLP width other than 4D and a LayerNorm eps other than the
# default make a dropped field visible. Second case: sequential residual, full rotary, tied unembedding.
NEOX_CASES = {
    "pythia": dict(use_parallel_residual=True, rotary_pct=0.25, tie_word_embeddings=False),
    "sequential_tied": dict(use_parallel_residual=False, rotary_pct=1.0, tie_word_embeddings=True),
}
HF_KW = dict(vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=192,
             max_position_embeddings=64, layer_norm_eps=1e-6, rotary_emb_base=10000, hidden_act="gelu",
             attention_dropout=0.0, hidden_dropout=0.0, initializer_range=0.1)


@pytest.fixture(scope="module", params=sorted(NEOX_CASES))
def neox_dir(request, tmp_path_factory):
    config = transformers.GPTNeoXConfig(**HF_KW, **NEOX_CASES[request.param])
    path = tmp_path_factory.mktemp(request.param)
    perturbed(transformers.GPTNeoXForCausalLM(config)).save_pretrained(path, safe_serialization=True)
    return str(path)


def test_import_matches_transformers(neox_dir):
    cfg, params = hf.load_hf(neox_dir)
    case = NEOX_CASES[os.path.basename(neox_dir).rstrip("0123456789")]
    assert (cfg.arch, cfg.n_inner, cfg.layer_norm_epsilon, cfg.rotary_pct, cfg.parallel_residual, cfg.tied_embeddings) == \
        ("neox", 192, 1e-6, case["rotary_pct"], case["use_parallel_residual"], case["tie_word_embeddings"])
    expected = nnx.to_pure_dict(nnx.split(make_model(cfg))[1])
    assert jax.tree.map(np.shape, params) == jax.tree.map(np.shape, expected)
    tokens, plain, padded = batches(HF_KW["vocab_size"])
    for mask in (plain, padded):
        ours, theirs = our_logits(cfg, params, tokens, mask), hf_logits(neox_dir, tokens, mask)
        assert np.abs(theirs).max() > 1.0  # the weights are large enough for a wrong layout to show
        err = np.abs(ours[mask] - theirs[mask]).max()
        print(f"neox {os.path.basename(neox_dir)} {'padded' if not mask.all() else 'plain'}: max |logit diff| {err:.2e}")
        np.testing.assert_allclose(ours[mask], theirs[mask], rtol=0, atol=1e-4)


def test_export_matches_transformers(tmp_path):
    cfg = get_preset("nano-neox", vocab_size=300, n_positions=64, n_inner=96)
    config = assert_export_round_trip(cfg, random_params(cfg), tmp_path)
    assert config["architectures"] == ["GPTNeoXForCausalLM"] and not config["tie_word_embeddings"]


@pytest.mark.parametrize("shape", [{}, dict(rotary_pct=1.0, parallel_residual=False, tied_embeddings=True)],
                         ids=["pythia", "tiny-world-rope's"])
def test_kv_cache_decoding_equals_full_forward(shape):
    """Prefill a left-padded batch, then feed one token at a time: each step's logits equal the full pass's."""
    cfg = get_preset("nano-neox", vocab_size=61, **shape)
    params = random_params(cfg, init_seed=0, noise_seed=2, scale=0.2)
    tokens = jnp.asarray(np.random.default_rng(4).integers(0, 61, (2, 12)), jnp.int32)
    mask = jnp.arange(12)[None, :] >= jnp.array([0, 3])[:, None]
    assert_decoding_equals_full_forward(cfg, params, tokens, mask, prefill=6)


@pytest.mark.parametrize("name", ["pythia-70m", "pythia-160m", "pythia-410m", "pythia-1b", "pythia-1.4b",
                                  "pythia-2.8b", "pythia-6.9b"])
def test_pythia_counts_exactly(name):
    """The released checkpoints' totals (model cards), not just within the 2% of test_presets."""
    published = {"pythia-70m": 70_426_624, "pythia-160m": 162_322_944, "pythia-410m": 405_334_016,
                 "pythia-1b": 1_011_781_632, "pythia-1.4b": 1_414_647_808, "pythia-2.8b": 2_775_208_960,
                 "pythia-6.9b": 6_857_302_016}[name]
    assert count_params(get_preset(name)) == published


def test_gpt2_unchanged_by_neox_fields():
    """GPT-2 keeps its position table, tanh GELU and tied unembedding; NeoX fields do not touch it."""
    gpt2, neox = get_preset("nano"), get_preset("nano-neox")
    assert (gpt2.arch, gpt2.rotary_dim, gpt2.tied_embeddings) == ("gpt2", 0, True)
    assert dataclasses.replace(gpt2, rotary_pct=1.0).architecture() == gpt2.architecture()
    assert neox.architecture() != dataclasses.replace(neox, parallel_residual=False).architecture()
    names = set(nnx.to_pure_dict(nnx.split(make_model(neox))[1]))
    assert "wpe" not in names and "lm_head" in names
    with pytest.raises(ValueError, match="arch='llama'"):
        GPTConfig(arch="llama")
    with pytest.raises(ValueError, match="expected an even number"):
        GPTConfig(arch="neox", n_embd=64, n_head=4, rotary_pct=0.2)  # int(16 * 0.2) = 3 dims


# ---------------------------------------------------------------- a local tokenizer.json

def make_tokenizer_folder(path, pad=False):
    """A GPT-NeoX-style tokenizer.json: byte-level BPE with <|endoftext|> as id 0 and <|padding|> as id 1."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(vocab_size=280, special_tokens=["<|endoftext|>", "<|padding|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(["SUBREDDIT: r/tifu TITLE: POST: TL;DR: the cat sat on the mat"] * 20, trainer)
    os.makedirs(path, exist_ok=True)
    tok.save(os.path.join(path, "tokenizer.json"))
    special = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    if pad:
        special["pad_token"] = "<|padding|>"
    with open(os.path.join(path, "special_tokens_map.json"), "w") as f:
        json.dump(special, f)
    return str(path)


def test_hf_tokenizer_folder(tmp_path):
    from instructgpt_jax.tokenizer import check_vocab, make_tokenizer

    tok = make_tokenizer(make_tokenizer_folder(tmp_path / "tok"))
    assert (tok.eos_id, tok.bos_id, tok.pad_id, tok.name) == (0, 0, 0, str(tmp_path / "tok"))
    text = "POST: the cat sat\n\nTL;DR:"
    ids = tok.encode(text)
    assert len(ids) < len(text.encode()) and tok.decode(ids) == text  # merges apply and round-trip
    assert tok.encode_prompt(text) == ids  # GPT-NeoX's BPE adds no BOS and no separator
    assert tok.encode_response(" the mat") == [*tok.encode(" the mat"), 0]
    assert tok.decode(tok.encode_response(" the mat")) == " the mat"  # EOS dropped
    check_vocab(tok, 280)
    assert make_tokenizer(make_tokenizer_folder(tmp_path / "padded", pad=True)).pad_id == 1
    with pytest.raises(ValueError, match="unknown tokenizer 'gpt5'"):
        make_tokenizer("gpt5")


def test_import_copies_tokenizer_and_export_brings_it_back(neox_dir, tmp_path):
    from instructgpt_jax import train

    src = tmp_path / "src"
    os.makedirs(src)
    for name in ("config.json", "model.safetensors"):
        os.link(os.path.join(neox_dir, name), src / name)
    with pytest.raises(FileNotFoundError, match="needs its own tokenizer"):
        hf.import_hf(str(src), str(tmp_path / "no_tok"))
    make_tokenizer_folder(src)
    stage = str(tmp_path / "pretrain")
    result = hf.import_hf(str(src), stage)
    assert result["tokenizer"] == os.path.join(stage, "tokenizer") and train.is_complete(stage)
    assert os.path.isfile(os.path.join(stage, "tokenizer", "tokenizer.json"))
    out = str(tmp_path / "exported")
    hf.export_hf(out, stage)
    assert open(os.path.join(out, "tokenizer.json")).read() == open(src / "tokenizer.json").read()
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["eos_token_id"] == 0 and "instructgpt_tokenizer" not in config
    tokens, _, padded = batches(HF_KW["vocab_size"])
    np.testing.assert_allclose(hf_logits(out, tokens, padded)[padded], hf_logits(neox_dir, tokens, padded)[padded],
                               rtol=0, atol=1e-5)
