"""The PPO / PPO-ptx stage (InstructGPT stage 3): load the SFT policy, value model and frozen models, then iterate
generate -> score -> update, with metrics, evaluation, checkpoints and exact resume.

  instructgpt ppo --config configs/ppo.py:ptx --workdir W/ppo_ptx

Each iteration is three compiled programs, each compiled once per prompt width (a batch is padded to its
longest prompt rounded up to config.data.prompt_bucket): the KV-cache sampler (sampling.py), the scoring pass
(rollout.py) and the update (ppo.py: epochs x minibatches in one lax.scan, state donated). Sampling and scoring
run over the whole mesh, the update and the train state on the first update_devices() of it (one on a
single-process CPU host).
They are timed separately (time/generate, time/score, time/update); nothing returns to the host inside an
iteration but the end-of-phase syncs the timers need and the update's metrics. Iteration i's prompts,
pretraining windows and keys depend only on i, and beta lives in the checkpointed state, so a resumed run
repeats the run it continues.
Evaluation (iteration 0 = the SFT policy, then every eval_every) samples a fixed prompt set and logs the
gold judge's score, the RM score, the KL to SFT and the held-out pretraining loss (the alignment tax).
With config.ppo.ema_decay > 0 the policy evaluated and released is the moving average of the trained weights
(ppo.py): a checkpoint's `params` are the average, which every later stage loads, and `online_params` the
weights the updates train, which only a resumed run reads.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from instructgpt_jax import checkpoint, folders, metrics, ppo, rollout, sharding, train
from instructgpt_jax.config_base import from_config
from instructgpt_jax.data import batching, formats
from instructgpt_jax.data import corpus as corpus_lib
from instructgpt_jax.data.world import gold_judge
from instructgpt_jax.model import GPTConfig
from instructgpt_jax.pretrain import heldout_loss
from instructgpt_jax.reward import load_reward_norm
from instructgpt_jax.sampling import SampleConfig, make_generate
from instructgpt_jax.tokenizer import check_vocab, make_tokenizer

log = logging.getLogger(__name__)

HEAD = ("score_kernel", "score_bias")


@dataclasses.dataclass
class Setup:
    """Static parts of a PPO run: mesh, the four models' graphs, optimizers, state shapes and shardings."""

    cfg: ppo.PPOConfig
    mesh: jax.sharding.Mesh
    model_cfg: GPTConfig  # the policy's architecture, without the scalar head
    policy_graphdef: object  # with the head when the trunk is shared (policy + value in one network)
    value_graphdef: object | None  # None: shared trunk
    ref_graphdef: object
    reward_graphdef: object
    policy_tx: optax.GradientTransformation
    value_tx: optax.GradientTransformation
    abstract: dict
    shardings: dict  # the state's, on update_mesh
    update_mesh: jax.sharding.Mesh  # the update's devices: `mesh`, or its first update_devices (update_devices())
    headless: train.Setup  # the policy / reference network (train.py's view, for loading params)
    headed: train.Setup  # the value network (the policy's with a head when the trunk is shared)
    rewarder: train.Setup  # the reward network (the value network's setup when both have one architecture)


def update_devices(mesh_cfg, devices) -> int:
    """How many of `devices` the update runs on: `mesh_cfg.update_devices`, where 0 (the default) means all of
    them on accelerators or over several processes, and one on a single-process CPU host. A CPU host split into
    one XLA device per core (host.py) samples and scores faster over both, but the update's minibatch of a few
    rows per device loses more to the all-reduce after every gradient step than the second core gives it
    (docs/RESULTS.md, "The PPO update on one device")."""
    n = mesh_cfg.get("update_devices", 0)
    if n == 0:  # several processes: every device (each process places its own rows)
        return 1 if devices[0].platform == "cpu" and jax.process_count() == 1 else len(devices)
    if not 0 < n <= len(devices):
        raise ValueError(f"config.mesh.update_devices={n}; expected 0 (automatic) or 1 to {len(devices)} (the "
                         "devices this run has)")
    if n < len(devices) and jax.process_count() > 1:
        raise ValueError(f"config.mesh.update_devices={n}: a run over {jax.process_count()} processes updates on "
                         f"all {len(devices)} devices; set 0")
    return n


