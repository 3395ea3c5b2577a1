"""Hugging Face interchange for GPT-2 and GPT-NeoX (Pythia): a local `transformers` folder (config.json +
model.safetensors) to our pure-dict params and back, with numpy and safetensors only (no torch at run time).

Hugging Face's GPT-2 stores every linear layer as a `Conv1D` whose weight is laid out (in, out), the same
orientation as our kernels, so each tensor maps by a reshape alone, never a transpose: c_attn (D, 3D) ->
(D, 3, H, K) splits the fused q|k|v columns and then each third into heads, exactly as `GPT2Attention`
splits them, and c_proj (D, D) -> (H, K, D) reads its merged-heads input the same way. Both models tie the
unembedding to `wte`, so `lm_head.weight` is never stored separately.

GPT-NeoX stores `nn.Linear` weights (out, in), so each kernel is transposed, and its fused
`query_key_value` output is grouped by head first: `GPTNeoXAttention` views it as (H, 3K) and chunks q|k|v
inside each head, so its rows reshape to (H, 3, K) before our (3, H, K). Pythia's unembedding `embed_out`
is untied (our `lm_head`, (D, V)); its rotary and parallel-residual settings are GPTConfig fields.

A scalar head (reward model, value function) travels as `score.weight` (1, D): the layout of
`GPT2ForSequenceClassification` / `GPTNeoXForSequenceClassification` with `num_labels=1`, whose head has no
bias. Our trained `score_bias` is written as `score.bias` only when it is not 0 (transformers ignores it);
`export_hf` folds it into reward_norm.json instead, so the exported folder's scores plus that file give our
normalised reward exactly (see `export_hf`).

`import_hf(hf_dir, workdir)` (`instructgpt import-hf --hf_dir D --workdir W/pretrain`) writes the weights
as a finished stage checkpoint, so `W/pretrain` can stand in for our pretraining stage and SFT starts from
GPT-2 or Pythia; `export_hf(hf_dir, workdir)` writes a stage's newest params as a folder `transformers`
loads with `AutoModelForCausalLM` (a policy) or `AutoModelForSequenceClassification` (a reward model).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil

import jax
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from instructgpt_jax import checkpoint
from instructgpt_jax.data.formats import write_json
from instructgpt_jax.model import GPTConfig
from instructgpt_jax.reward import load_reward_norm
from instructgpt_jax.tokenizer import TOKENIZERS, make_tokenizer

log = logging.getLogger(__name__)

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"  # sharded checkpoints (large models)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# Tensors a file may hold that are not parameters: causal-mask and rotary buffers of older transformers.
_BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias", ".attention.bias", ".attention.masked_bias", ".inv_freq")
_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")  # both are GELU's tanh approximation, as in model.MLP
_TRUNK = {"gpt2": "transformer.", "neox": "gpt_neox."}  # the base model's attribute in the *ForX classes
_HEADS = ("score.", "lm_head.", "embed_out.")  # tensors beside the base model, never inside it


def _same(x):
    return x


def _layout(cfg: GPTConfig) -> dict[tuple, tuple]:
    """Our param path -> (HF name without the trunk prefix, HF shape, our shape, to_ours, to_hf)."""
    D, F, H, K, V = cfg.n_embd, cfg.mlp_dim, cfg.n_head, cfg.head_dim, cfg.vocab_size

    def reshaped(hf, hf_shape, our_shape):
        return hf, hf_shape, our_shape, lambda x: x.reshape(our_shape), lambda x: x.reshape(hf_shape)

    def kept(hf, shape):
        return hf, shape, shape, _same, _same

    def linear(hf, d_in, d_out):  # torch nn.Linear: (out, in)
        return hf, (d_out, d_in), (d_in, d_out), np.transpose, np.transpose

    if cfg.arch == "neox":
        layout = {("wte", "embedding"): kept("embed_in.weight", (V, D)),
                  ("ln_f", "scale"): kept("final_layer_norm.weight", (D,)),
                  ("ln_f", "bias"): kept("final_layer_norm.bias", (D,))}
        if not cfg.tied_embeddings and not cfg.scalar_head:  # a reward / value model never reads its unembedding
            layout[("lm_head",)] = linear("embed_out.weight", D, V)
        for i in range(cfg.n_layer):
            hf, ours = f"layers.{i}.", ("h", i)
            layout.update({
                (*ours, "ln_1", "scale"): kept(hf + "input_layernorm.weight", (D,)),
                (*ours, "ln_1", "bias"): kept(hf + "input_layernorm.bias", (D,)),
                # rows h*3K + s*K + k (head-major) -> (D, 3, H, K)
                (*ours, "attn", "c_attn_kernel"): (
                    hf + "attention.query_key_value.weight", (3 * D, D), (D, 3, H, K),
                    lambda w: w.T.reshape(D, H, 3, K).transpose(0, 2, 1, 3),
                    lambda x: x.transpose(0, 2, 1, 3).reshape(D, 3 * D).T),
                (*ours, "attn", "c_attn_bias"): (
                    hf + "attention.query_key_value.bias", (3 * D,), (3, H, K),
                    lambda b: b.reshape(H, 3, K).transpose(1, 0, 2), lambda x: x.transpose(1, 0, 2).reshape(3 * D)),
                (*ours, "attn", "c_proj_kernel"): (
                    hf + "attention.dense.weight", (D, D), (H, K, D),
                    lambda w: w.T.reshape(H, K, D), lambda x: x.reshape(D, D).T),
                (*ours, "attn", "c_proj_bias"): kept(hf + "attention.dense.bias", (D,)),
                (*ours, "ln_2", "scale"): kept(hf + "post_attention_layernorm.weight", (D,)),
                (*ours, "ln_2", "bias"): kept(hf + "post_attention_layernorm.bias", (D,)),
                (*ours, "mlp", "c_fc_kernel"): linear(hf + "mlp.dense_h_to_4h.weight", D, F),
                (*ours, "mlp", "c_fc_bias"): kept(hf + "mlp.dense_h_to_4h.bias", (F,)),
                (*ours, "mlp", "c_proj_kernel"): linear(hf + "mlp.dense_4h_to_h.weight", F, D),
                (*ours, "mlp", "c_proj_bias"): kept(hf + "mlp.dense_4h_to_h.bias", (D,)),
            })
    else:
        layout = {("wte", "embedding"): kept("wte.weight", (V, D)),
                  ("wpe",): kept("wpe.weight", (cfg.n_positions, D)),
                  ("ln_f", "scale"): kept("ln_f.weight", (D,)),
                  ("ln_f", "bias"): kept("ln_f.bias", (D,))}
        for i in range(cfg.n_layer):
            hf, ours = f"h.{i}.", ("h", i)
            layout.update({
                (*ours, "ln_1", "scale"): kept(hf + "ln_1.weight", (D,)),
                (*ours, "ln_1", "bias"): kept(hf + "ln_1.bias", (D,)),
                (*ours, "attn", "c_attn_kernel"): reshaped(hf + "attn.c_attn.weight", (D, 3 * D), (D, 3, H, K)),
                (*ours, "attn", "c_attn_bias"): reshaped(hf + "attn.c_attn.bias", (3 * D,), (3, H, K)),
                (*ours, "attn", "c_proj_kernel"): reshaped(hf + "attn.c_proj.weight", (D, D), (H, K, D)),
                (*ours, "attn", "c_proj_bias"): kept(hf + "attn.c_proj.bias", (D,)),
                (*ours, "ln_2", "scale"): kept(hf + "ln_2.weight", (D,)),
                (*ours, "ln_2", "bias"): kept(hf + "ln_2.bias", (D,)),
                (*ours, "mlp", "c_fc_kernel"): kept(hf + "mlp.c_fc.weight", (D, F)),
                (*ours, "mlp", "c_fc_bias"): kept(hf + "mlp.c_fc.bias", (F,)),
                (*ours, "mlp", "c_proj_kernel"): kept(hf + "mlp.c_proj.weight", (F, D)),
                (*ours, "mlp", "c_proj_bias"): kept(hf + "mlp.c_proj.bias", (D,)),
            })
    if cfg.scalar_head:
        layout[("score_kernel",)] = reshaped("score.weight", (1, D), (D,))
    return layout


# ---------------------------------------------------------------- config.json

def _neox_config_from_hf(hf_config: dict, source: str) -> GPTConfig:
    rope = hf_config.get("rope_parameters") or hf_config.get("rope_scaling") or {}  # transformers >= 5 / older
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise ValueError(f"{source}: rope_type {rope.get('rope_type', rope.get('type'))!r} is not supported; expected 'default'")
    act = hf_config.get("hidden_act", "gelu")
    if act != "gelu":
        raise ValueError(f"{source}: hidden_act {act!r} is not supported; expected 'gelu' (exact GELU, as Pythia)")
    if not hf_config.get("attention_bias", True):
        raise ValueError(f"{source}: attention_bias=False is not supported; expected True (as Pythia)")
    return GPTConfig(
        arch="neox", vocab_size=hf_config["vocab_size"], n_positions=hf_config.get("max_position_embeddings", 2048),
        n_layer=hf_config["num_hidden_layers"], n_head=hf_config["num_attention_heads"], n_embd=hf_config["hidden_size"],
        n_inner=hf_config.get("intermediate_size"), layer_norm_epsilon=hf_config.get("layer_norm_eps", 1e-5),
        rotary_pct=rope.get("partial_rotary_factor", hf_config.get("rotary_pct", 0.25)),
        rotary_base=float(rope.get("rope_theta", hf_config.get("rotary_emb_base", 10000))),
        parallel_residual=hf_config.get("use_parallel_residual", True),
        tied_embeddings=hf_config.get("tie_word_embeddings", False), dropout=0.0)


def config_from_hf(hf_config: dict, source: str = "config.json") -> GPTConfig:
    """GPTConfig of a Hugging Face GPT-2 or GPT-NeoX config dict; fields it omits take that model's defaults."""
    if hf_config.get("model_type") == "gpt_neox":
        return _neox_config_from_hf(hf_config, source)
    if hf_config.get("model_type") != "gpt2":
        raise ValueError(f"{source}: model_type {hf_config.get('model_type')!r} is not supported; expected 'gpt2' "
                         "or 'gpt_neox'")
    act = hf_config.get("activation_function", "gelu_new")
    if act not in _ACTIVATIONS:
        raise ValueError(f"{source}: activation_function {act!r} is not supported; expected one of {_ACTIVATIONS}")
    unsupported = {
        "tie_word_embeddings": (True, "an untied lm_head"),
        "scale_attn_weights": (True, "unscaled attention"),
        "scale_attn_by_inverse_layer_idx": (False, "attention scaled by 1/layer"),
        "add_cross_attention": (False, "cross-attention"),
    }
    for key, (ok, what) in unsupported.items():
        if hf_config.get(key, ok) != ok:
            raise ValueError(f"{source}: {key}={hf_config[key]!r} ({what}) is not supported; expected {ok!r}")
    fields = {"vocab_size", "n_positions", "n_layer", "n_head", "n_embd", "n_inner", "layer_norm_epsilon"}
    kwargs = {k: hf_config[k] for k in fields if hf_config.get(k) is not None}
    if "n_positions" not in kwargs and "n_ctx" in hf_config:  # configs written before n_positions existed
        kwargs["n_positions"] = hf_config["n_ctx"]
    # Dropout is a training choice made by each stage's config, not part of the architecture.
    return GPTConfig(**kwargs, dropout=0.0)


