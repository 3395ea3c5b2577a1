"""Stage 1 of InstructGPT: supervised fine-tuning (SFT) of the pretrained GPT on labeler demonstrations.

The loss is the next-token loss of pretrain.lm_loss on the response tokens only: prompt tokens condition
but are not trained (loss_mask marks the response, EOS included; lm_loss reads it at [:, 1:] against
logits[:, :-1]). The paper trains 16 epochs with cosine decay and residual dropout 0.2 and notes that the
SFT model overfits on validation loss after one epoch while its RM score and human preference keep
improving, so it selects the checkpoint by RM score (Ouyang et al. 2022, section 3.5). We record both:
`sft/val_loss` on held-out demonstrations and, when the gold judge of the embedded world is available,
`sft/gold_score` of greedy samples and `sft/gold_score_t1` of temperature-1 samples on held-out prompts
(the base model's figures are written at step 0). Optional packing puts several examples in one row with
a block-diagonal attention mask and per-example positions, so no example sees another.

  instructgpt sft --config configs/sft.py --workdir W/sft   (config.init_from = W/pretrain)
"""

from __future__ import annotations

import logging
import math
import os

import jax
import ml_collections
import numpy as np
from flax import nnx

from instructgpt_jax import checkpoint, folders, metrics, sharding, train
from instructgpt_jax.pretrain import lm_loss

log = logging.getLogger(__name__)


def packed_key_mask(segment_ids: jax.Array) -> jax.Array:
    """(B, T, T) block-diagonal key mask of packed rows: a token sees only its own segment (0 = padding)."""
    seg = segment_ids
    return (seg[:, :, None] == seg[:, None, :]) & (seg[:, None, :] > 0)


def sft_loss(model, batch, rng):
    """Mean NLL of the response tokens. A packed batch carries `segment_ids` (B, T), 0 on padding."""
    key_mask = packed_key_mask(batch["segment_ids"]) if "segment_ids" in batch else batch["attention_mask"]
    loss, count = lm_loss(model, batch["tokens"], batch["positions"], key_mask, batch["loss_mask"], dropout_rng=rng)
    return loss, {"tokens": count}


# ---------------------------------------------------------------- data

def encode_examples(examples, tokenizer) -> list[tuple[list[int], list[int]]]:
    return [(tokenizer.encode_prompt(ex["prompt"]), tokenizer.encode_response(ex["response"])) for ex in examples]