def make_setup(model_cfg: GPTConfig, mesh_cfg, cfg: ppo.PPOConfig, policy_tx, value_tx, devices=None,
               value_cfg: GPTConfig | None = None, reward_cfg: GPTConfig | None = None) -> Setup:
    """`value_cfg` / `reward_cfg`: the value and reward networks' architectures when they differ from the
    policy's (the paper's RM and value function are 6B for its 1.3B policy); None = the policy's.

    Sampling and scoring run on the mesh over `devices`; the update, and so the train state, on the mesh over
    the first update_devices() of them (the same mesh when that is all)."""
    devices = list(devices if devices is not None else jax.devices())
    value_cfg, reward_cfg = value_cfg or model_cfg, reward_cfg or value_cfg or model_cfg
    for name, c in (("value", value_cfg), ("reward", reward_cfg)):
        if c.vocab_size != model_cfg.vocab_size:
            raise ValueError(f"the {name} model's vocab_size={c.vocab_size} differs from the policy's "
                             f"{model_cfg.vocab_size}: they must read the same tokens")
    if cfg.shared_trunk and value_cfg.architecture() != model_cfg.architecture():
        raise ValueError("config.ppo.shared_trunk needs the value model (init_value) to have the policy's "
                         f"architecture; it has n_layer={value_cfg.n_layer}, n_embd={value_cfg.n_embd} against "
                         f"{model_cfg.n_layer}, {model_cfg.n_embd}")
    headless = train.make_setup(dataclasses.replace(model_cfg, scalar_head=False), mesh_cfg, policy_tx, devices)
    headed = train.make_setup(dataclasses.replace(model_cfg if cfg.shared_trunk else value_cfg, scalar_head=True),
                              mesh_cfg, value_tx, devices)
    rewarder = headed if reward_cfg.architecture() == headed.model_cfg.architecture() else train.make_setup(
        dataclasses.replace(reward_cfg, scalar_head=True), mesh_cfg, optax.identity(), devices)
    mesh = headless.mesh
    if cfg.shared_trunk:
        value_abs = {k: headed.abstract["params"][k] for k in HEAD}
        value_shard = {k: headed.shardings["params"][k] for k in HEAD}
        value_opt = jax.eval_shape(value_tx.init, value_abs)
        value_opt_shard = sharding.like_params(value_opt, value_shard, mesh)
        policy_graphdef, value_graphdef = headed.graphdef, None
    else:
        value_abs, value_shard = headed.abstract["params"], headed.shardings["params"]
        value_opt, value_opt_shard = headed.abstract["opt_state"], headed.shardings["opt_state"]
        policy_graphdef, value_graphdef = headless.graphdef, headed.graphdef
    scalar = lambda dtype: jax.ShapeDtypeStruct((), dtype)  # noqa: E731
    repl = sharding.replicated(mesh)
    abstract = {"step": scalar(jnp.int32), "params": headless.abstract["params"],
                "opt_state": headless.abstract["opt_state"], "value_params": value_abs, "value_opt_state": value_opt,
                "beta": scalar(jnp.float32), "bad_step": scalar(jnp.int32)}
    shardings = {"step": repl, "params": headless.shardings["params"], "opt_state": headless.shardings["opt_state"],
                 "value_params": value_shard, "value_opt_state": value_opt_shard, "beta": repl, "bad_step": repl}
    if cfg.ema_decay > 0:
        abstract["ema_params"], shardings["ema_params"] = abstract["params"], shardings["params"]
    n_update = update_devices(mesh_cfg, devices)
    if n_update == len(devices):
        update_mesh = mesh
    else:  # one device: no axis to split; more: config.mesh.shape over them
        update_mesh = sharding.make_mesh((1, 1, 1) if n_update == 1 else mesh_cfg.shape, devices[:n_update])
    shardings = sharding.on_mesh(shardings, abstract, update_mesh)
    n = sharding.batch_shards(mesh)
    if cfg.rollout_batch % n:
        raise ValueError(f"config.ppo.rollout_batch={cfg.rollout_batch} must be divisible by data x fsdp = {n}: "
                         "sampling and scoring split each rollout over the mesh")
    n = sharding.batch_shards(update_mesh)
    if cfg.rollout_batch // cfg.minibatches % n:
        raise ValueError(f"config.ppo.rollout_batch / minibatches = {cfg.rollout_batch // cfg.minibatches} rows per "
                         f"minibatch must be divisible by data x fsdp = {n}")
    if cfg.ptx_coef > 0 and cfg.ptx_batch_size % n:
        raise ValueError(f"config.ppo.ptx_batch_size={cfg.ptx_batch_size} must be divisible by data x fsdp = {n}")
    return Setup(cfg, mesh, headless.model_cfg, policy_graphdef, value_graphdef, headless.graphdef,
                 rewarder.graphdef, policy_tx, value_tx, abstract, shardings, update_mesh, headless, headed, rewarder)