def _tokenizer(name: str | None):
    """Special ids of a tokenizer name: the class attributes of 'byte' / 'gpt2' (no BPE tables are loaded),
    or the tokenizer of a folder holding tokenizer.json."""
    if name is None:
        return None
    return TOKENIZERS[name] if name in TOKENIZERS else make_tokenizer(name)


def score_pad_id(cfg: GPTConfig, tokenizer: str | None) -> int:
    """pad_token_id of a sequence-classification export: the id transformers skips to find the last token.

    Our reward is read at the last token, EOS included, so the pad id must not be EOS: the tokenizer's own
    pad id when it differs (byte: 256), else the first id past the tokenizer's vocabulary when the embedding
    is padded (Pythia: 50277 of 50304, where the reference recipe adds its [PAD]), else vocab_size, an id
    no text encodes to (GPT-2's BPE uses its one special token for both): pad such inputs on the left.
    """
    tok = _tokenizer(tokenizer)
    if tok is not None and tok.pad_id != tok.eos_id:
        return int(tok.pad_id)
    if tok is not None and tok.vocab_size < cfg.vocab_size:
        return int(tok.vocab_size)
    return cfg.vocab_size


def config_to_hf(cfg: GPTConfig, tokenizer: str | None = None) -> dict:
    """config.json for GPT2LMHeadModel / GPTNeoXForCausalLM, or their *ForSequenceClassification with
    num_labels 1 when `cfg.scalar_head`; `tokenizer` ('byte' | 'gpt2' | a tokenizer folder) sets the
    special token ids."""
    if cfg.smear_keys:
        raise ValueError("smear_keys=True has no Hugging Face architecture (neither GPT-2 nor GPT-NeoX smears keys); "
                         "the model cannot be exported")
    head = "ForSequenceClassification" if cfg.scalar_head else "ForCausalLM"
    if cfg.arch == "neox":
        config = {
            "model_type": "gpt_neox",
            "architectures": ["GPTNeoX" + head],
            "vocab_size": cfg.vocab_size,
            "max_position_embeddings": cfg.n_positions,
            "hidden_size": cfg.n_embd,
            "num_hidden_layers": cfg.n_layer,
            "num_attention_heads": cfg.n_head,
            "intermediate_size": cfg.mlp_dim,
            "hidden_act": "gelu",
            "layer_norm_eps": cfg.layer_norm_epsilon,
            # Both spellings: transformers < 5 reads rotary_pct / rotary_emb_base, >= 5 rope_parameters.
            "rotary_pct": cfg.rotary_pct,
            "rotary_emb_base": cfg.rotary_base,
            "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rotary_base,
                                "partial_rotary_factor": cfg.rotary_pct},
            "use_parallel_residual": cfg.parallel_residual,
            "tie_word_embeddings": cfg.tied_embeddings,
            "attention_bias": True,
            "attention_dropout": cfg.dropout,
            "hidden_dropout": cfg.dropout,
        }
    else:
        config = {
            "model_type": "gpt2",
            "architectures": ["GPT2LMHeadModel" if not cfg.scalar_head else "GPT2" + head],
            "vocab_size": cfg.vocab_size,
            "n_positions": cfg.n_positions,
            "n_embd": cfg.n_embd,
            "n_layer": cfg.n_layer,
            "n_head": cfg.n_head,
            "n_inner": cfg.n_inner,
            "activation_function": "gelu_new",
            "layer_norm_epsilon": cfg.layer_norm_epsilon,
            "tie_word_embeddings": True,
            "scale_attn_weights": True,
            "scale_attn_by_inverse_layer_idx": False,
            "reorder_and_upcast_attn": False,
            "resid_pdrop": cfg.dropout,
            "embd_pdrop": cfg.dropout,
            "attn_pdrop": cfg.dropout,
        }
    config.update({"dtype": "float32", "bos_token_id": None, "eos_token_id": None, "pad_token_id": None})
    tok = _tokenizer(tokenizer)
    if tok is not None:
        config.update(bos_token_id=tok.bos_id, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
        if tok.name in ("byte", "gpt2"):
            config["instructgpt_tokenizer"] = tok.name  # read back by import_hf (a folder's tokenizer travels as files)
    if cfg.scalar_head:
        # One regression output read at the last token that is not pad_token_id (the reward).
        config.update(num_labels=1, id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0},
                      pad_token_id=score_pad_id(cfg, tokenizer))
    return config


