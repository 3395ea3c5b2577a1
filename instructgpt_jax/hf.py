"""Hugging Face GPT-2 interchange: a local `transformers` folder (config.json + model.safetensors) to our
pure-dict params and back, with numpy and safetensors only (no torch at run time).

Hugging Face's GPT-2 stores every linear layer as a `Conv1D` whose weight is laid out (in, out), the same
orientation as our kernels, so each tensor maps by a reshape alone, never a transpose: c_attn (D, 3D) ->
(D, 3, H, K) splits the fused q|k|v columns and then each third into heads, exactly as `GPT2Attention`
splits them, and c_proj (D, D) -> (H, K, D) reads its merged-heads input the same way. Both models tie the
unembedding to `wte`, so `lm_head.weight` is never stored separately. A scalar head (reward model, value
function) travels as `score.weight` (1, D) + `score.bias` (1,): the layout of Hugging Face's
`GPT2ForSequenceClassification` with `num_labels=1`, which has no bias and ignores ours.

`import_hf(hf_dir, workdir)` (`instructgpt import-hf --hf_dir D --workdir W/pretrain`) writes the weights
as a finished stage checkpoint, so `W/pretrain` can stand in for our pretraining stage and SFT starts from
GPT-2; `export_hf(hf_dir, workdir)` writes a stage's newest params as a folder `transformers` loads with
`GPT2LMHeadModel.from_pretrained`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import jax
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from instructgpt_jax import checkpoint
from instructgpt_jax.model import GPTConfig

log = logging.getLogger(__name__)

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"  # sharded checkpoints (large models)
# Tensors a GPT-2 file may hold that are not parameters: old causal-mask buffers and the tied unembedding.
_BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias")
_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")  # both are GELU's tanh approximation, as in model.MLP


def _layout(cfg: GPTConfig) -> dict[tuple, tuple[str, tuple, tuple]]:
    """Our param path -> (Hugging Face name without the 'transformer.' prefix, HF shape, our shape)."""
    D, F, H, K = cfg.n_embd, cfg.mlp_dim, cfg.n_head, cfg.head_dim
    layout = {
        ("wte", "embedding"): ("wte.weight", (cfg.vocab_size, D), (cfg.vocab_size, D)),
        ("wpe",): ("wpe.weight", (cfg.n_positions, D), (cfg.n_positions, D)),
        ("ln_f", "scale"): ("ln_f.weight", (D,), (D,)),
        ("ln_f", "bias"): ("ln_f.bias", (D,), (D,)),
    }
    for i in range(cfg.n_layer):
        hf, ours = f"h.{i}.", ("h", i)
        layout.update({
            (*ours, "ln_1", "scale"): (hf + "ln_1.weight", (D,), (D,)),
            (*ours, "ln_1", "bias"): (hf + "ln_1.bias", (D,), (D,)),
            (*ours, "attn", "c_attn_kernel"): (hf + "attn.c_attn.weight", (D, 3 * D), (D, 3, H, K)),
            (*ours, "attn", "c_attn_bias"): (hf + "attn.c_attn.bias", (3 * D,), (3, H, K)),
            (*ours, "attn", "c_proj_kernel"): (hf + "attn.c_proj.weight", (D, D), (H, K, D)),
            (*ours, "attn", "c_proj_bias"): (hf + "attn.c_proj.bias", (D,), (D,)),
            (*ours, "ln_2", "scale"): (hf + "ln_2.weight", (D,), (D,)),
            (*ours, "ln_2", "bias"): (hf + "ln_2.bias", (D,), (D,)),
            (*ours, "mlp", "c_fc_kernel"): (hf + "mlp.c_fc.weight", (D, F), (D, F)),
            (*ours, "mlp", "c_fc_bias"): (hf + "mlp.c_fc.bias", (F,), (F,)),
            (*ours, "mlp", "c_proj_kernel"): (hf + "mlp.c_proj.weight", (F, D), (F, D)),
            (*ours, "mlp", "c_proj_bias"): (hf + "mlp.c_proj.bias", (D,), (D,)),
        })
    if cfg.scalar_head:
        layout[("score_kernel",)] = ("score.weight", (1, D), (D,))
        layout[("score_bias",)] = ("score.bias", (1,), ())
    return layout


def config_from_hf(hf_config: dict, source: str = "config.json") -> GPTConfig:
    """GPTConfig of a Hugging Face GPT-2 config dict; fields it omits take GPT-2's defaults (ours match)."""
    if hf_config.get("model_type") != "gpt2":
        raise ValueError(f"{source}: model_type {hf_config.get('model_type')!r} is not supported; expected 'gpt2'")
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