def stage_architecture(stage_dir: str, model_cfg: GPTConfig) -> GPTConfig:
    """The architecture of a stage folder's newest checkpoint, with `model_cfg`'s numerics (dtype, remat)."""
    _, meta = checkpoint.read_meta(os.path.join(stage_dir, "checkpoints"))
    if "model" not in meta:
        raise ValueError(f"{stage_dir}/checkpoints: meta has no 'model'; not a model checkpoint")
    stored = GPTConfig(**meta["model"])  # fields a checkpoint predates (arch, ...) take their defaults
    return dataclasses.replace(model_cfg, **{k: getattr(stored, k) for k in GPTConfig.ARCHITECTURE})


def init_state(setup: Setup, params, value_params) -> dict:
    """A fresh train state on the mesh, beta from the config.

    The optimizer states are built eagerly: Adam's init is zeros_like per leaf, which keeps each param's
    sharding, so no device holds a full replica and no program is compiled for a one-off call.
    """
    repl = sharding.replicated(setup.update_mesh)
    state = {
        "step": jnp.int32(0),
        "params": params,
        "opt_state": setup.policy_tx.init(params),
        "value_params": value_params,
        "value_opt_state": setup.value_tx.init(value_params),
        "beta": jnp.float32(setup.cfg.beta),
        "bad_step": jnp.int32(-1),
    }
    if setup.cfg.ema_decay > 0:  # the average starts at SFT; a copy, since the update donates both
        state["ema_params"] = jax.tree.map(jnp.copy, params)
    return jax.device_put(state, {**setup.shardings, "step": repl, "beta": repl, "bad_step": repl})


# With a moving average, a checkpoint's `params` is the policy later stages load, so the state's names differ
# from the checkpoint's items: state key -> item.
CHECKPOINT_ITEMS = {"ema_params": "params", "params": "online_params"}


def to_checkpoint(tree: dict) -> dict:
    """The train state (or its abstract / shardings) under the checkpoint's item names (CHECKPOINT_ITEMS)."""
    if "ema_params" not in tree:
        return tree
    return {CHECKPOINT_ITEMS.get(k, k): v for k, v in tree.items()}


def from_checkpoint(tree: dict) -> dict:
    """to_checkpoint's inverse."""
    if "online_params" not in tree:
        return tree
    state_keys = {item: key for key, item in CHECKPOINT_ITEMS.items()}
    return {state_keys.get(k, k): v for k, v in tree.items()}