# ---------------------------------------------------------------- tensors

def _tensor_files(hf_dir: str) -> dict[str, str]:
    """Tensor name -> safetensors file holding it (one file, or the shards of an index)."""
    if not os.path.isdir(hf_dir):
        raise FileNotFoundError(f"Hugging Face folder {hf_dir} does not exist")
    single, index = os.path.join(hf_dir, SAFETENSORS), os.path.join(hf_dir, SAFETENSORS_INDEX)
    if os.path.isfile(single):
        with safe_open(single, framework="np") as f:
            return {name: single for name in f.keys()}
    if os.path.isfile(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        return {name: os.path.join(hf_dir, shard) for name, shard in weight_map.items()}
    hint = " (a pytorch_model.bin folder: re-save it with save_pretrained(safe_serialization=True))" if any(
        n.endswith(".bin") for n in os.listdir(hf_dir)) else ""
    raise FileNotFoundError(f"{hf_dir} has no {SAFETENSORS} or {SAFETENSORS_INDEX}{hint}")


def _read(files: dict[str, str], name: str) -> np.ndarray:
    with safe_open(files[name], framework="np") as f:
        return f.get_tensor(name)


def _set(tree: dict, path: tuple, value) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def _get(tree, path: tuple):
    for key in path:
        tree = tree[key]
    return tree


def load_hf(hf_dir: str) -> tuple[GPTConfig, dict]:
    """(GPTConfig, params) of a Hugging Face GPT-2 or GPT-NeoX folder; params are a pure dict of float32 numpy.

    Accepts tensor names with and without the trunk prefix ('transformer.' / 'gpt_neox.': *LMHeadModel vs the
    bare model) and fp16/bf16 files (upcast: training keeps float32 master weights). A `score.weight` tensor
    makes the config a scalar-head model (its bias is `score.bias` if present, else 0). Raises ValueError
    naming any missing tensor or a tensor whose shape disagrees with config.json, FileNotFoundError for a
    missing file.
    """
    config_path = os.path.join(hf_dir, "config.json")
    files = _tensor_files(hf_dir)
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{hf_dir} has no config.json")
    with open(config_path) as f:
        cfg = config_from_hf(json.load(f), config_path)
    names = set(files)
    trunk = _TRUNK[cfg.arch]
    prefix = trunk if any(n.startswith(trunk) for n in names) else ""
    if "score.weight" in names:
        cfg = dataclasses.replace(cfg, scalar_head=True)

    def full(name):
        return name if name.startswith(_HEADS) else prefix + name

    layout = _layout(cfg)
    where = os.path.join(hf_dir, SAFETENSORS if os.path.isfile(os.path.join(hf_dir, SAFETENSORS)) else SAFETENSORS_INDEX)
    missing = [full(hf) for hf, *_ in layout.values() if full(hf) not in names]
    if missing:
        raise ValueError(f"{where}: missing tensors {missing} (for {cfg.arch} with n_layer={cfg.n_layer} from config.json)")

    params: dict = {}
    for path, (hf, hf_shape, our_shape, to_ours, _) in layout.items():
        x = _read(files, full(hf))
        if tuple(x.shape) != hf_shape:
            raise ValueError(
                f"{where}: tensor {full(hf)} has shape {tuple(x.shape)}, expected {hf_shape} from config.json "
                f"(vocab_size={cfg.vocab_size}, n_positions={cfg.n_positions}, n_embd={cfg.n_embd}, n_head={cfg.n_head})")
        _set(params, path, np.ascontiguousarray(to_ours(np.asarray(x, np.float32))))
    if cfg.scalar_head:
        params["score_bias"] = np.asarray(_read(files, "score.bias"), np.float32).reshape(()) if "score.bias" in names \
            else np.zeros((), np.float32)
        if not cfg.tied_embeddings:
            # GPTNeoXForSequenceClassification has no unembedding and the scalar head never reads one; zeros
            # keep the params tree of the architecture.
            params["lm_head"] = np.zeros((cfg.n_embd, cfg.vocab_size), np.float32)

    if cfg.arch == "gpt2" and (prefix + "lm_head.weight" in names or "lm_head.weight" in names):
        lm_head = _read(files, "lm_head.weight" if "lm_head.weight" in names else prefix + "lm_head.weight")
        if lm_head.shape != params["wte"]["embedding"].shape or not np.array_equal(
                np.asarray(lm_head, np.float32), params["wte"]["embedding"]):
            raise ValueError(f"{where}: lm_head.weight differs from wte.weight; an untied unembedding is not supported")
    known = {full(hf) for hf, *_ in layout.values()} | {"lm_head.weight", prefix + "lm_head.weight", "score.bias"}
    if cfg.arch == "neox" and (cfg.tied_embeddings or cfg.scalar_head):
        known.add("embed_out.weight")
    extra = sorted(n for n in names - known if not n.endswith(_BUFFER_SUFFIXES))
    if extra:
        log.warning("%s: ignoring tensors that are not %s parameters: %s", where, cfg.arch, extra[:10])
    return cfg, params


def save_hf(cfg: GPTConfig, params: dict, out_dir: str, tokenizer: str | None = None) -> None:
    """Write `params` (pure dict, numpy or jax arrays of any float dtype) as a Hugging Face folder in float32.

    `tokenizer` ('byte' | 'gpt2' | a tokenizer folder) records the special token ids in config.json; a
    folder's tokenizer files are copied beside the weights.
    """
    tensors = {}
    for path, (hf, hf_shape, our_shape, _, to_hf) in _layout(cfg).items():
        try:
            x = _get(params, path)
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"params have no {'/'.join(map(str, path))} (expected for {cfg})") from None
        if tuple(x.shape) != our_shape:
            raise ValueError(f"param {'/'.join(map(str, path))} has shape {tuple(x.shape)}, expected {our_shape}")
        name = hf if hf.startswith(_HEADS) else _TRUNK[cfg.arch] + hf
        tensors[name] = np.ascontiguousarray(to_hf(np.asarray(jax.device_get(x), np.float32)))
    if cfg.scalar_head and float(params["score_bias"]) != 0.0:
        tensors["score.bias"] = np.asarray(jax.device_get(params["score_bias"]), np.float32).reshape(1)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config_to_hf(cfg, tokenizer), f, indent=2)
    # transformers checks the "format" metadata before it trusts a safetensors file.
    save_file(tensors, os.path.join(out_dir, SAFETENSORS), metadata={"format": "pt"})
    if tokenizer is not None and os.path.isdir(tokenizer):
        for name in TOKENIZER_FILES:
            if os.path.isfile(os.path.join(tokenizer, name)):
                shutil.copyfile(os.path.join(tokenizer, name), os.path.join(out_dir, name))


