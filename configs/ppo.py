"""PPO and PPO-ptx, stage 3 of InstructGPT, on the embedded world (Ouyang et al. 2022, eq. 2).

  instructgpt ppo --config configs/ppo.py:ptx --workdir W/ppo_ptx \
    --config.init_policy=W/sft --config.init_value=W/rm --config.reward_model=W/rm \
    --config.data.prompts=W/world/ppo.jsonl --config.data.eval_prompts=W/world/eval.jsonl

The pipeline (configs/pipeline.py) fills in these paths and runs `:ppo` into W/ppo and `:ptx` into W/ppo_ptx.
Args (after the colon):
  ptx    (default) PPO-ptx: ptx_coef 1.0, pretraining windows from Shakespeare mixed into every minibatch.
  ppo    the same with ptx_coef 0 (the paper's gamma = 0, "PPO").
  smoke  ptx with 6 iterations, for the pipeline's smoke run; a pulse, not a result.
100 iterations of 32 prompts x 48 new tokens on the tiny preset; each iteration samples, scores with the RM,
the reference and the value model, and takes one epoch of 4 minibatch steps (PPO-ptx adds 8 x 128-token
pretraining rows to each). Wall time per iteration (generate / score / update) and what PPO and PPO-ptx do
to the RM score, gold, KL and the held-out pretraining loss: docs/RESULTS.md ("The default on the
redesigned world" for the current default; "Figures moved from docstrings" for the per-iteration timing).
Paper values kept: KL coefficient beta 0.02, clip 0.2, sampling temperature 1, value function initialised
from the RM, one gradient of PPO + ptx losses per step, the released policy a moving average of the weights at
decay 0.992 (configs/pipeline.py:default turns it off). Scaled for a 1M-parameter model: learning rate
(the paper's 9.65e-6 is for 1.3B), episodes, and ptx_coef (the paper's 27.8 weighs a summed loss; ours is
a mean per token on both sides; configs/pipeline.py:default sets PPO-ptx's). lm-human-preferences' vf_coef 0.1, GAE
lambda 0.95; one epoch per rollout (the comment at `epochs` says why).
Any key can be overridden: --config.ppo.beta=0.005 --config.ppo.adaptive_kl=True --config.ppo.shared_trunk=True.
The policy's size and tokenizer are init_policy's, the value and reward networks' those of their checkpoints.
"""

import ml_collections

from instructgpt_jax.config_base import mesh_config, model_config, optim_config