def check_average(manager, cfg: ppo.PPOConfig) -> None:
    """A run resumes with the moving average its checkpoints have, or without one when they have none: across
    the change, a restore would read the average as the trained weights, or find no trained weights. The setting
    is read from each step's meta (a checkpoint from before it had no average), so a step that lost an item is
    still restore_latest's to move aside, not taken for a change of setting."""
    for step in manager.all_steps():
        try:
            ran = float(checkpoint.read_meta(os.fspath(manager.directory), step)[1].get("ema_decay", 0.0))
        except Exception:  # noqa: BLE001 - an unreadable checkpoint is restore_latest's to move aside
            continue
        if (ran > 0) != (cfg.ema_decay > 0):
            raise ValueError(f"{manager.directory} step {step} was written {'with' if ran > 0 else 'without'} a "
                             f"moving average of the policy's weights (ema_decay {ran}), but "
                             f"config.ppo.ema_decay={cfg.ema_decay}: resume with the setting it ran with, or start "
                             "in a new workdir")


def frozen(setup: Setup, tree):
    """Frozen models in `frozen_dtype` (bf16 halves their memory; they get no gradients or optimizer state)."""
    dtype = jnp.dtype(setup.cfg.frozen_dtype)
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


# What sampling and scoring read of the train state.
ROLLOUT_STATE = ("params", "value_params", "beta")


@dataclasses.dataclass
class Programs:
    generate: object
    score: object
    update: object
    for_rollout: object  # state -> its ROLLOUT_STATE on the mesh that samples and scores
    for_update: object  # a tree of batch arrays (the scored rollout) and scalars (a key) -> the update's mesh
    update_mesh: jax.sharding.Mesh  # the mesh the update is called under
    released: object  # state -> the policy evaluation samples (ema_params, else params) on the sampling mesh


def make_programs(setup: Setup, eos_id: int, pad_id: int, reward_norm: tuple[float, float]) -> Programs:
    """The three jitted programs of an iteration (each compiles once per prompt width) and the moves between
    the sampling mesh and the update's; build once and reuse."""
    cfg = setup.cfg
    sample_cfg = SampleConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, eos_id=eos_id, pad_id=pad_id)
    # The sampler runs the policy's params on the headless graph: in shared-trunk mode they exclude the head.
    generate = make_generate(setup.ref_graphdef, sample_cfg, setup.mesh)
    score = rollout.make_score(setup.policy_graphdef, setup.value_graphdef, setup.ref_graphdef, setup.reward_graphdef,
                               cfg, eos_id, reward_norm)
    update = ppo.make_update(setup.policy_graphdef, setup.value_graphdef, cfg, setup.policy_tx, setup.value_tx,
                             setup.shardings, lambda ndim: sharding.batch_sharding(setup.update_mesh, ndim))
    # The update's results are copied to the sampling mesh once per iteration (the policy's and value model's
    # params, a few MB at CPU scale), the scored rollout back to the update's devices. On one mesh both moves
    # put arrays onto the shardings they already have: no copy.
    to_rollout = {k: sharding.on_mesh(setup.shardings[k], setup.abstract[k], setup.mesh) for k in ROLLOUT_STATE}
    return Programs(generate, score, update,
                    lambda state: jax.device_put({k: state[k] for k in ROLLOUT_STATE}, to_rollout),
                    lambda tree: jax.device_put(tree, jax.tree.map(lambda x: sharding.batch_sharding(
                        setup.update_mesh, x.ndim) if x.ndim else sharding.replicated(setup.update_mesh), tree)),
                    setup.update_mesh,
                    lambda state: jax.device_put(state.get("ema_params", state["params"]), to_rollout["params"]))


# fold_in salts of an iteration's key: the rollout's samples, and the update's minibatch orders.
GENERATE_STREAM, UPDATE_STREAM = 0, 1
# Evaluation samples with keys from key(seed + EVAL_SEED_OFFSET), apart from the iterations' key(seed).
EVAL_SEED_OFFSET = 1