# ---------------------------------------------------------------- stage folders

def import_hf(hf_dir: str, workdir: str) -> dict:
    """Write a Hugging Face GPT-2 or GPT-NeoX folder as a finished stage checkpoint in `workdir` (e.g. W/pretrain).

    The checkpoint's meta says total_steps 0, so `train.is_complete(workdir)` holds and the pipeline skips
    the stage, and the next stage (`config.init_from = workdir`) starts from these weights. A folder's
    tokenizer.json is copied to `workdir/tokenizer`, which becomes the run's tokenizer name.
    """
    cfg, params = load_hf(hf_dir)
    with open(os.path.join(hf_dir, "config.json")) as f:
        hf_config = json.load(f)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if checkpoint.latest_step(ckpt_dir) is not None:
        raise FileExistsError(f"{ckpt_dir} already holds a checkpoint; import into an empty workdir")
    tokenizer = hf_config.get("instructgpt_tokenizer")
    if tokenizer is None and os.path.isfile(os.path.join(hf_dir, "tokenizer.json")) and cfg.arch == "neox":
        tokenizer = os.path.abspath(os.path.join(workdir, "tokenizer"))
        os.makedirs(tokenizer, exist_ok=True)
        for name in TOKENIZER_FILES:
            if os.path.isfile(os.path.join(hf_dir, name)):
                shutil.copyfile(os.path.join(hf_dir, name), os.path.join(tokenizer, name))
    elif tokenizer is None and cfg.arch == "neox":
        raise FileNotFoundError(f"{hf_dir} has no tokenizer.json; a GPT-NeoX model needs its own tokenizer "
                                "(Pythia's BPE is not GPT-2's)")
    elif tokenizer is None:
        # GPT-2's BPE has 50257 ids; a smaller vocabulary can only be our byte tokenizer's (or an export of it).
        tokenizer = "gpt2" if cfg.vocab_size >= 50257 else "byte"
    os.makedirs(workdir, exist_ok=True)
    meta = {"stage": "import-hf", "hf_dir": os.path.abspath(hf_dir), "model": dataclasses.asdict(cfg),
            "tokenizer": tokenizer, "total_steps": 0}
    manager = checkpoint.make_manager(ckpt_dir)
    checkpoint.save(manager, 0, {"params": jax.device_put(params)}, meta, force=True)
    manager.wait_until_finished()
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            json.dump(meta, f, indent=2)
    n_params = sum(int(x.size) for x in jax.tree.leaves(params))
    return {"workdir": workdir, "n_params": n_params, "tokenizer": tokenizer, "model": dataclasses.asdict(cfg)}


