"""The bench's real lengths: each stage's step on the embedded world's own data, padded vs packed, real tokens only.

`instructgpt bench` times its steps on random tokens of fixed shapes. This module gives it instead the batches a
run on the embedded world (data/world.py, what `instructgpt world` writes) trains on, laid out the two ways
the stages lay them out:
- padded: one example per row, left-padded to seq_len (the SFT stage with packing=False: batching.sft_batch,
  (B, T); the RM stage with packed_rows=0: batching.rm_batch, (B, k_max, T), every prompt padded to the data's
  largest K with copies of its first response and every response to T);
- packed: several examples per row of seq_len, each attending only to itself (the SFT stage with packing=True:
  packing.packed_batches, greedily in order and best-fit within windows; the RM stage with packed_rows > 0:
  whole prompts with their K responses, packing.packed_rm_batches).
Over one epoch of the data, with `steps` the epoch's steps (fractional for the padded layouts: no wrap-around)
and `slots` the token slots of one step (rows x seq_len),
    padding share      = 1 - real tokens / (steps x slots)
    real tokens / s    = real tokens / (steps x median step time)
    epoch time         = steps x median step time,
where real tokens are the examples' own (prompt + response of each demonstration, of each ranked response),
never padding nor the RM's copied K slots. PPO prompts are not timed: their lengths against the bench's
prompt_len and configs/ppo.py's data.prompt_len give the real-token share of a rollout batch's prompt slots
(the responses' share depends on the policy). Everything here runs on the host; bench.py times the steps.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile

import numpy as np

from instructgpt_jax.data import batching, formats
from instructgpt_jax.data.packing import auto_seq_len, encode_examples, epoch_rows, packed_batches, packed_rm_batches
from instructgpt_jax.reward import rm_loss
from instructgpt_jax.sft import sft_loss


@dataclasses.dataclass(frozen=True)
class Layout:
    """One stage's data laid out one way: what a step holds and the first batches of its epoch."""

    stage: str  # "sft" or "rm"
    layout: str  # "padded", "packed", "packed best-fit", "packed, shared prompts"
    shape: str  # a step's token slots, e.g. "16 x 112" or "16 x 9 x 128"
    slots_per_step: int
    steps_per_epoch: float
    real_tokens: int  # tokens of the epoch's examples
    batches: list  # host batches of the epoch's first steps, to time
    loss_fn: object


def read_world(world_cfg, tokenizer) -> dict:
    """The embedded world's SFT demonstrations, K-wise comparisons and PPO prompts, written to a temporary
    folder by formats.write_world and read back by the stages' readers."""
    with tempfile.TemporaryDirectory() as folder:
        paths = formats.write_world(world_cfg, folder)
        return {"sft": list(formats.read_sft(paths["sft"], tokenizer)),
                "rm": list(formats.read_rm(paths["rm"], tokenizer, k_max=world_cfg.k_max)),
                "ppo": list(formats.read_ppo(paths["ppo"], tokenizer))}


def _first(batches, steps_per_epoch: float, n: int) -> list[dict]:
    return [batches(i) for i in range(min(n, math.ceil(steps_per_epoch)))]


def sft_layouts(examples, tokenizer, batch_size: int, seq_len: int, n_positions: int, seed: int, n_batches: int):
    """SFT demonstrations padded (one per row), packed greedily in order (the SFT default) and packed best-fit
    within windows of 256 (config.train.pack_window 256), B rows of T (packing.packed_batches)."""
    encoded = encode_examples(examples, tokenizer)
    lengths = [len(p) + len(r) for p, r in encoded]
    T = seq_len or auto_seq_len(lengths, n_positions)
    padded = batching.sft_batches(examples, tokenizer, batch_size, T, seed)
    shape, real = f"{batch_size} x {T}", sum(lengths)
    layouts = [Layout("sft", "padded", shape, batch_size * T, len(examples) / batch_size, real,
                      _first(padded, len(examples) / batch_size, n_batches), sft_loss)]
    for name, window in (("packed", 0), ("packed best-fit", 256)):
        packed, _ = packed_batches(encoded, batch_size, T, seed, 1.0, tokenizer.pad_id, window)
        steps = len(epoch_rows(lengths, T, seed, 0, window)) / batch_size
        layouts.append(Layout("sft", name, shape, batch_size * T, steps, real, _first(packed, steps, n_batches),
                              sft_loss))
    return layouts


def rm_layouts(records, tokenizer, batch_size: int, packed_rows: int, seq_len: int, n_positions: int, seed: int,
               n_batches: int, multiple: int):
    """K-wise comparisons padded ((B, k_max, T) per step) and packed (whole prompts into `packed_rows` rows of T,
    each response with its prompt, and with shared prompts as the RM stage's default);
    `multiple`: data x fsdp, the packed batch's prompt and segment slots are rounded up to it (as the RM stage)."""
    lengths = [len(tokenizer.encode_prompt(r["prompt"])) + len(tokenizer.encode_response(y))
               for r in records for y in r["responses"]]
    T = seq_len or auto_seq_len(lengths, n_positions)
    k_max = max(len(r["responses"]) for r in records)
    padded = batching.rm_batches(records, tokenizer, batch_size, T, k_max, seed)
    real, padded_steps = sum(lengths), len(records) / batch_size
    out = [Layout("rm", "padded", f"{batch_size} x {k_max} x {T}", batch_size * k_max * T, padded_steps, real,
                  _first(padded, padded_steps, n_batches), rm_loss)]
    # Shared prompts lay each prompt once before its responses: fewer tokens for the same sequences scored,
    # so `real` (every response with its own prompt) stays the work both layouts do.
    for name, share in (("packed", False), ("packed, shared prompts", True)):
        packed, packed_steps = packed_rm_batches(records, tokenizer, packed_rows, T, seed, 1.0, multiple,
                                                 share_prompt=share)
        out.append(Layout("rm", name, f"{packed_rows} x {T}", packed_rows * T, packed_steps, real,
                          _first(packed, packed_steps, n_batches), rm_loss))
    return out


