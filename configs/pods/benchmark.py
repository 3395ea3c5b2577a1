"""Shared recipe of the benchmark pod configs (configs/pods/tldr.py, configs/pods/hh_gpt2_xl.py): SFT -> RM -> PPO
on a public dataset in its own layout, from an imported Hugging Face base model, with the hyperparameters of
the reference reproduction of the recipe (Huang et al. 2024, "The N+ implementation details of RLHF with PPO:
a case study on TL;DR summarization", github.com/vwxyzjn/summarize_from_feedback_details: sbatches/*.sbatch
and the scripts' defaults). Not run directly: those files load it as
`configs/pods/benchmark.py:<stage>,<dataset>,<preset>,<slice>,<data>,<fsdp>,<tensor>` and set what differs.

<stage> is sft | rm | ppo (that stage's config, for `instructgpt <stage> --config ...`) or all (the three
together, for experiments/pod_check.py and the tests). From the reference, for every stage: AdamW (beta2
0.999, eps 1e-5, weight decay 0.01: torch's defaults), learning rate 3e-6 with cosine decay to 0 and no
warmup, dropout off, one epoch of SFT (128 sequences per step) and of RM (64 pairs per step). PPO: 512
episodes per iteration, 4 epochs over them in 1 minibatch, KL coefficient 0.05, temperature 0.7, 53 new
tokens (TL;DR), score -1 for a response without EOS (here: eos_penalty 1 subtracted), value from the RM,
clip 0.2 / 0.2, gamma 1, lambda 0.95, vf_coef 0.1, 1M episodes (1,953 iterations), no pretraining term.
Differences kept: our SFT loss covers the response only (the reference's also the query), gradient norms
are clipped at 1, and advantages (not rewards) are whitened. bfloat16 compute with float32 master
weights, remat, and the frozen reference policy and reward model in bfloat16 fit the slices listed.
"""

import ml_collections

from instructgpt_jax.config_base import load_config

# slice name: (chip, chips, hosts, HBM GiB per chip), as configs/pods/common.py, plus one GPU host.
SLICES = {
    "v4-32": ("v4", 16, 4, 32), "v4-64": ("v4", 32, 8, 32), "v4-128": ("v4", 64, 16, 32),
    "v5p-16": ("v5p", 8, 2, 95), "v5p-32": ("v5p", 16, 4, 95), "v5p-64": ("v5p", 32, 8, 95),
    "gpu-8xh100": ("h100", 8, 1, 80),
}
# dataset: (SFT / prompt split, comparisons, held-out prompts, held-out comparisons, prompt budget, SFT
# response, RM response); paths in the layout data/benchmarks.py reads (a `datasets` save_to_disk folder each)
DATASETS = {
    # TL;DR: 512-token queries (the post cut at newlines to fit), 53-token SFT and policy summaries and
    # 169-token comparison summaries (tldr_dataset.py's max_sft_response_length / max_rm_response_length).
    "tldr": ("tldr:/gcs/data/tldr_sft/train", "tldr:/gcs/data/tldr_comparisons/train",
             "tldr:/gcs/data/tldr_sft/validation", "tldr:/gcs/data/tldr_comparisons/validation", 512, 53, 169),
    # HH-RLHF: dialogues cut from the left to 512 tokens (the latest turns kept), 128-token responses.
    "hh": ("hh:/gcs/data/hh/train", "hh:/gcs/data/hh/train", "hh:/gcs/data/hh/test", "hh:/gcs/data/hh/test",
           512, 128, 128),
}


def _optim(section):
    section.update({"lr": 3e-6, "warmup_steps": 0, "min_lr_ratio": 0.0, "weight_decay": 0.01, "b1": 0.9,
                    "b2": 0.999, "eps": 1e-5})


