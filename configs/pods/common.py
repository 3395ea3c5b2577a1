"""Shared recipe of the pod configs: the pipeline of configs/pipeline.py:default, scaled to a GPT-2/GPT-3 size
on a Cloud TPU slice. Not run directly; configs/pods/gpt2_xl.py, gpt3_1b3.py and gpt3_6b7.py load it as
`configs/pods/common.py:<preset>,<slice>,<data>,<fsdp>,<tensor>` and set what differs per model.

Every stage gets the GPT-2 BPE tokenizer (the embedded world is re-tokenized with it), bfloat16 compute with
float32 master weights, rematerialised blocks, and the slice's mesh (data, fsdp, tensor). Batch sizes follow
the paper's appendix C where it gives them (RM: 64 prompts of K <= 9; PPO: 512 episodes per batch in 8
minibatches, ptx rows mixed into each) and are multiples of data x fsdp. Learning rates are the paper's for
the 1.3B / 6B models; `python experiments/pod_check.py --config <pod config>` prints per-chip memory.
"""

import ml_collections

from instructgpt_jax.config_base import load_config

# slice name: (chip, chips, hosts, HBM GiB per chip). v4-N and v5p-N count TensorCores (2 per chip, one JAX
# device per chip); v5litepod-N counts chips. Every multi-host slice has 4 chips per host.
SLICES = {
    "v4-8": ("v4", 4, 1, 32), "v4-32": ("v4", 16, 4, 32), "v4-64": ("v4", 32, 8, 32), "v4-128": ("v4", 64, 16, 32),
    "v5litepod-16": ("v5e", 16, 4, 16), "v5litepod-32": ("v5e", 32, 8, 16), "v5litepod-64": ("v5e", 64, 16, 16),
    "v5litepod-128": ("v5e", 128, 32, 16),
    "v5p-16": ("v5p", 8, 2, 95), "v5p-32": ("v5p", 16, 4, 95), "v5p-64": ("v5p", 32, 8, 95), "v5p-128": ("v5p", 64, 16, 95),
}
TRAINED = ("pretrain", "sft", "rm", "ppo", "ppo_ptx")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset, slice_name, data, fsdp, tensor = (arg or "gpt2-xl,v4-32,1,16,1").split(",")
    if slice_name not in SLICES:
        raise ValueError(f"unknown slice {slice_name!r}; expected one of {sorted(SLICES)}")
    chip, chips, hosts, hbm = SLICES[slice_name]
    mesh = (int(data), int(fsdp), int(tensor))
    if mesh[0] * mesh[1] * mesh[2] != chips:
        raise ValueError(f"mesh {mesh} has {mesh[0] * mesh[1] * mesh[2]} devices; {slice_name} has {chips} chips")
    shards = mesh[0] * mesh[1]  # every global batch is split over data x fsdp

    config = load_config("configs/pipeline.py:default")
    config.model = preset
    config.tokenizer = "gpt2"
    config.pod = ml_collections.ConfigDict({"slice": slice_name, "chip": chip, "chips": chips, "hosts": hosts,
                                            "hbm_gib": hbm, "hbm_fraction": 0.85})
    for stage in TRAINED + ("compare",):
        config[stage].mesh.shape = mesh
    for stage in TRAINED:
        config[stage].model.update({"dtype": "bfloat16", "remat": True})
        config[stage].train.update({"tensorboard": True, "async_checkpoint": True})
    config.eval.mesh = load_config("configs/pretrain.py:smoke").mesh
    config.eval.mesh.shape = mesh

    # Pretraining and the ptx mix: WikiText-103 through TFDS (~0.5 GB of text, read into host memory by
    # corpus.load_corpus; set data_dir to a bucket with the prepared dataset). GPT-3's context; 4 rows of it
    # per chip, since the loop has no gradient accumulation (GPT-3 used 0.5M-2M tokens per batch).
    pt = config.pretrain
    pt.data.update({"source": "tfds:wikitext/wikitext-103-raw-v1:train", "data_dir": ""})
    pt.train.update({"steps": 100_000, "batch_size": 4 * shards, "seq_len": 2047, "checkpoint_every": 2000,
                     "eval_every": 2000})
    pt.optim.update({"lr": 2e-4, "warmup_steps": 2000, "weight_decay": 0.1})
    # SFT: 16 epochs, cosine decay, residual dropout 0.2 (paper 3.5); the world's examples are short.
    config.sft.model.dropout = 0.2
    config.sft.train.update({"batch_size": max(32, shards), "seq_len": 256, "epochs": 16.0, "packing": False,
                             "eval_every": 200, "checkpoint_every": 200})
    config.sft.optim.update({"lr": 9.65e-6, "warmup_steps": 50})
    config.sft.eval.update({"batch_size": max(64, shards), "num_prompts": max(64, shards)})
    # Comparisons and RM: K = 4..9 per prompt, 64 prompts per batch, one epoch.
    config.compare.data.num_prompts = 0  # every RM prompt of the world
    config.compare.compare.batch_rows = max(256, shards)
    config.rm.train.update({"batch_size": max(64, shards), "seq_len": 256})
    config.rm.optim.update({"lr": 9e-6, "warmup_steps": 10})
    config.rm.eval.batch_rows = max(128, shards)
    # PPO and PPO-ptx: 512 episodes per iteration, 8 minibatches, the paper's beta 0.02 and lr 9.65e-6.
    for stage in ("ppo", "ppo_ptx"):
        p = config[stage]
        p.ppo.update({"rollout_batch": max(512, 8 * shards), "minibatches": 8, "epochs": 1, "max_new_tokens": 128,
                      "ptx_batch_size": max(64, shards), "ptx_seq_len": 1024, "frozen_dtype": "bfloat16"})
        p.data.prompt_len = 128
        p.data.corpus.update({"source": "tfds:wikitext/wikitext-103-raw-v1:train", "data_dir": ""})
        p.optim.update({"lr": 9.65e-6, "warmup_steps": 10})
        p.value_optim.update({"lr": 9.65e-6, "warmup_steps": 10})
        p.train.update({"iterations": 256, "eval_every": 16, "checkpoint_every": 16})
        p.eval.batches = 1
    config.eval.update({"batch_size": max(64, shards), "max_new_tokens": 128, "corpus": "tfds:wikitext/wikitext-103-raw-v1:train"})
    return config
