"""`instructgpt bench`: tokens/s, step time, model FLOPs, MFU, memory and compile time of every stage.

The numbers a researcher compares stacks by, measured the same way for each stage:
- a matmul peak measured first on the same devices (a sharded fp32/bf16 matmul over the whole mesh), so
  MFU = achieved model FLOP/s / that peak, not a datasheet number;
- for pretrain / SFT / RM steps: the real jitted `train.train_step` with each stage's loss, compile time
  (lower + compile), compiled memory analysis (arguments, outputs, temporaries), median step time of N
  timed steps after warm-up, tokens/s, and the number of compilations after warm-up (must be 0);
- for a PPO iteration: the real generate / score / update programs of ppo_stage.py, timed separately,
  with generated tokens/s;
- torch's fp32 matmul peak beside XLA's (an n x n by n x n matmul on torch's default threads), when torch
  is installed: the limit the other stack (Hugging Face TRL) runs against, for comparing utilisations.
Model FLOPs per token follow the PaLM appendix B convention: 6 * N_matmul + 12 * n_layer * d * T for a
training token (forward + backward), where N_matmul counts every weight used in a matmul (the tied
unembedding once, not the position table); 2 * N_matmul + 4 * n_layer * d * T for a forward-only token.
A step's floor is its model FLOPs / the measured matmul peak: the time it would take at the peak, so
`time_over_floor` = step time / floor = 1 / MFU says how far from it the step runs. PPO's three programs
each get a floor from the forwards they run (`generate_flops`, `score_forwards`, `update_passes`).
Data are random tokens of the configured shapes: throughput does not depend on their values. With
`config.real_lengths`, bench_lengths.py adds each stage on the embedded world's own lengths (SFT
demonstrations, K-wise comparisons, PPO prompts), padded vs packed, counting real tokens only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import statistics
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from instructgpt_jax import bench_lengths, ppo, profiling, sharding, train
from instructgpt_jax.config_base import from_config
from instructgpt_jax.model import GPTConfig
from instructgpt_jax.pretrain import pretrain_loss
from instructgpt_jax.reward import rm_loss
from instructgpt_jax.sft import sft_loss
from instructgpt_jax.stages import ppo as ppo_stage
from instructgpt_jax.tokenizer import check_vocab, make_tokenizer

log = logging.getLogger(__name__)


def trunk_weights(cfg: GPTConfig) -> int:
    """Weights of the blocks used in matmuls: 4 D^2 attention + 2 D F MLP per layer."""
    return cfg.n_layer * (4 * cfg.n_embd * cfg.n_embd + 2 * cfg.n_embd * cfg.mlp_dim)


def matmul_flops(cfg: GPTConfig) -> int:
    """Weights used in matmuls for every token: the blocks, plus the tied unembedding V D, or for a
    scalar-head model (RM, value) the D x 1 head: it never computes logits, so V D would inflate its MFU."""
    return trunk_weights(cfg) + (1 if cfg.scalar_head else cfg.vocab_size) * cfg.n_embd


def train_flops_per_token(cfg: GPTConfig, seq_len: int) -> float:
    return train_flops([(cfg, 1, seq_len)])


def forward_flops_per_token(cfg: GPTConfig, seq_len: int) -> float:
    return forward_flops([(cfg, 1, seq_len)])


def _pass_flops(passes, per_weight: int, per_attention: int) -> float:
    """Sum over passes (config, tokens, seq_len[, logit_tokens]): per_weight FLOPs per matmul weight and token,
    per_attention per n_layer x D x attended slot and token. A model without a scalar head applies its
    unembedding (V x D) to `logit_tokens` of its tokens only (default: all of them), as PPO's response reads
    do (logits of the N response slots, the trunk over all T - 1 fed slots)."""
    total = 0
    for cfg, n, T, *logit in passes:
        weights = n * trunk_weights(cfg)
        weights += n * cfg.n_embd if cfg.scalar_head else cfg.vocab_size * cfg.n_embd * (logit[0] if logit else n)
        total += per_weight * weights + per_attention * cfg.n_layer * cfg.n_embd * T * n
    return float(total)


def forward_flops(passes) -> float:
    """Model FLOPs of forward passes given as (config, tokens, seq_len[, logit_tokens]): seq_len is the length
    a token attends over."""
    return _pass_flops(passes, 2, 4)


def train_flops(passes) -> float:
    """Model FLOPs of training passes (forward + backward) given as (config, tokens, seq_len[, logit_tokens])."""
    return _pass_flops(passes, 6, 12)


def generate_flops(cfg: GPTConfig, batch: int, prompt_len: int, max_new_tokens: int) -> float:
    """sampling.make_generate's forwards: the prefill over the B x P prompt slots (attending over P), then
    N - 1 decode steps of B tokens each attending over the cache of P + N - 1 slots (the prefill gives the
    first token and the last one is never fed back). Every row counts at every step, as the loop runs
    (finished rows still compute); a batch where every row ends early runs fewer steps."""
    P, N = prompt_len, max_new_tokens
    return forward_flops([(cfg, batch * P, P), (cfg, batch * (N - 1), P + N - 1)])


def score_forwards(policy_cfg: GPTConfig, value_cfg: GPTConfig, reward_cfg: GPTConfig, cfg: ppo.PPOConfig,
                   prompt_len: int) -> list:
    """The forwards rollout.score runs, as (config, tokens, seq_len[, logit_tokens]): each model's trunk over
    the B x (P + N - 1) fed slots (ppo.response_hidden); the reference's logits on the B x N response slots;
    the policy's too unless its old logprobs are the sampler's (`sampler_logprobs`, which a shared trunk
    overrides: its forward gives the values); the value model (none of its own with `shared_trunk`) and the
    reward model read a D x 1 head."""
    T = prompt_len + cfg.max_new_tokens - 1
    n, logit_tokens = cfg.rollout_batch * T, cfg.rollout_batch * cfg.max_new_tokens
    logits = dataclasses.replace(policy_cfg, scalar_head=False)
    forwards = [(logits, n, T, logit_tokens)]
    if cfg.shared_trunk or not cfg.sampler_logprobs:
        forwards.append((logits, n, T, logit_tokens))
    if not cfg.shared_trunk:
        forwards.append((dataclasses.replace(value_cfg, scalar_head=True), n, T))
    return forwards + [(dataclasses.replace(reward_cfg, scalar_head=True), n, T)]


def update_passes(policy_cfg: GPTConfig, value_cfg: GPTConfig, cfg: ppo.PPOConfig, prompt_len: int) -> list:
    """ppo.update's training passes, as (config, tokens, seq_len[, logit_tokens]): each epoch the policy (logits
    on the N response slots) and the value model (none of its own with `shared_trunk`) over the B x (P + N - 1)
    fed slots, plus with ptx_coef > 0 the policy's LM loss on epochs x minibatches x ptx_batch_size rows of
    ptx_seq_len pretraining tokens."""
    T = prompt_len + cfg.max_new_tokens - 1
    n = cfg.epochs * cfg.rollout_batch * T
    logit_tokens = cfg.epochs * cfg.rollout_batch * cfg.max_new_tokens
    passes = [(dataclasses.replace(policy_cfg, scalar_head=False), n, T, logit_tokens)]
    if not cfg.shared_trunk:
        passes.append((dataclasses.replace(value_cfg, scalar_head=True), n, T))
    if cfg.ptx_coef > 0:
        ptx_tokens = cfg.epochs * cfg.minibatches * cfg.ptx_batch_size * cfg.ptx_seq_len
        passes.append((dataclasses.replace(policy_cfg, scalar_head=False), ptx_tokens, cfg.ptx_seq_len))
    return passes


def measure_peak(mesh, dtype: str = "float32", n: int = 1024, reps: int = 10) -> float:
    """FLOP/s of a big matmul sharded over every device of the mesh (rows of A over all axes)."""
    devices = mesh.devices.size
    spec = jax.sharding.PartitionSpec(("data", "fsdp", "tensor"), None)
    a = jax.device_put(jnp.ones((n * devices, n), dtype), jax.sharding.NamedSharding(mesh, spec))
    b = jax.device_put(jnp.ones((n, n), dtype), sharding.replicated(mesh))
    f = jax.jit(lambda a, b: a @ b)
    jax.block_until_ready(f(a, b))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(f(a, b))
        times.append(time.perf_counter() - t0)
    return 2 * n * n * n * devices / statistics.median(times)


def measure_torch_peak(platform: str, n: int = 1024, reps: int = 10) -> tuple[float | None, str]:
    """(FLOP/s, note) of torch's fp32 n x n by n x n matmul on the JAX platform's kind of device ("cpu": torch's
    default thread count; "gpu": CUDA), timed as `measure_peak` (median of reps after one warm-up); (None, why)
    without torch or without such a device in torch. A trap on cores another process is using: each matmul
    waits for its slowest thread, so on a busy 2-core host this has read 2 GFLOP/s where idle cores give 160
    (XLA's figure moves far less): compare peaks measured on idle cores."""
    try:
        import torch
    except ImportError:
        return None, "torch not installed"
    device = {"cpu": "cpu", "gpu": "cuda"}.get(platform)
    if device is None or (device == "cuda" and not torch.cuda.is_available()):
        return None, f"torch has no {platform} device"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    a, b = torch.ones(n, n, device=device), torch.ones(n, n, device=device)
    with torch.inference_mode():
        a @ b
        sync()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            a @ b
            sync()
            times.append(time.perf_counter() - t0)
    threads = f", {torch.get_num_threads()} threads" if device == "cpu" else ""
    return 2 * n * n * n / statistics.median(times), f"torch {torch.__version__} fp32 {device}{threads}"


def _memory(compiled) -> dict:
    try:
        m = compiled.memory_analysis()
        args, out, temp, alias = (m.argument_size_in_bytes, m.output_size_in_bytes, m.temp_size_in_bytes,
                                  m.alias_size_in_bytes)
        return {"argument_bytes": args, "output_bytes": out, "temp_bytes": temp,
                "peak_bytes": args + out + temp - alias}
    except Exception as e:  # noqa: BLE001 - not every backend reports it
        return {"memory_error": str(e)[:100]}


def _stage_batch(stage: str, b: ml_collections.ConfigDict, cfg: GPTConfig, rng: np.random.RandomState) -> dict:
    """Random batch with the shapes of a real one (left-padded, response half of each row for SFT)."""
    T = b.seq_len
    tokens = lambda *shape: rng.randint(0, cfg.vocab_size, size=shape).astype(np.int32)  # noqa: E731
    if stage == "pretrain":
        return {"tokens": tokens(b.batch_size, T)}
    positions = np.broadcast_to(np.arange(T, dtype=np.int32), (b.batch_size, T)).copy()
    mask = np.ones((b.batch_size, T), bool)
    if stage == "sft":
        loss_mask = np.zeros((b.batch_size, T), bool)
        loss_mask[:, T // 2:] = True
        return {"tokens": tokens(b.batch_size, T), "positions": positions, "attention_mask": mask, "loss_mask": loss_mask}
    K = 2  # "RM 16 pairs": K = 2 per element, each response forwarded once
    expand = lambda x: np.repeat(x[:, None], K, axis=1)  # noqa: E731
    return {"tokens": tokens(b.batch_size, K, T), "positions": expand(positions), "attention_mask": expand(mask),
            "last_index": np.full((b.batch_size, K), T - 1, np.int32), "k_mask": np.ones((b.batch_size, K), bool),
            "ranks": np.tile(np.arange(K, dtype=np.int32), (b.batch_size, 1))}


def time_train_step(setup: train.Setup, loss_fn, batches: list[dict], warmup: int, steps: int,
                    profile: tuple[int, str] | None = None) -> dict:
    """Compile the real jitted train step for batches[0]'s shapes, run `warmup` steps, then time `steps` steps
    cycling through `batches` (all on the devices before the clock starts): compile_s, median step_s, the
    compilations after warm-up (must be 0) and the compiled program's memory. profile = (calls, trace folder):
    then trace that many more steps and add their XLA ops (profiling.op_rows) as `ops`."""
    with jax.set_mesh(setup.mesh):
        params = train.random_params(setup, 0)
        state = {"step": jnp.int32(0), "params": params, "opt_state": setup.tx.init(params), "bad_step": jnp.int32(-1)}
        state = jax.device_put(state, setup.shardings)
        device_batches = [sharding.shard_batch(b, setup.mesh) for b in batches]
        rng = jax.random.key(0)
        step_fn = train.jit_train_step(setup, loss_fn, batches[0])
        t0 = time.perf_counter()
        compiled = step_fn.lower(state, device_batches[0], rng).compile()
        compile_s = time.perf_counter() - t0
        for i in range(warmup):
            state, _ = step_fn(state, device_batches[i % len(batches)], rng)
        jax.block_until_ready(state)
        cache_before = step_fn._cache_size()
        times = []
        for i in range(steps):
            t0 = time.perf_counter()
            state, metrics = step_fn(state, device_batches[(warmup + i) % len(batches)], rng)
            jax.block_until_ready(metrics["loss"])
            times.append(time.perf_counter() - t0)
        recompiles = step_fn._cache_size() - cache_before
        ops = {}
        if profile is not None:
            calls, trace_dir = profile
            one_step = _chained(lambda s: step_fn(s, device_batches[0], rng), state)
            ops = {"ops": profiling.op_rows(profiling.profile(one_step, calls, trace_dir), calls,
                                            profiling.module_ops(compiled)), "trace_dir": trace_dir}
    return {"step_s": statistics.median(times), "compile_s": compile_s, "recompiles_after_warmup": recompiles,
            **_memory(compiled), **ops}


def _chained(call, state):
    """A no-argument function for profiling.profile: each call runs call(state) -> (new state, *outputs), waits
    for it, and keeps the new state for the next call (donated buffers are never reused)."""
    box = [state]

    def once():
        box[0], *out = call(box[0])
        jax.block_until_ready(out)

    return once


def _profile_arg(config: ml_collections.ConfigDict, trace_root: str | None, name: str):
    """(calls, trace folder) for time_train_step / bench_ppo when config.profile is enabled, else None."""
    if trace_root is None or not config.profile.enabled:
        return None
    return config.profile.calls, os.path.join(trace_root, f"profile_{name}")


def bench_step(stage: str, config: ml_collections.ConfigDict, peak: float, trace_root: str | None = None) -> dict:
    """Compile and time one stage's train step; returns its row of the table (with config.profile.enabled and
    a trace_root, also its traced ops)."""
    b = config[stage]
    loss_fn = {"pretrain": pretrain_loss, "sft": sft_loss, "rm": rm_loss}[stage]
    model_cfg = train.model_config(config.model, scalar_head=stage == "rm")
    setup = train.make_setup(model_cfg, config.mesh, train.make_optimizer(config.optim, 1000))
    host = _stage_batch(stage, b, model_cfg, np.random.RandomState(0))
    timing = time_train_step(setup, loss_fn, [host], config.warmup, config.steps,
                             _profile_arg(config, trace_root, stage))
    n_tokens = int(np.prod(host["tokens"].shape))
    tokens_per_s = n_tokens / timing["step_s"]
    flops = train_flops_per_token(model_cfg, b.seq_len)
    floor_s = flops * n_tokens / peak
    return {"stage": stage, "tokens_per_step": n_tokens, "tokens_per_s": tokens_per_s, "flops_per_token": flops,
            "mfu": tokens_per_s * flops / peak, "floor_s": floor_s, "time_over_floor": timing["step_s"] / floor_s,
            **timing}


class _Recorder:
    """A jitted program that remembers the abstract arguments of its last call, to compile it again for its HLO
    (the op names of a profile): `compiled()`."""

    def __init__(self, fn, mesh=None):
        self.fn, self.mesh, self.avals = fn, mesh, None

    def __call__(self, *args):
        self.avals = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding) if isinstance(x, jax.Array) else x,
            args)
        return self.fn(*args)

    def compiled(self):
        with jax.set_mesh(self.mesh) if self.mesh is not None else contextlib.nullcontext():
            return self.fn.lower(*self.avals).compile()