def iteration(programs: Programs, state: dict, ref_params, reward_params, batch: dict, ptx_tokens, rng):
    """One PPO iteration on device batch {'prompt_tokens', 'prompt_mask'}: (state, sample, stats, update metrics, times)."""
    times = {}
    t0 = time.perf_counter()
    now = programs.for_rollout(state)
    sample = programs.generate(now["params"], batch["prompt_tokens"], batch["prompt_mask"],
                               jax.random.fold_in(rng, GENERATE_STREAM))
    jax.block_until_ready(sample)
    times["time/generate"] = (t1 := time.perf_counter()) - t0
    data, stats = programs.score(now["params"], now["value_params"], ref_params, reward_params, now["beta"],
                                 sample, batch["prompt_mask"])
    jax.block_until_ready(data)
    times["time/score"] = (t2 := time.perf_counter()) - t1
    data, key = programs.for_update((data, jax.random.fold_in(rng, UPDATE_STREAM)))
    with jax.set_mesh(programs.update_mesh):
        state, update_metrics = programs.update(state, data, ptx_tokens, key)
    jax.block_until_ready(state)
    update_metrics = jax.device_get(update_metrics)  # a few scalars per minibatch, whichever mesh they are on
    times["time/update"] = time.perf_counter() - t2
    times["time/iteration"] = time.perf_counter() - t0
    return state, sample, stats, update_metrics, times