def auto_seq_len(lengths, n_positions: int, multiple: int = 16) -> int:
    """The longest sequence rounded up to a multiple of 16 (one compiled shape, little padding)."""
    longest = max(lengths)
    seq_len = min(-(-longest // multiple) * multiple, n_positions)
    if longest > seq_len:
        raise ValueError(f"the longest sequence has {longest} tokens, more than the model's n_positions={n_positions}")
    return seq_len


def pack_rows(lengths, seq_len: int, order) -> list[list[int]]:
    """Greedy packing in `order`: append examples to the current row while they fit, else start a new row."""
    rows, row, used = [], [], 0
    for i in order:
        if used + lengths[i] > seq_len and row:
            rows.append(row)
            row, used = [], 0
        row.append(int(i))
        used += lengths[i]
    rows.append(row)
    return rows


def packed_batch(encoded, rows, seq_len: int, pad_id: int) -> dict:
    """Rows of several examples each, right-aligned like batching.sft_batch, with segment ids 1, 2, ..."""
    B = len(rows)
    out = {"tokens": np.full((B, seq_len), pad_id, np.int32), "positions": np.zeros((B, seq_len), np.int32),
           "attention_mask": np.zeros((B, seq_len), bool), "loss_mask": np.zeros((B, seq_len), bool),
           "segment_ids": np.zeros((B, seq_len), np.int32)}
    for b, row in enumerate(rows):
        t = seq_len - sum(len(encoded[i][0]) + len(encoded[i][1]) for i in row)
        for s, i in enumerate(row, 1):
            prompt, response = encoded[i]
            n = len(prompt) + len(response)
            out["tokens"][b, t:t + n] = prompt + response
            out["positions"][b, t:t + n] = np.arange(n)
            out["attention_mask"][b, t:t + n] = True
            out["loss_mask"][b, t + len(prompt):t + n] = True
            out["segment_ids"][b, t:t + n] = s
            t += n
    return out


def packed_batches(encoded, batch_size: int, seq_len: int, seed: int, epochs: float, pad_id: int):
    """(batches(step), steps): each epoch a fresh seeded order packed greedily; a pure function of step."""
    from instructgpt_jax.data import batching

    lengths = [len(p) + len(r) for p, r in encoded]
    rows = []
    for epoch in range(max(1, math.ceil(epochs))):
        rows += pack_rows(lengths, seq_len, batching.epoch_order(len(encoded), seed, epoch))
    per_epoch = len(rows) / max(1, math.ceil(epochs))
    steps = max(1, math.ceil(epochs * per_epoch / batch_size))

    def batches(step: int) -> dict:
        idx = (step * batch_size + np.arange(batch_size)) % len(rows)
        return packed_batch(encoded, batching.process_slice([rows[i] for i in idx]), seq_len, pad_id)

    return batches, steps


# Salt of the order split_val holds examples out in (with the run's seed).
VAL_STREAM = 17


def split_val(examples: list, val_fraction: float, seed: int, what: str) -> tuple[list, list]:
    """(train, val): a seeded `val_fraction` of the examples held out, at least one of each."""
    n_val = max(1, round(len(examples) * val_fraction))
    if len(examples) - n_val < 1:
        raise ValueError(f"{what}: {len(examples)} examples cannot give both a training and a validation split")
    order = np.random.default_rng([seed, VAL_STREAM]).permutation(len(examples))
    return [examples[i] for i in order[n_val:]], [examples[i] for i in order[:n_val]]


# ---------------------------------------------------------------- sampling and evaluation

def shard_global(batch: dict, mesh) -> dict:
    """Place a batch every process built whole (evaluation): each process passes its own rows."""
    from instructgpt_jax.data.batching import process_slice

    return sharding.shard_batch({k: process_slice(v) for k, v in batch.items()}, mesh)


def fetch(tree):
    """Device arrays -> numpy on every process (an all-gather across hosts when there are several)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)


def generate_texts(generate, params, tokenizer, prompts: list[str], prompt_len: int, batch_size: int, rng,
                   mesh=None, desc: str = "") -> tuple[list[str], np.ndarray]:
    """(response texts, response lengths in tokens) of `generate` (sampling.make_generate) for each prompt.

    Prompts go in fixed batches of `batch_size` rows left-padded to `prompt_len` (one compiled shape);
    the last batch is filled with copies of its first prompt, whose samples are discarded. With `desc`, a
    progress bar counts the samples.
    """
    from instructgpt_jax.data.batching import left_pad

    bar = metrics.progress(len(prompts), 0, desc) if desc else None
    texts, lengths = [], []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        rows = [tokenizer.encode_prompt(p) for p in chunk + [chunk[0]] * (batch_size - len(chunk))]
        tokens, mask = left_pad(rows, prompt_len, tokenizer.pad_id)
        inputs = {"prompt_tokens": tokens, "prompt_mask": mask}
        if mesh is not None:
            inputs = shard_global(inputs, mesh)
        out = fetch(generate(params, inputs["prompt_tokens"], inputs["prompt_mask"], jax.random.fold_in(rng, start)))
        for i in range(len(chunk)):
            texts.append(tokenizer.decode(out["response"][i][out["response_mask"][i]]))
            lengths.append(int(out["lengths"][i]))
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return texts, np.asarray(lengths)


def make_evaluate(setup: train.Setup, config, tokenizer, val_batches: list[dict], eval_prompts: list[str],
                  prompt_len: int):
    """evaluate(params) -> {sft/val_loss, sft/gold_score, sft/gold_score_t1, sft/response_length[_t1]}."""
    from instructgpt_jax.sampling import SampleConfig, make_generate

    @jax.jit
    def loss_sum(params, batch):
        loss, aux = sft_loss(nnx.merge(setup.graphdef, params), batch, None)
        return loss * aux["tokens"], aux["tokens"]

    from instructgpt_jax.data.world import gold_judge

    gold = gold_judge(config.eval.gold_judge)
    generators = {
        name: make_generate(setup.graphdef, SampleConfig(max_new_tokens=config.eval.max_new_tokens, temperature=temp,
                                                         eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id))
        for name, temp in (("", 0.0), ("_t1", 1.0))
    }

    def evaluate(params) -> dict:
        total = count = 0.0
        for batch in val_batches:
            s, c = jax.device_get(loss_sum(params, shard_global(batch, setup.mesh)))
            total, count = total + float(s), count + float(c)
        out = {"sft/val_loss": total / max(count, 1.0)}
        if gold is not None and eval_prompts:
            for name, generate in generators.items():
                texts, lengths = generate_texts(generate, params, tokenizer, eval_prompts, prompt_len,
                                                config.eval.batch_size, jax.random.key(config.eval.seed), setup.mesh)
                out[f"sft/gold_score{name}"] = float(np.mean(gold(eval_prompts, texts)))
                out[f"sft/response_length{name}"] = float(lengths.mean())
        return out

    return evaluate


# ---------------------------------------------------------------- the stage

def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Fine-tune `config.init_from`'s params on `config.data.train` into `workdir`; returns the last figures."""
    from instructgpt_jax.data import batching, formats
    from instructgpt_jax.tokenizer import check_vocab, make_tokenizer

    if not config.init_from:
        raise ValueError("config.init_from is empty; expected the pretraining stage folder (e.g. W/pretrain)")
    if not config.data.train:
        raise ValueError("config.data.train is empty; expected an SFT JSONL file of {\"prompt\", \"response\"}")
    # The architecture and tokenizer are the base model's (config.model gives the numerics: dropout, dtype).
    config, model_cfg = folders.inferred(config, "init_from")
    folders.check_rerun(workdir, config, "sft", model_cfg=model_cfg)
    d, t = config.data, config.train
    tokenizer = make_tokenizer(d.tokenizer)
    check_vocab(tokenizer, model_cfg.vocab_size)
    read = lambda path: list(formats.read_sft(path, tokenizer, max_prompt_tokens=d.max_prompt_tokens,  # noqa: E731
                                              max_response_tokens=d.max_response_tokens, overflow=d.overflow,
                                              model_vocab_size=model_cfg.vocab_size))
    examples = read(d.train)
    if d.val:
        train_ex, val_ex = examples, read(d.val)
    else:
        train_ex, val_ex = split_val(examples, d.val_fraction, t.seed, d.train)
    encoded = encode_examples(train_ex, tokenizer)
    lengths = [len(p) + len(r) for p, r in encode_examples(train_ex + val_ex, tokenizer)]
    seq_len = t.seq_len or auto_seq_len(lengths, model_cfg.n_positions)
    if max(lengths) > seq_len:
        raise ValueError(f"the longest SFT example has {max(lengths)} tokens, more than config.train.seq_len={seq_len} "
                         "(raise it, or set 0 to fit the data)")

    if t.packing:
        batches, epoch_steps = packed_batches(encoded, t.batch_size, seq_len, t.seed, t.epochs, tokenizer.pad_id)
    else:
        batches = batching.sft_batches(train_ex, tokenizer, t.batch_size, seq_len, t.seed)
        epoch_steps = max(1, math.ceil(t.epochs * len(train_ex) / t.batch_size))
    steps = t.steps or epoch_steps
    setup = train.make_setup(model_cfg, config.mesh, train.make_optimizer(config.optim, steps))
    sharding.check_divisible(t.batch_size, setup.mesh, "config.train.batch_size")
    sharding.check_divisible(config.eval.batch_size, setup.mesh, "config.eval.batch_size")
    log.info("sft: %d train / %d val examples, seq_len %d, %d steps (packing=%s)", len(train_ex), len(val_ex),
             seq_len, steps, t.packing)

    # Validation: whole batches of held-out demonstrations (the last partial one is dropped: one shape).
    n_val = max(1, min(len(val_ex) // t.batch_size, config.eval.val_batches))
    val_rows = (val_ex * t.batch_size)[:n_val * t.batch_size]
    val_batches = [batching.sft_batch(val_rows[i * t.batch_size:(i + 1) * t.batch_size], tokenizer, seq_len)
                   for i in range(n_val)]
    eval_prompts = (list(formats.read_ppo(config.eval.prompts, tokenizer)) if config.eval.prompts
                    else [ex["prompt"] for ex in val_ex])[:config.eval.num_prompts]
    prompt_len = auto_seq_len([len(tokenizer.encode_prompt(p)) for p in eval_prompts or ["x"]], model_cfg.n_positions)
    if prompt_len + config.eval.max_new_tokens - 1 > model_cfg.n_positions:
        raise ValueError(f"eval prompts of {prompt_len} tokens + config.eval.max_new_tokens={config.eval.max_new_tokens} "
                         f"exceed the model's n_positions={model_cfg.n_positions}")
    evaluate = make_evaluate(setup, config, tokenizer, val_batches, eval_prompts, prompt_len)
    init = lambda: train.params_from(setup, config.init_from)  # noqa: E731

    if config.eval.base and checkpoint.latest_step(os.path.join(workdir, "checkpoints")) is None:
        # The pretrained model's figures at step 0, the "before" of the SFT comparison.
        with jax.set_mesh(setup.mesh):
            base = evaluate(init())
        writer = metrics.MetricWriter(workdir, tensorboard=t.tensorboard)
        writer.truncate_after(-1)
        writer.write(0, base)
        writer.close()

    train.run(stage="sft", workdir=workdir, config=config, setup=setup, loss_fn=sft_loss, batches=batches,
              total_steps=steps, init_params=init, evaluate=lambda state, step: evaluate(state["params"]),
              meta={"tokenizer": d.tokenizer, "seq_len": seq_len})
    return final_figures(workdir, "sft")


def final_figures(workdir: str, stage: str, base: bool = True) -> dict:
    """Each metric's last value in `workdir/metrics.jsonl`, plus (`base`) the step-0 figures as `<name>_base`."""
    out = {}
    for row in metrics.read_metrics(workdir):
        for key, value in row.items():
            if key.startswith(f"{stage}/"):
                out[key] = value
                if base and row["step"] == 0:
                    out[f"{key}_base"] = value
    return out