def config_to_hf(cfg: GPTConfig, tokenizer: str | None = None) -> dict:
    """config.json for `GPT2LMHeadModel`; `tokenizer` ('byte' | 'gpt2') sets the special token ids."""
    config = {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
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
        "dtype": "float32",
        "bos_token_id": None,
        "eos_token_id": None,
        "pad_token_id": None,
    }
    if tokenizer is not None:
        from instructgpt_jax.tokenizer import TOKENIZERS

        if tokenizer not in TOKENIZERS:
            raise ValueError(f"unknown tokenizer {tokenizer!r}; valid names: {sorted(TOKENIZERS)}")
        tok = TOKENIZERS[tokenizer]  # class attributes only: no BPE tables are loaded
        config.update(bos_token_id=tok.bos_id, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
        config["instructgpt_tokenizer"] = tokenizer  # read back by import_hf
    return config


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
    """(GPTConfig, params) of a Hugging Face GPT-2 folder; params are a pure dict of float32 numpy arrays.

    Accepts tensor names with and without the 'transformer.' prefix (GPT2LMHeadModel vs GPT2Model / the
    original OpenAI upload) and fp16/bf16 files (upcast: training keeps float32 master weights). A
    `score.weight` tensor makes the config a scalar-head model. Raises ValueError naming any missing tensor
    or a tensor whose shape disagrees with config.json, FileNotFoundError for a missing file.
    """
    config_path = os.path.join(hf_dir, "config.json")
    files = _tensor_files(hf_dir)
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{hf_dir} has no config.json")
    with open(config_path) as f:
        cfg = config_from_hf(json.load(f), config_path)
    names = set(files)
    prefix = "transformer." if any(n.startswith("transformer.") for n in names) else ""
    if "score.weight" in names:
        cfg = dataclasses.replace(cfg, scalar_head=True)

    def full(name):  # the score head sits beside `transformer`, never inside it
        return name if name.startswith("score.") else prefix + name

    layout = _layout(cfg)
    where = os.path.join(hf_dir, SAFETENSORS if os.path.isfile(os.path.join(hf_dir, SAFETENSORS)) else SAFETENSORS_INDEX)
    missing = [full(hf) for hf, _, _ in layout.values() if full(hf) not in names]
    if missing:
        raise ValueError(f"{where}: missing tensors {missing} (for GPT-2 with n_layer={cfg.n_layer} from config.json)")

    params: dict = {}
    for path, (hf, hf_shape, our_shape) in layout.items():
        x = _read(files, full(hf))
        if tuple(x.shape) != hf_shape:
            raise ValueError(
                f"{where}: tensor {full(hf)} has shape {tuple(x.shape)}, expected {hf_shape} from config.json "
                f"(vocab_size={cfg.vocab_size}, n_positions={cfg.n_positions}, n_embd={cfg.n_embd}, n_head={cfg.n_head})")
        _set(params, path, np.asarray(x, np.float32).reshape(our_shape))

    if prefix + "lm_head.weight" in names or "lm_head.weight" in names:
        lm_head = _read(files, "lm_head.weight" if "lm_head.weight" in names else prefix + "lm_head.weight")
        if lm_head.shape != params["wte"]["embedding"].shape or not np.array_equal(
                np.asarray(lm_head, np.float32), params["wte"]["embedding"]):
            raise ValueError(f"{where}: lm_head.weight differs from wte.weight; an untied unembedding is not supported")
    known = {full(hf) for hf, _, _ in layout.values()} | {"lm_head.weight", prefix + "lm_head.weight"}
    extra = sorted(n for n in names - known if not n.endswith(_BUFFER_SUFFIXES))
    if extra:
        log.warning("%s: ignoring tensors that are not GPT-2 parameters: %s", where, extra[:10])
    return cfg, params


def save_hf(cfg: GPTConfig, params: dict, out_dir: str, tokenizer: str | None = None) -> None:
    """Write `params` (pure dict, numpy or jax arrays of any float dtype) as a GPT-2 folder in float32.

    `tokenizer` ('byte' | 'gpt2') records the special token ids in config.json.
    """
    tensors = {}
    for path, (hf, hf_shape, our_shape) in _layout(cfg).items():
        try:
            x = _get(params, path)
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"params have no {'/'.join(map(str, path))} (expected for {cfg})") from None
        if tuple(x.shape) != our_shape:
            raise ValueError(f"param {'/'.join(map(str, path))} has shape {tuple(x.shape)}, expected {our_shape}")
        name = hf if hf.startswith("score.") else "transformer." + hf
        tensors[name] = np.ascontiguousarray(np.asarray(jax.device_get(x), np.float32).reshape(hf_shape))
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config_to_hf(cfg, tokenizer), f, indent=2)
    # transformers checks the "format" metadata before it trusts a safetensors file.
    save_file(tensors, os.path.join(out_dir, SAFETENSORS), metadata={"format": "pt"})


def import_hf(hf_dir: str, workdir: str) -> dict:
    """Write a Hugging Face GPT-2 folder as a finished stage checkpoint in `workdir` (e.g. W/pretrain).

    The checkpoint's meta says total_steps 0, so `train.is_complete(workdir)` holds and a pipeline skips
    the stage, and the next stage (`config.init_from = workdir`) starts from these weights.
    """
    cfg, params = load_hf(hf_dir)
    with open(os.path.join(hf_dir, "config.json")) as f:
        hf_config = json.load(f)
    # GPT-2's BPE has 50257 ids; a smaller vocabulary can only be our byte tokenizer's (or an export of it).
    tokenizer = hf_config.get("instructgpt_tokenizer") or ("gpt2" if cfg.vocab_size >= 50257 else "byte")
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if checkpoint.latest_step(ckpt_dir) is not None:
        raise FileExistsError(f"{ckpt_dir} already holds a checkpoint; import into an empty workdir")
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
    """Write the newest params of the stage folder `workdir` as a Hugging Face GPT-2 folder `hf_dir`."""
    cfg, _, params, meta = checkpoint.load_model(workdir)
    step = meta["step"]
    save_hf(cfg, params, hf_dir, tokenizer=meta.get("tokenizer"))
    return {"hf_dir": hf_dir, "step": step, "model": dataclasses.asdict(cfg)}
