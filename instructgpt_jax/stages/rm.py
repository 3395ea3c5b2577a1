"""The RM stage (InstructGPT stage 2): train the reward model on K-wise rankings with reward.rm_loss.

Reads K-wise comparisons (formats.read_rm), holds out `data.val_fraction` of the prompts, trains from the
SFT stage's params with a new scalar head (padded (B, K, T) batches, or packed rows: data/packing.py),
evaluates held-out loss and pair accuracy (and gold agreement with the world's judge), then writes
reward_norm.json: the bias (and gain) that gives SFT samples mean 0 (std 1).

  instructgpt rm --config configs/rm.py --workdir W/rm   (config.init_from = W/sft, data.train = W/compare/rm.jsonl)
"""

from __future__ import annotations

import logging
import math
import os

import jax
import ml_collections

from instructgpt_jax import folders, metrics, sharding, train
from instructgpt_jax.data import batching, formats
from instructgpt_jax.data.packing import auto_seq_len, packed_rm_batches
from instructgpt_jax.data.world import gold_judge
from instructgpt_jax.reward import (evaluate_records, load_reward_norm, make_score_texts, reward_norm, rm_loss,
                                    shuffled_pairs, subsample_k)
from instructgpt_jax.tokenizer import check_vocab, make_tokenizer

log = logging.getLogger(__name__)


def read_comparisons(path: str, data_cfg, tokenizer, model_vocab_size: int) -> list[dict]:
    """K-wise RM JSONL as config.data says (k_max, token limits, overflow), validated against the model vocab."""
    d = data_cfg
    return list(formats.read_rm(path, tokenizer, k_max=d.k_max, max_prompt_tokens=d.max_prompt_tokens,
                                max_response_tokens=d.max_response_tokens, overflow=d.overflow,
                                model_vocab_size=model_vocab_size))


