"""The SFT stage (InstructGPT stage 1): fine-tune the pretrained GPT on demonstrations with sft.sft_loss.

Records `sft/val_loss` on held-out demonstrations and, with the embedded world's gold judge, the gold
score of greedy (`sft/gold_score`) and temperature-1 samples (`sft/gold_score_t1`) on held-out prompts;
the pretrained model's figures are written at step 0.

  instructgpt sft --config configs/sft.py --workdir W/sft   (config.init_from = W/pretrain)

`run_nlp` is the same fine-tune on the world's NLP datasets (data/nlp.py), which it writes first: the start
of the paper's final RM (Appendix C.2), `instructgpt rm_nlp` and the pipeline's stage rm_nlp.
"""

from __future__ import annotations

import copy
import logging
import math
import os

import jax
import ml_collections
import numpy as np
from flax import nnx

from instructgpt_jax import checkpoint, folders, metrics, sharding, train
from instructgpt_jax.data import batching, formats, nlp
from instructgpt_jax.data.packing import auto_seq_len, encode_examples, packed_batches
from instructgpt_jax.data.world import gold_judge
from instructgpt_jax.sampling import SampleConfig, generate_texts, make_generate
from instructgpt_jax.sft import sft_loss
from instructgpt_jax.tokenizer import check_vocab, make_tokenizer

log = logging.getLogger(__name__)


def make_evaluate(setup: train.Setup, config, tokenizer, val_batches: list[dict], eval_prompts: list[str],
                  prompt_len: int):
    """evaluate(params) -> {sft/val_loss, sft/gold_score, sft/gold_score_t1, sft/response_length[_t1]}."""
    @jax.jit
    def loss_sum(params, batch):
        loss, aux = sft_loss(nnx.merge(setup.graphdef, params), batch, None)
        return loss * aux["tokens"], aux["tokens"]

    gold = gold_judge(config.eval.gold_judge)
    sample = lambda temp: SampleConfig(max_new_tokens=config.eval.max_new_tokens, temperature=temp,  # noqa: E731
                                       eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)
    generators = {name: make_generate(setup.graphdef, sample(temp), setup.mesh)
                  for name, temp in (("", 0.0), ("_t1", 1.0))}

    def evaluate(params) -> dict:
        total = count = 0.0
        for batch in val_batches:
            s, c = jax.device_get(loss_sum(params, sharding.put_global(batch, setup.mesh)))
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


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Fine-tune `config.init_from`'s params on `config.data.train` into `workdir`; returns the last figures."""
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
        train_ex, val_ex = batching.split_val(examples, d.val_fraction, t.seed, d.train)
    encoded = encode_examples(train_ex, tokenizer)
    lengths = [len(p) + len(r) for p, r in encode_examples(train_ex + val_ex, tokenizer)]
    seq_len = t.seq_len or auto_seq_len(lengths, model_cfg.n_positions)
    if max(lengths) > seq_len:
        raise ValueError(f"the longest SFT example has {max(lengths)} tokens, more than config.train.seq_len={seq_len} "
                         "(raise it, or set 0 to fit the data)")

    if t.packing:
        batches, epoch_steps = packed_batches(encoded, t.batch_size, seq_len, t.seed, t.epochs, tokenizer.pad_id,
                                              t.get("pack_window", 0))
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
    return metrics.final_figures(workdir, "sft")




def run_nlp(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Write `config.nlp`'s records of the world's NLP datasets into `workdir`/data/{train,val}.jsonl, then
    fine-tune on them as `run` does (configs/rm_nlp.py). The records are deterministic and written atomically,
    so a resumed run reads the same files, and its input digests match."""
    config = copy.deepcopy(config)
    config.unlock()
    n = config.nlp
    paths = {split: os.path.join(workdir, "data", f"{split}.jsonl") for split in ("train", "val")}
    for split, path in paths.items():  # every path is checked before anything is written
        given = config.data[split]
        if given and os.path.abspath(given) != os.path.abspath(path):
            raise ValueError(f"config.data.{split}={given!r}; the rm_nlp stage writes its datasets itself, to {path} "
                             "(leave it empty; config.nlp sets how many records)")
    for split, count in (("train", n.examples), ("val", n.val_examples)):
        config.data[split] = formats.write_jsonl(paths[split], nlp.nlp_records(n.seed, count, split))
    return run(config, workdir)