def export_hf(hf_dir: str, workdir: str) -> dict:
    """Write the newest params of the stage folder `workdir` as a Hugging Face folder `hf_dir`.

    A reward model (scalar head) becomes a *ForSequenceClassification folder with num_labels 1, and
    `hf_dir/reward_norm.json` holds {"mean", "std"} such that

        reward = (model(input_ids).logits[:, 0] - mean) / std

    is our normalised reward (`reward.load_reward_norm`) of the same tokens: the head's bias, which
    transformers' head lacks, is folded into mean (mean = our mean - score_bias, both recorded there).
    Without a reward_norm.json in `workdir` (a value model), mean = -score_bias and std = 1: the raw score.
    """
    cfg, _, params, meta = checkpoint.load_model(workdir)
    step, tokenizer = meta["step"], meta.get("tokenizer")
    if cfg.scalar_head:
        has_norm = os.path.isfile(os.path.join(workdir, "reward_norm.json"))
        norm = load_reward_norm(workdir) if has_norm else {"mean": 0.0, "std": 1.0}
        bias = float(params["score_bias"])
        params = {**params, "score_bias": np.zeros((), np.float32)}
    save_hf(cfg, params, hf_dir, tokenizer=tokenizer)
    if cfg.scalar_head:
        write_json(os.path.join(hf_dir, "reward_norm.json"), {
            "mean": norm["mean"] - bias, "std": norm["std"], "score_bias": bias, "our_mean": norm["mean"],
            "source": os.path.join(workdir, "reward_norm.json") if has_norm else None,
            "usage": "reward = (logits[:, 0] - mean) / std, logits of AutoModelForSequenceClassification on "
                     "prompt + response + EOS tokens; score_bias (our head's bias) is folded into mean"})
    return {"hf_dir": hf_dir, "step": step, "model": dataclasses.asdict(cfg)}