def fit_seq_len(records: list[dict], tokenizer, seq_len: int, n_positions: int) -> int:
    """`seq_len`, or with 0 the longest prompt + response of `records` rounded up (sft.auto_seq_len)."""
    lengths = [len(tokenizer.encode_prompt(r["prompt"])) + len(tokenizer.encode_response(y))
               for r in records for y in r["responses"]]
    return seq_len or auto_seq_len(lengths, n_positions)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Train the RM from `config.init_from` (SFT) on `config.data.train` into `workdir`; returns the figures."""
    if not config.init_from:
        raise ValueError("config.init_from is empty; expected the SFT stage folder (e.g. W/sft)")
    if not config.data.train:
        raise ValueError("config.data.train is empty; expected K-wise RM JSONL (e.g. W/compare/rm.jsonl)")
    # The SFT network's architecture and tokenizer, with a scalar head (init_from may be an RM: a later round).
    config, model_cfg = folders.inferred(config, "init_from", scalar_head=True, policy=False)
    folders.check_rerun(workdir, config, "rm", model_cfg=model_cfg)
    d, t, rm = config.data, config.train, config.rm
    tokenizer = make_tokenizer(d.tokenizer)
    check_vocab(tokenizer, model_cfg.vocab_size)
    read = lambda path: read_comparisons(path, d, tokenizer, model_cfg.vocab_size)  # noqa: E731
    records = read(d.train)
    if d.val:
        train_recs, val_recs = records, read(d.val)
    else:
        train_recs, val_recs = batching.split_val(records, d.val_fraction, t.seed, d.train)
    if d.k:
        train_recs = subsample_k(train_recs, d.k, d.response_budget, t.seed)
    elif d.response_budget:
        raise ValueError("config.data.response_budget needs config.data.k (the K every training prompt is cut to)")
    if d.get("max_prompts", 0):
        if d.max_prompts > len(train_recs):
            raise ValueError(f"config.data.max_prompts={d.max_prompts}: the training data has {len(train_recs)} prompts")
        train_recs = train_recs[:d.max_prompts]   # the data-scaling curve (configs/ablations/rm_data.py)
    seq_len = fit_seq_len(records + val_recs, tokenizer, t.seq_len, model_cfg.n_positions)

    if rm.pairs_shuffled:
        examples, batch_size = shuffled_pairs(train_recs), rm.pair_batch_size
    else:
        examples, batch_size = train_recs, t.batch_size
    k_max = max(len(r["responses"]) for r in examples)  # pad K only to what the data needs
    mesh = sharding.make_mesh(config.mesh.shape)
    if rm.packed_rows:
        if rm.pairs_shuffled:
            raise ValueError("config.rm.packed_rows packs whole prompts; set it to 0 with config.rm.pairs_shuffled")
        sharding.check_divisible(rm.packed_rows, mesh, "config.rm.packed_rows")
        # A prompt whose K responses need more rows than packed_rows (long samples of a tuned policy in a later
        # round) widens every step to what it needs rather than stopping the run: logged below.
        batches, epoch_steps = packed_rm_batches(examples, tokenizer, rm.packed_rows, seq_len, t.seed, t.epochs,
                                                 sharding.batch_shards(mesh),
                                                 share_prompt=rm.share_prompt, grow=True)
        if batches.rows > rm.packed_rows:
            log.warning("rm: a prompt's responses need more than config.rm.packed_rows=%d rows of %d tokens; "
                        "packing %d rows per step", rm.packed_rows, seq_len, batches.rows)
    else:
        sharding.check_divisible(batch_size, mesh, "config.rm.pair_batch_size" if rm.pairs_shuffled else "config.train.batch_size")
        batches = batching.rm_batches(examples, tokenizer, batch_size, seq_len, k_max, t.seed)
        epoch_steps = max(1, math.ceil(t.epochs * len(examples) / batch_size))
    steps = t.steps or epoch_steps
    setup = train.make_setup(model_cfg, config.mesh, train.make_optimizer(config.optim, steps))
    sharding.check_divisible(config.eval.batch_rows, setup.mesh, "config.eval.batch_rows")
    log.info("rm: %d train prompts (%d examples, K <= %d), %d val prompts, seq_len %d, %d steps%s", len(train_recs),
             len(examples), k_max, len(val_recs), seq_len, steps,
             f" (packed: {batches.rows} rows per step)" if rm.packed_rows else "")

    gold = gold_judge(config.eval.gold_judge)
    score_texts = make_score_texts(setup.graphdef, setup.mesh, tokenizer, seq_len, config.eval.batch_rows)
    # The same training prompts (K-wise, whatever the batching) against held-out ones: the overfitting gap.
    train_probe = train_recs[:len(val_recs)]

    def evaluate(state, step):
        out = evaluate_records(score_texts, state["params"], val_recs, "rm/", gold, tokenizer)
        out = {("rm/val_loss" if k == "rm/loss" else k): v for k, v in out.items()}
        probe = evaluate_records(score_texts, state["params"], train_probe, "rm/train_")
        return {**out, "rm/train_eval_loss": probe["rm/train_loss"], "rm/train_eval_accuracy": probe["rm/train_accuracy"]}

    state = train.run(stage="rm", workdir=workdir, config=config, setup=setup, loss_fn=rm_loss, batches=batches,
                      total_steps=steps, init_params=lambda: train.params_from(setup, config.init_from),
                      evaluate=evaluate, meta={"tokenizer": d.tokenizer, "seq_len": seq_len})

    norm_path = os.path.join(workdir, "reward_norm.json")
    # Normalise on SFT samples: the responses of the RM data when the compare stage wrote it, or an SFT
    # JSONL's (prompt, response) pairs (the paper's wording: labeler demonstrations score mean 0).
    if config.norm.data:
        # The RM data's budgets: scored sequences must fit seq_len, and a TL;DR post is cut to fit them.
        pairs = [(ex["prompt"], ex["response"]) for ex in formats.read_sft(
            config.norm.data, tokenizer, max_prompt_tokens=d.max_prompt_tokens,
            max_response_tokens=d.max_response_tokens, overflow=d.overflow)]
    else:
        pairs = [(r["prompt"], y) for r in records for y in r["responses"]]
    pairs = pairs[:config.norm.num_responses]
    with jax.set_mesh(setup.mesh):
        raw = score_texts(state["params"], [p for p, _ in pairs], [y for _, y in pairs])
    norm = {**reward_norm(raw, config.norm.gain), "source": config.norm.data or d.train}
    if jax.process_index() == 0:
        formats.write_json(norm_path, norm)
    return {**metrics.final_figures(workdir, "rm"), "rm/norm_mean": load_reward_norm(workdir)["mean"],
            "rm/norm_std": load_reward_norm(workdir)["std"]}