def _common(config, preset, mesh, pod):
    config.model.update({"preset": preset, "dropout": 0.0, "dtype": "bfloat16", "remat": True})
    config.mesh.shape = mesh
    config.pod = pod
    config.eval.gold_judge = ""  # no embedded-world judge for real data
    return config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    stage, dataset, preset, slice_name, data, fsdp, tensor = (arg or "all,tldr,pythia-1b,v4-32,1,16,1").split(",")
    if slice_name not in SLICES:
        raise ValueError(f"unknown slice {slice_name!r}; expected one of {sorted(SLICES)}")
    if stage not in ("sft", "rm", "ppo", "all"):
        raise ValueError(f"unknown stage {stage!r}; expected sft, rm, ppo or all")
    chip, chips, hosts, hbm = SLICES[slice_name]
    mesh = (int(data), int(fsdp), int(tensor))
    if mesh[0] * mesh[1] * mesh[2] != chips:
        raise ValueError(f"mesh {mesh} has {mesh[0] * mesh[1] * mesh[2]} devices; {slice_name} has {chips} chips")
    shards = mesh[0] * mesh[1]
    pod = ml_collections.ConfigDict({"slice": slice_name, "chip": chip, "chips": chips, "hosts": hosts,
                                    "hbm_gib": hbm, "hbm_fraction": 0.85, "dataset": dataset})
    sft_data, comparisons, heldout, heldout_comparisons, prompt_tokens, sft_response, rm_response = DATASETS[dataset]
    overflow = "truncate" if dataset == "hh" else "error"  # TL;DR queries are cut to fit by the reader itself

    sft = _common(load_config("configs/sft.py:gpt2"), preset, mesh, pod)
    sft.data.update({"train": sft_data, "val": heldout, "max_prompt_tokens": prompt_tokens,
                     # The reference truncates the few longer reference summaries (tokenizer truncation=True).
                     "max_response_tokens": sft_response, "overflow": "truncate"})
    _optim(sft.optim)
    sft.train.update({"steps": 0, "batch_size": max(128, shards), "seq_len": prompt_tokens + sft_response,
                      "epochs": 1.0, "packing": False, "eval_every": 200, "checkpoint_every": 200,
                      "async_checkpoint": True})
    sft.eval.update({"max_new_tokens": sft_response, "batch_size": max(64, shards), "num_prompts": max(64, shards),
                     "base": False})

    rm = _common(load_config("configs/rm.py:gpt2"), preset, mesh, pod)
    rm.data.update({"train": comparisons, "val": heldout_comparisons, "k_max": 2,
                    "max_prompt_tokens": prompt_tokens, "max_response_tokens": rm_response, "overflow": "truncate"})
    # The reference normalises the reward so the SFT set's reference summaries score 0 (bias only).
    rm.norm.update({"gain": False, "data": sft_data, "num_responses": 1024})
    _optim(rm.optim)
    rm.train.update({"steps": 0, "batch_size": max(64, shards), "seq_len": prompt_tokens + rm_response, "epochs": 1.0,
                     "eval_every": 200, "checkpoint_every": 200, "async_checkpoint": True})
    rm.eval.batch_rows = max(128, shards)

    ppo = _common(load_config("configs/ppo.py:ppo"), preset, mesh, pod)
    ppo.data.update({"prompts": sft_data, "eval_prompts": heldout, "prompt_len": prompt_tokens, "overflow": overflow})
    ppo.ppo.update({"beta": 0.05, "temperature": 0.7, "max_new_tokens": sft_response, "eos_penalty": 1.0,
                    "rollout_batch": 512, "minibatches": 1, "epochs": 4, "vf_coef": 0.1, "clip": 0.2,
                    "vf_clip": 0.2, "gamma": 1.0, "lam": 0.95, "ptx_coef": 0.0, "frozen_dtype": "bfloat16"})
    _optim(ppo.optim)
    _optim(ppo.value_optim)
    ppo.train.update({"iterations": 1_000_000 // 512, "eval_every": 100, "checkpoint_every": 50,
                      "async_checkpoint": True})
    ppo.eval.batches = 1

    if stage != "all":
        return {"sft": sft, "rm": rm, "ppo": ppo}[stage]
    return ml_collections.ConfigDict({"pod": pod, "model": preset, "sft": sft, "rm": rm, "ppo": ppo})