def layout_figures(real_tokens: int, steps_per_epoch: float, slots_per_step: int, step_s: float) -> dict:
    """The module docstring's arithmetic: padding share, real tokens per step and per second, epoch time."""
    return {"padding_share": 1.0 - real_tokens / (steps_per_epoch * slots_per_step),
            "real_tokens_per_step": real_tokens / steps_per_epoch,
            "real_tokens_per_s": real_tokens / (steps_per_epoch * step_s), "epoch_s": steps_per_epoch * step_s}


def layout_row(layout: Layout, timing: dict) -> dict:
    """A layout's row of the JSON: its shape and epoch, bench.time_train_step's timing and the figures above."""
    return {"stage": layout.stage, "layout": layout.layout, "shape": layout.shape,
            "slots_per_step": layout.slots_per_step, "steps_per_epoch": layout.steps_per_epoch,
            "real_tokens_per_epoch": layout.real_tokens, **timing,
            **layout_figures(layout.real_tokens, layout.steps_per_epoch, layout.slots_per_step, timing["step_s"])}


def prompt_figures(prompts, tokenizer, prompt_len: int, stage_prompt_len: int, batch_size: int = 0,
                   bucket: int = 0, seed: int = 0) -> dict:
    """PPO prompt lengths in real tokens against the bench's `prompt_len` and a PPO run's `stage_prompt_len`:
    the share of prompts longer than each, and the real share of a left-padded batch's prompt slots (a longer
    prompt cut to fit, as overflow="truncate" does). With `batch_size` and `bucket` (configs/ppo.py's
    prompt_bucket), also the mean width and real share of one epoch of a PPO run's batches (its order for
    `seed`, batching.global_indices), each padded to its longest prompt rounded up to `bucket`."""
    n = np.array([len(tokenizer.encode_prompt(p)) for p in prompts])
    out = {"prompts": len(n), "min": int(n.min()), "median": float(np.median(n)), "max": int(n.max())}
    for key, P in (("prompt_len", prompt_len), ("stage_prompt_len", stage_prompt_len)):
        out[key] = P
        out[f"longer_than_{key}"] = float((n > P).mean())
        out[f"real_share_at_{key}"] = float(np.minimum(n, P).sum() / (len(n) * P))
    if batch_size and bucket and len(n) >= batch_size:
        # A PPO run's own batches (their order and widths), as one process sees the global batch.
        run = batching.PromptBatches(len(n), batch_size, seed, None, 0, 1, np.minimum(n, stage_prompt_len), bucket,
                                     stage_prompt_len)
        steps = range(len(n) // batch_size)
        widths = np.array([run.width(step) for step in steps])
        real = sum(int(run.lengths[run.indices(step)].sum()) for step in steps)
        out.update({"bucket": bucket, "batch_size": batch_size, "mean_width_bucketed": float(widths.mean()),
                    "real_share_bucketed": float(real / (batch_size * widths.sum()))})
    return out


def format_block(real: dict) -> list[str]:
    """The real-length lines of bench.format_table."""
    w, p = real["world"], real["ppo_prompts"]
    lines = [f"real lengths (the embedded world at scale {w['scale']}: {w['sft']} demonstrations, {w['rm']} K-wise "
             f"comparisons, {w['ppo']} PPO prompts; real tokens only)",
             "| stage | layout | step (tokens) | padding | real tokens/step | step (ms) | real tokens/s | vs padded "
             "| epoch (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    padded = {r["stage"]: r["real_tokens_per_s"] for r in real["rows"] if r["layout"] == "padded"}
    for r in real["rows"]:
        lines.append(f"| {r['stage']} | {r['layout']} | {r['shape']} | {100 * r['padding_share']:.1f}% | "
                     f"{r['real_tokens_per_step']:,.0f} | {1e3 * r['step_s']:.1f} | {r['real_tokens_per_s']:,.0f} | "
                     f"x{r['real_tokens_per_s'] / padded[r['stage']]:.2f} | {r['epoch_s']:.1f} |")
    lines.append(f"PPO prompts: {p['prompts']}, real tokens min {p['min']} / median {p['median']:.0f} / max "
                 f"{p['max']}; at the bench's prompt_len {p['prompt_len']}: {100 * p['longer_than_prompt_len']:.0f}% longer, "
                 f"{100 * p['real_share_at_prompt_len']:.0f}% of prompt slots real; at configs/ppo.py's "
                 f"{p['stage_prompt_len']}: {100 * p['longer_than_stage_prompt_len']:.0f}% longer, "
                 f"{100 * p['real_share_at_stage_prompt_len']:.0f}% real"
                 + (f"; batches of {p['batch_size']} padded to their longest rounded up to {p['bucket']} "
                    f"(configs/ppo.py's prompt_bucket): mean width {p['mean_width_bucketed']:.1f}, "
                    f"{100 * p['real_share_bucketed']:.0f}% real" if "bucket" in p else ""))
    return lines