def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or "ptx"
    if arg not in ("ptx", "ppo", "smoke"):
        raise ValueError(f"configs/ppo.py: unknown arg {arg!r}; expected ptx, ppo or smoke")
    config = ml_collections.ConfigDict()
    config.stage = "ppo"  # the command that runs this config (experiments/sweep.py reads it)
    config.init_policy = ""  # SFT stage folder: the policy's (and, with ref_policy empty, the reference's) params
    config.ref_policy = ""  # reference policy (the KL anchor, pi_SFT of eq. 2); "" = init_policy
    config.init_value = ""  # RM stage folder: the value function starts as the reward model
    config.reward_model = ""  # RM stage folder, with reward_norm.json
    config.data = ml_collections.ConfigDict({
        "prompts": "",  # PPO prompt JSONL ({"prompt"} per line): the world's ppo.jsonl
        "eval_prompts": "",  # fixed evaluation prompts (eval.jsonl); empty = the first PPO prompts
        "tokenizer": "byte",  # "byte" or "gpt2"; init_policy's checkpoint names its own
        "prompt_len": 80,  # the most prompt tokens (the world's longest is 73); a longer prompt is an overflow
        # Each batch is left-padded to its longest prompt rounded up to a multiple of prompt_bucket (at most
        # prompt_len), so sampling, scoring and the update compute no slots for the rest of prompt_len; each
        # program compiles once per width (docs/RESULTS.md, "PPO batches padded to their longest prompt"): a
        # width few batches need costs more to compile than it saves, so the bucket is wide. 0 = every batch
        # padded to prompt_len, one compile.
        "prompt_bucket": 32,
        "overflow": "error",  # a longer prompt: "error", or "truncate" from the left (logged)
        "corpus": {
            "source": "shakespeare",  # pretraining text for ptx and the held-out loss: shakespeare, web, JSONL, tfds:...
            "data_dir": "",  # TFDS data folder ("" = TFDS's default)
            "heldout_fraction": 0.05,  # share of the corpus held out (the alignment-tax loss)
        },
    })
    config.model = model_config("tiny")
    config.mesh = mesh_config()
    # Devices of the update (and the train state): the first update_devices of the mesh's; 0 = all of them on
    # accelerators or over several processes, one on a single-process CPU host, where the update's few rows per
    # device lose to the all-reduce after each gradient step (stages/ppo.update_devices; docs/RESULTS.md, "The
    # PPO update on one device").
    config.mesh.update_devices = 0
    config.optim = optim_config(lr=3e-5, warmup_steps=10)  # policy
    config.value_optim = optim_config(lr=3e-5, warmup_steps=10)
    config.optim.min_lr_ratio = config.value_optim.min_lr_ratio = 1.0  # constant after warmup, as in the paper
    config.ppo = ml_collections.ConfigDict({
        "beta": 0.02,                  # KL coefficient: each response token pays -beta * log(pi_RL / pi_SFT) (eq. 2)
        "adaptive_kl": False,          # steer beta towards target_kl (Ziegler et al. 2019); False = fixed
        "target_kl": 6.0,              # adaptive_kl: KL per response, in nats, that beta steers to
        "horizon": 10_000,             # adaptive_kl: the controller's horizon, in episodes
        "kl_estimator": "kl",          # "kl": log ratio; "k3": (r - 1) - log r, never negative
        "gamma": 1.0,                  # GAE discount
        "lam": 0.95,                   # GAE lambda
        "clip": 0.2,                   # policy ratio clip
        "vf_clip": 0.2,                # value clip, in normalised reward units
        "vf_coef": 0.1,                # weight of the value loss
        # One epoch per rollout: on a CPU the update costs 6 forward passes per epoch against 3 for scoring
        # and little for sampling, so fresh rollouts are as cheap as reuse (the TL;DR reference recipe,
        # configs/pods/benchmark.py, takes 4).
        "epochs": 1,
        "minibatches": 4,              # gradient steps per epoch; rollout_batch is split into them
        "ptx_coef": 0.0 if arg == "ppo" else 1.0,  # weight of the pretraining loss (the paper's gamma); 0 = PPO
        "ptx_batch_size": 8,           # pretraining rows per minibatch step
        "ptx_seq_len": 128,            # tokens per pretraining row
        "rollout_batch": 32,           # prompts sampled per iteration
        "max_new_tokens": 48,          # most tokens per response
        "temperature": 1.0,            # sampling temperature (> 0: PPO needs the samples' logprobs)
        "eos_penalty": 0.0,            # subtracted from the score of a response that ends without EOS
        "whiten": True,                # whiten advantages over the real tokens of a rollout
        "shared_trunk": False,         # value head on the policy's trunk instead of a separate value network
        "frozen_dtype": "float32",     # dtype of the reference and reward models ("bfloat16" halves their memory)
        # The rollout's old logprobs (and entropy) are the sampler's: the KV-cache decode computes the same
        # log_softmax(logits / T) as a full forward (tests/test_sampling.py: within 1e-5 in float32), so
        # scoring skips one of its four forwards, as TRL 1.12 does (it reads them from generate's logits).
        # False recomputes them with a policy forward; with shared_trunk that forward runs anyway, for the values.
        "sampler_logprobs": True,
        # The policy evaluated and released (the checkpoint's `params`, which eval and later rounds load) is an
        # exponential moving average of the trained weights, updated after every gradient step, as in the paper
        # (Appendix C.4: decay 0.992); rollouts and gradients use the trained weights. 0 = no average.
        "ema_decay": 0.992,
    })
    config.train = ml_collections.ConfigDict({
        "iterations": 100,             # rollouts (sample, score, update); checkpoints count iterations
        "seed": 0,                     # prompt order and sampling keys
        "log_every": 5,                # iterations between metrics.jsonl / TensorBoard rows
        "eval_every": 25,              # iterations between evaluations (iteration 0 is the SFT policy's)
        "checkpoint_every": 50,        # iterations between checkpoints (and one at the end)
        "keep_checkpoints": 2,         # newest checkpoints kept
        "keep_period": 0,               # also keep every checkpoint whose iteration is a multiple of this (0 = off)
        "async_checkpoint": False,     # write checkpoints in the background
        "tensorboard": True,           # TensorBoard events in <workdir>/tensorboard beside metrics.jsonl
    })
    config.eval = ml_collections.ConfigDict({
        "batches": 4,                  # evaluation batches of rollout_batch fixed prompts
        "heldout_batches": 8,          # pretraining-corpus batches of the held-out loss
        "gold_judge": "world",         # "" for data without the embedded world's judge
    })
    if arg == "smoke":
        config.train.update({"iterations": 6, "log_every": 2, "eval_every": 3, "checkpoint_every": 3})
        config.eval.update({"batches": 1, "heldout_batches": 2})
    return config