def bench_ppo(config: ml_collections.ConfigDict, peak: float, trace_root: str | None = None) -> dict:
    """Time generate / score / update of PPO iterations on random prompts with random models (with
    config.profile.enabled and a trace_root, also trace a few iterations: their XLA ops as `ops`)."""
    p = config.ppo
    cfg = from_config(ppo.PPOConfig, p.ppo, "config.ppo.ppo")
    model_cfg = train.model_config(config.model)
    steps = cfg.epochs * cfg.minibatches * 100
    setup = ppo_stage.make_setup(model_cfg, config.mesh, cfg, train.make_optimizer(config.optim, steps),
                                train.make_optimizer(config.optim, steps))
    eos = pad = model_cfg.vocab_size - 1
    programs = ppo_stage.make_programs(setup, eos, pad, (0.0, 1.0))
    rng = np.random.RandomState(0)
    with jax.set_mesh(setup.mesh):
        policy = train.random_params(setup.headless, 0)
        value = train.random_params(setup.headed, 1)
        if cfg.shared_trunk:
            value = {k: value[k] for k in ppo_stage.HEAD}
        state = ppo_stage.init_state(setup, policy, value)
        # The reference starts equal to the policy but must own its buffers: the update donates the policy's.
        ref = ppo_stage.frozen(setup, jax.tree.map(jnp.copy, policy))
        rm = ppo_stage.frozen(setup, train.random_params(setup.headed, 2))
        B, P = cfg.rollout_batch, p.prompt_len
        lengths = rng.randint(P // 2, P + 1, size=B)
        mask = np.arange(P)[None, :] >= (P - lengths)[:, None]  # left-padded prompts of different lengths
        host = {"prompt_tokens": np.where(mask, rng.randint(0, eos, size=(B, P)), pad).astype(np.int32),
                "prompt_mask": mask}
        batch = sharding.shard_batch(host, setup.mesh)
        ptx = None
        if cfg.ptx_coef > 0:
            n = cfg.epochs * cfg.minibatches
            spec = jax.sharding.PartitionSpec(None, sharding.BATCH_AXES, None)
            ptx = jax.device_put(rng.randint(0, eos, size=(n, cfg.ptx_batch_size, cfg.ptx_seq_len)).astype(np.int32),
                                 jax.sharding.NamedSharding(setup.update_mesh, spec))
        key = jax.random.key(0)
        t0 = time.perf_counter()
        state, *_ = ppo_stage.iteration(programs, state, ref, rm, batch, ptx, key)
        compile_s = time.perf_counter() - t0
        for _ in range(config.warmup - 1):
            state, *_ = ppo_stage.iteration(programs, state, ref, rm, batch, ptx, key)
        sizes = [programs.generate._cache_size(), programs.score._cache_size(), programs.update._cache_size()]
        rows, generated = [], []
        for i in range(config.steps):
            state, sample, _, _, times = ppo_stage.iteration(programs, state, ref, rm, batch, ptx, jax.random.fold_in(key, i))
            rows.append(times)
            generated.append(int(jax.device_get(sample["response_mask"]).sum()))
        after = [programs.generate._cache_size(), programs.score._cache_size(), programs.update._cache_size()]
        ops = {}
        profile = _profile_arg(config, trace_root, "ppo")
        if profile is not None:
            calls, trace_dir = profile
            recorded = {name: _Recorder(getattr(programs, name), programs.update_mesh if name == "update" else None)
                        for name in ("generate", "score", "update")}
            traced = dataclasses.replace(programs, **recorded)
            one_iteration = _chained(lambda s: ppo_stage.iteration(traced, s, ref, rm, batch, ptx, key), state)
            events = profiling.profile(one_iteration, calls, trace_dir)
            modules = {}
            for program in recorded.values():
                modules.update(profiling.module_ops(program.compiled()))
            ops = {"ops": profiling.op_rows(events, calls, modules), "trace_dir": trace_dir}
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    policy_cfg, value_cfg = setup.model_cfg, setup.headed.model_cfg
    flops = {"generate": generate_flops(policy_cfg, B, P, cfg.max_new_tokens),
             "score": forward_flops(score_forwards(policy_cfg, value_cfg, setup.rewarder.model_cfg, cfg, P)),
             "update": train_flops(update_passes(policy_cfg, value_cfg, cfg, P))}
    floors = {}
    for k, f in flops.items():
        floors |= {f"{k}_flops": f, f"{k}_floor_s": f / peak, f"{k}_time_over_floor": med[f"time/{k}"] * peak / f}
    return {"stage": "ppo_iteration", "iteration_s": med["time/iteration"], "generate_s": med["time/generate"],
            "score_s": med["time/score"], "update_s": med["time/update"],
            "generated_tokens_per_s": statistics.median(generated) / med["time/generate"],
            "first_iteration_s_incl_compile": compile_s, "recompiles_after_warmup": sum(after) - sum(sizes),
            "rollout": f"{B} prompts x {P} tokens + {cfg.max_new_tokens} new, {cfg.epochs} epoch(s) x "
                       f"{cfg.minibatches} minibatches, ptx_coef {cfg.ptx_coef}", **floors, **ops}


def bench_real_lengths(config: ml_collections.ConfigDict) -> dict:
    """SFT and RM steps on the embedded world's own data, padded and packed (bench_lengths.py), and its PPO
    prompts' lengths; a few timed steps per layout."""
    r = config.real_lengths
    tokenizer = make_tokenizer(r.world.tokenizer)
    data = bench_lengths.read_world(r.world, tokenizer)
    rows = []
    for stage in ("sft", "rm"):
        model_cfg = train.model_config(config.model, scalar_head=stage == "rm")
        check_vocab(tokenizer, model_cfg.vocab_size)
        setup = train.make_setup(model_cfg, config.mesh, train.make_optimizer(config.optim, 1000))
        if stage == "sft":
            layouts = bench_lengths.sft_layouts(data["sft"], tokenizer, r.sft_batch_size, r.sft_seq_len,
                                                model_cfg.n_positions, r.seed, r.steps)
        else:
            layouts = bench_lengths.rm_layouts(data["rm"], tokenizer, r.rm_batch_size, r.rm_packed_rows, r.rm_seq_len,
                                               model_cfg.n_positions, r.seed, r.steps,
                                               sharding.batch_shards(setup.mesh))
        for layout in layouts:
            log.info("bench %s: real lengths, %s %s", config.name, layout.stage, layout.layout)
            timing = time_train_step(setup, layout.loss_fn, layout.batches, config.warmup, r.steps)
            rows.append(bench_lengths.layout_row(layout, timing))
    return {"world": {"scale": r.world.scale, **{k: len(v) for k, v in data.items()}}, "rows": rows,
            "ppo_prompts": bench_lengths.prompt_figures(data["ppo"], tokenizer, config.ppo.prompt_len, r.ppo_prompt_len,
                                                        r.get("ppo_rollout_batch", 0), r.get("ppo_prompt_bucket", 0),
                                                        r.seed)}


def format_table(result: dict) -> str:
    torch_peak = (f"torch {result['torch_peak_flops'] / 1e9:.1f} GFLOP/s ({result['torch_peak_note']})"
                  if result["torch_peak_flops"] else result["torch_peak_note"])
    lines = [f"bench {result['name']}: {result['devices']} x {result['platform']}, model {result['model']}, "
             f"matmul peak XLA {result['peak_flops'] / 1e9:.1f} GFLOP/s ({result['dtype']}), {torch_peak}"
             + (f"; compile times may be loads from the compilation cache {result['compile_cache']}"
                if result.get("compile_cache") else ""),
             "| stage | tokens/s | step (ms) | floor (ms) | x floor | MFU | GFLOP/token | compile (s) | peak memory (MB) "
             "| recompiles |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["steps"]:
        lines.append(f"| {r['stage']} | {r['tokens_per_s']:,.0f} | {1e3 * r['step_s']:.1f} | {1e3 * r['floor_s']:.2f} | "
                     f"{r['time_over_floor']:.1f} | {100 * r['mfu']:.1f}% | {r['flops_per_token'] / 1e9:.4f} | "
                     f"{r['compile_s']:.1f} | {r.get('peak_bytes', float('nan')) / 2**20:.1f} | "
                     f"{r['recompiles_after_warmup']} |")
    if "ppo" in result:
        r = result["ppo"]
        floors = ", ".join(f"{k} {r[f'{k}_floor_s']:.4f} s (x{r[f'{k}_time_over_floor']:.1f})"
                           for k in ("generate", "score", "update"))
        lines += ["", f"PPO iteration ({r['rollout']}): {r['iteration_s']:.3f} s = generate {r['generate_s']:.3f} + "
                      f"score {r['score_s']:.3f} + update {r['update_s']:.3f}; {r['generated_tokens_per_s']:,.0f} generated "
                      f"tokens/s; recompiles after warm-up: {r['recompiles_after_warmup']}",
                  f"floors: {floors}"]
    if "real_lengths" in result:
        lines += [""] + bench_lengths.format_block(result["real_lengths"])
    for r in result["steps"] + [result.get("ppo", {})]:
        if "ops" in r:
            lines += ["", f"{r['stage']}: the most expensive XLA ops of a traced call (ms per call and device; "
                          f"trace in {r['trace_dir']})"]
            lines += profiling.format_ops(r["ops"], result["profile_top"])
    return "\n".join(lines)


def run(config: ml_collections.ConfigDict, out_dir: str | None = None) -> dict:
    """Run the benchmark named by the config; print the table, write bench_<name>.json to out_dir (default runs/bench)."""
    model_cfg = train.model_config(config.model)
    mesh = sharding.make_mesh(config.mesh.shape)
    with jax.set_mesh(mesh):
        peak = measure_peak(mesh, model_cfg.dtype if model_cfg.dtype != "float16" else "float32", config.peak_n)
    platform = jax.devices()[0].platform
    torch_peak, torch_note = measure_torch_peak(platform, config.peak_n)
    result = {"name": config.name, "platform": platform, "devices": jax.device_count(),
              "model": {k: v for k, v in dataclasses.asdict(model_cfg).items()
                        if k in ("n_layer", "n_head", "n_embd", "vocab_size", "n_positions")},
              "dtype": model_cfg.dtype, "peak_flops": peak, "torch_peak_flops": torch_peak,
              "torch_peak_note": torch_note, "steps": [],
              # None unless JAX_COMPILATION_CACHE_DIR is set (the command line keeps its own cache out of the bench):
              # with a cache, "compile (s)" may be a load of a program compiled earlier
              "compile_cache": jax.config.jax_compilation_cache_dir}
    out_dir = out_dir or os.path.join("runs", "bench")
    trace_root = None
    if config.profile.enabled:
        trace_root = os.path.abspath(out_dir)
        result |= {"profile_dir": trace_root, "profile_top": config.profile.top}
    for stage in config.stages:
        log.info("bench %s: %s step", config.name, stage)
        result["steps"].append(bench_step(stage, config, peak, trace_root))
    if config.ppo.enabled:
        log.info("bench %s: PPO iteration", config.name)
        result["ppo"] = bench_ppo(config, peak, trace_root)
    if config.real_lengths.enabled:
        log.info("bench %s: real lengths", config.name)
        result["real_lengths"] = bench_real_lengths(config)
    table = format_table(result)
    print(table)
    if jax.process_index() == 0:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, f"bench_{config.name}.json"), "w") as f:
            json.dump({**result, "table": table}, f, indent=2)
    return {}