def run(config, workdir: str) -> dict:
    """Train PPO (ptx_coef 0) or PPO-ptx into `workdir`; returns the final evaluation's metrics."""
    cfg, t = from_config(ppo.PPOConfig, config.ppo, "config.ppo"), config.train
    for key in ("init_policy", "init_value", "reward_model"):
        if not config[key]:
            raise ValueError(f"config.{key} is empty; expected a stage folder (init_policy: W/sft; init_value and "
                             "reward_model: W/rm)")
    # The policy's architecture and tokenizer are init_policy's (config.model gives the numerics).
    config, model_cfg = folders.inferred(config, "init_policy")
    if config.ref_policy:
        folders.read_input(config.ref_policy, "ref_policy", policy=True)
    folders.check_rerun(workdir, config, "ppo")
    tokenizer = make_tokenizer(config.data.tokenizer)
    check_vocab(tokenizer, model_cfg.vocab_size)
    P = config.data.prompt_len
    if P + cfg.max_new_tokens > model_cfg.n_positions:
        raise ValueError(f"config.data.prompt_len={P} + config.ppo.max_new_tokens={cfg.max_new_tokens} exceeds the "
                         f"model's n_positions={model_cfg.n_positions}")
    read = lambda path: list(formats.read_ppo(path, tokenizer, max_prompt_tokens=P, overflow=config.data.overflow,  # noqa: E731
                                              model_vocab_size=model_cfg.vocab_size))
    prompts = read(config.data.prompts)
    if len(prompts) < cfg.rollout_batch:
        raise ValueError(f"{config.data.prompts} has {len(prompts)} prompts, fewer than config.ppo.rollout_batch="
                         f"{cfg.rollout_batch} (one rollout)")
    eval_prompts = read(config.data.eval_prompts) if config.data.eval_prompts else prompts
    n_eval = min(config.eval.batches, len(eval_prompts) // cfg.rollout_batch)
    if n_eval < 1:
        raise ValueError(f"{config.data.eval_prompts or config.data.prompts} has {len(eval_prompts)} prompts, fewer than "
                         f"config.ppo.rollout_batch={cfg.rollout_batch} needed for one evaluation batch")
    bucket = config.data.get("prompt_bucket", 0)  # a stage folder's config from before the key: prompt_len
    if bucket < 0:
        raise ValueError(f"config.data.prompt_bucket={bucket}; expected 0 (pad to prompt_len) or a positive "
                         "number of tokens")
    batches = batching.ppo_batches(prompts, tokenizer, cfg.rollout_batch, P, seed=t.seed, bucket=bucket)
    # This host's rows of each fixed evaluation batch (the gold score averages this host's responses), padded to
    # the width of the whole batch.
    eval_chunks = [eval_prompts[i * cfg.rollout_batch:(i + 1) * cfg.rollout_batch] for i in range(n_eval)]
    eval_batches = [batching.ppo_batch(batching.process_slice(c), tokenizer,
                                       batching.prompt_width(c, tokenizer, P, bucket)) for c in eval_chunks]
    gold = gold_judge(config.eval.gold_judge)

    train_ids = heldout_ids = None
    if config.data.corpus.source:
        text = corpus_lib.load_corpus(config.data.corpus.source, data_dir=config.data.corpus.data_dir or None,
                                      heldout_fraction=config.data.corpus.heldout_fraction)
        train_ids = tokenizer.encode_corpus(text.train)
        heldout_ids = tokenizer.encode_corpus(text.heldout)
    if cfg.ptx_coef > 0 and train_ids is None:
        raise ValueError("config.ppo.ptx_coef > 0 needs a pretraining corpus: set config.data.corpus.source")

    norm = load_reward_norm(config.reward_model)
    steps = t.iterations * cfg.epochs * cfg.minibatches
    # The value and reward networks may be larger than the policy (as the paper's 6B RM for its 1.3B policy):
    # their architectures come from the checkpoints they start from (one meta read per folder: usually both W/rm).
    arch = {d: stage_architecture(d, model_cfg) for d in {config.init_value, config.reward_model}}
    setup = make_setup(model_cfg, config.mesh, cfg, train.make_optimizer(config.optim, steps),
                       train.make_optimizer(config.value_optim, steps),
                       value_cfg=arch[config.init_value], reward_cfg=arch[config.reward_model])
    programs = make_programs(setup, tokenizer.eos_id, tokenizer.pad_id, (norm["mean"], norm["std"]))

    book = train.Bookkeeper("ppo", workdir, config, unit="iteration")
    writer = book.writer
    meta = {"stage": "ppo", "model": dataclasses.asdict(setup.model_cfg), "tokenizer": config.data.tokenizer,
            "total_steps": t.iterations, "ptx_coef": cfg.ptx_coef, "ema_decay": cfg.ema_decay,
            "inputs": folders.input_digests(config)}
    mesh, rng = setup.mesh, jax.random.key(t.seed)
    ptx_spec = jax.sharding.PartitionSpec(None, sharding.BATCH_AXES, None)

    def ptx_tokens(it: int):
        if cfg.ptx_coef == 0:
            return None
        n = cfg.epochs * cfg.minibatches
        windows = batching.lm_windows(train_ids, it, n * cfg.ptx_batch_size, cfg.ptx_seq_len, seed=t.seed)
        windows = windows.reshape(n, cfg.ptx_batch_size, cfg.ptx_seq_len)
        per_host = cfg.ptx_batch_size // jax.process_count()
        return sharding.put_local(windows[:, jax.process_index() * per_host:(jax.process_index() + 1) * per_host],
                                  jax.sharding.NamedSharding(setup.update_mesh, ptx_spec))

    def evaluate(state, ref_params, reward_params) -> dict:
        """Fixed prompts, fixed keys: differences between evaluations come from the policy alone (the released
        one: the moving average when there is one)."""
        out = {"gold": [], "score": [], "kl": [], "length": []}
        now = {**programs.for_rollout(state), "params": programs.released(state)}
        for i, (arrays, strings) in enumerate(eval_batches):
            batch = sharding.shard_batch(arrays, mesh)
            sample = programs.generate(now["params"], batch["prompt_tokens"], batch["prompt_mask"],
                                       jax.random.fold_in(jax.random.key(t.seed + EVAL_SEED_OFFSET), i))
            data, stats = programs.score(now["params"], now["value_params"], ref_params, reward_params,
                                         now["beta"], sample, batch["prompt_mask"])
            stats = jax.device_get(stats)
            out["score"].append(stats["score"])
            out["kl"].append(stats["kl"])
            out["length"].append(stats["response_length"])
            if gold is not None:
                host = jax.device_get({k: sample[k] for k in ("response", "response_mask")})
                texts = [tokenizer.decode(r[m]) for r, m in zip(host["response"], host["response_mask"])]
                out["gold"].append(float(np.mean(gold(strings, texts))))
        row = {"ppo/eval_score": np.mean(out["score"]), "ppo/eval_kl": np.mean(out["kl"]),
               "ppo/eval_length": np.mean(out["length"])}
        if out["gold"]:
            row["ppo/gold_score"] = np.mean(out["gold"])
        if heldout_ids is not None:
            row["ppo/pretrain_loss"] = heldout_loss(setup.ref_graphdef, now["params"], heldout_ids,
                                                    cfg.ptx_batch_size, cfg.ptx_seq_len, config.eval.heldout_batches)
        return {k: float(v) for k, v in row.items()}

    with jax.set_mesh(mesh):
        check_average(book.manager, cfg)
        state, restored = book.restore(to_checkpoint(setup.abstract), to_checkpoint(setup.shardings))
        if state is not None:
            state = from_checkpoint(state)
        load = lambda s, d: checkpoint.restore_params(os.path.join(d, "checkpoints"), s.abstract["params"],  # noqa: E731
                                                      s.shardings["params"])[0]
        # The KL anchor: SFT. It is init_policy unless a later RLHF round starts from an earlier round's policy.
        ref_params = frozen(setup, load(setup.headless, config.ref_policy or config.init_policy))
        reward_params = frozen(setup, load(setup.rewarder, config.reward_model))
        if state is None:
            try:  # the paper's choice: the value function starts as the reward model
                value = load(setup.headed, config.init_value)
            except ValueError:  # a folder without a scalar head (e.g. SFT): the trunk, and a fresh head
                value = train.params_from(setup.headed, config.init_value)
            value = {k: value[k] for k in HEAD} if cfg.shared_trunk else value
            state, start = init_state(setup, load(setup.headless, config.init_policy), value), 0
        else:
            start = int(restored["step"])
            log.info("ppo: resuming from iteration %d (beta %.5g)", start, float(jax.device_get(state["beta"])))
        writer.truncate_after(start)
        if start >= t.iterations:
            book.close()
            return _last_eval(workdir)
        if start == 0:
            writer.write(0, evaluate(state, ref_params, reward_params))

        with metrics.progress(t.iterations, start, "ppo") as bar:  # closed on Ctrl-C too: the next line starts clean
            window, result = [], {}
            for it in range(start, t.iterations):
                arrays, strings = batches[it]
                batch, ptx = sharding.shard_batch(arrays, mesh), ptx_tokens(it)
                state, sample, stats, update_metrics, times = iteration(
                    programs, state, ref_params, reward_params, batch, ptx, jax.random.fold_in(rng, it))
                window.append(times)
                done = it + 1
                is_log, is_ckpt, is_eval = book.due(done, t.iterations)
                if is_log or is_ckpt or is_eval:
                    book.check_finite(state)
                if is_log:
                    # The process's first iteration includes compilation: leave it out when the window has others.
                    timed = window[1:] if it - len(window) + 1 == start and len(window) > 1 else window
                    row = {f"ppo/{k}": v for k, v in stats.items()}
                    row.update({f"ppo/{k}": jnp.mean(v) for k, v in update_metrics.items()})
                    row.update({k: float(np.mean([w[k] for w in timed])) for k in timed[0]})
                    values = writer.write(done, row)
                    bar.set_postfix(score=f"{values['ppo/score']:.3f}", kl=f"{values['ppo/kl']:.2f}")
                    window = []
                if is_eval:
                    result = evaluate(state, ref_params, reward_params)
                    writer.write(done, result)
                if is_ckpt:
                    beta = float(jax.device_get(state["beta"]))
                    book.save(done, t.iterations, to_checkpoint(state), {**meta, "beta": beta})
                bar.update(1)
    book.close()
    return result


def _last_eval(workdir: str) -> dict:
    """The newest evaluation row of a finished run (what `run` returned when it finished)."""
    rows = [r for r in metrics.read_metrics(workdir) if "ppo/eval_score" in r]
    return {k: v for k, v in rows[-1].items() if k.startswith("ppo/")} if rows else {}
