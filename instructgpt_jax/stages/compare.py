"""Comparison data for the reward model: K samples per prompt from the SFT policy, ranked by a labeler.

InstructGPT's labelers rank K = 4..9 responses per prompt (Ouyang et al. 2022, section 3.5). Here the
policy of `config.policy` (the SFT stage) samples K + `extra_samples` responses per RM prompt with the
KV-cache sampler (temperature 1 by default; K fixed, or uniform in k_min..k_max per prompt); the first K
distinct non-blank ones are kept (fewer when the policy repeats itself; prompts with fewer than 2 distinct
samples are dropped and counted), and one of
the embedded world's 40 simulated labelers ranks them. The output is K-wise RM JSONL, the format
formats.read_rm reads: {"prompt", "responses", "ranking", "labeler", "gold"} ("gold" is for analysis only).
A second, different labeler ranks every prompt's responses too, giving the inter-labeler agreement that
bounds the RM's held-out accuracy (the paper's 72.6%).
`config.data.first_prompt` skips that many prompts of the file, so later rounds of iterated RLHF
(pipeline `rounds`) label fresh prompts. With `config.mix_policy` (e.g. W/sft) each sample row comes from
that policy instead with probability `config.compare.mix_fraction`; "policies" in a record names each
response's source.

  instructgpt compare --config configs/compare.py --workdir W/compare   (config.policy = W/sft)
"""

from __future__ import annotations

import json
import logging
import os
import time

import jax
import ml_collections
import numpy as np

from instructgpt_jax import checkpoint, metrics, sharding
from instructgpt_jax import folders
from instructgpt_jax.data import formats, labelers
from instructgpt_jax.data import world as world_lib
from instructgpt_jax.data.packing import auto_seq_len
from instructgpt_jax.sampling import SampleConfig, generate_texts, make_generate, pick_distinct
from instructgpt_jax.tokenizer import make_tokenizer

log = logging.getLogger(__name__)


def load_world(config):
    """The world whose labelers rank: `config.world` (a world.json), else world.json beside the prompts."""
    path = config.world or os.path.join(os.path.dirname(os.path.abspath(config.data.prompts)), "world.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no world.json; the simulated labelers need the world's config "
                                "(set config.world to the world.json that `instructgpt world` wrote)")
    with open(path) as f:
        return world_lib.make_world(json.load(f)["config"], f"{path} config")


# Salts of the NumPy streams of config.compare.seed: K per prompt, and which rows the mix policy samples.
K_STREAM, MIX_STREAM = 31, 37


def _check_budget(data, available: int) -> None:
    """The prompt file holds prompts first_prompt .. first_prompt + num_prompts - 1: a labelling budget (and the
    equal budgets of the rounds ablation) is never quietly shrunk to what the file holds."""
    first, wanted = data.first_prompt, data.num_prompts
    if available < first + max(wanted, 1):
        asked = f"prompts {first}..{first + wanted - 1}" if wanted else f"prompts after the first {first}"
        raise ValueError(f"{data.prompts} has {available} prompts; config.data.first_prompt={first} and "
                         f"config.data.num_prompts={wanted} ask for {asked} (lower num_prompts: in a pipeline "
                         "config.compare.data.num_prompts, or config.comparisons_per_round and config.rounds; or "
                         "write more prompts: a larger config.world.scale)")


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Write `workdir/rm.jsonl` and `workdir/metrics.jsonl`; returns the compare/* figures.

    A workdir that already has rm.jsonl (written atomically, so complete) is left as it is.
    """
    c = config.compare
    if not config.policy:
        raise ValueError("config.policy is empty; expected the SFT stage folder (e.g. W/sft)")
    if not config.data.prompts:
        raise ValueError("config.data.prompts is empty; expected prompt JSONL (e.g. W/world/rm_prompts.jsonl)")
    if not 2 <= c.k_min <= c.k_max or c.extra_samples < 0:
        raise ValueError(f"config.compare: need 2 <= k_min ({c.k_min}) <= k_max ({c.k_max}) and extra_samples >= 0")
    folders.read_input(config.policy, "policy", policy=True)
    if config.mix_policy:
        folders.read_input(config.mix_policy, "mix_policy", policy=True)
    out_path = os.path.join(workdir, "rm.jsonl")
    folders.check_rerun(workdir, config, "compare", finished=os.path.exists(out_path))
    if os.path.exists(out_path):
        log.info("compare: %s exists; nothing to do", out_path)
        return metrics.final_figures(workdir, "compare", base=False)
    world = load_world(config)

    mesh, shardings = checkpoint.mesh_and_shardings(config.mesh)
    model_cfg, graphdef, params, meta = checkpoint.load_model(config.policy, shardings=shardings)
    tokenizer = make_tokenizer(meta.get("tokenizer", "byte"))
    prompts = list(formats.read_ppo(config.data.prompts, tokenizer, max_prompt_tokens=config.data.max_prompt_tokens,
                                    overflow=config.data.overflow, model_vocab_size=model_cfg.vocab_size))
    _check_budget(config.data, len(prompts))
    first, wanted = config.data.first_prompt, config.data.num_prompts
    prompts = prompts[first:first + wanted if wanted else None]
    prompt_len = auto_seq_len([len(tokenizer.encode_prompt(p)) for p in prompts], model_cfg.n_positions)
    if prompt_len + c.max_new_tokens - 1 > model_cfg.n_positions:
        raise ValueError(f"prompts of {prompt_len} tokens + config.compare.max_new_tokens={c.max_new_tokens} exceed "
                         f"the policy's n_positions={model_cfg.n_positions}")
    sharding.check_divisible(c.batch_rows, mesh, "config.compare.batch_rows")
    generate_cfg = SampleConfig(max_new_tokens=c.max_new_tokens, temperature=c.temperature, top_k=c.top_k,
                                top_p=c.top_p, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)
    generate = make_generate(graphdef, generate_cfg, mesh)
    rng = np.random.default_rng([c.seed, K_STREAM])
    # K is drawn per prompt first; each prompt gets K + extra_samples rows (spares for duplicates), and the
    # rows of all prompts are sampled in fixed batches of batch_rows (one compiled shape, no idle rows).
    ks = rng.integers(c.k_min, c.k_max + 1, size=len(prompts))
    owner = np.repeat(np.arange(len(prompts)), ks + c.extra_samples)
    sources = [(config.policy, graphdef, params)]
    from_mix = np.zeros(len(owner), bool)
    if config.mix_policy and c.mix_fraction > 0:  # its own generator: the policy's rows are unchanged without it
        _, mix_graphdef, mix_params, _ = checkpoint.load_model(config.mix_policy, shardings=shardings)
        sources.append((config.mix_policy, mix_graphdef, mix_params))
        from_mix = np.random.default_rng([c.seed, MIX_STREAM]).random(len(owner)) < c.mix_fraction
    texts, lengths, origin = [None] * len(owner), np.zeros(len(owner), np.int64), np.where(from_mix, 1, 0)
    t0 = time.perf_counter()
    for s, (_, source_graphdef, source_params) in enumerate(sources):
        rows = np.flatnonzero(origin == s)
        if not len(rows):
            continue
        source_generate = generate if s == 0 else make_generate(source_graphdef, generate_cfg, mesh)
        key = jax.random.key(c.seed) if s == 0 else jax.random.fold_in(jax.random.key(c.seed), s)
        with jax.set_mesh(mesh):
            got, got_lengths = generate_texts(source_generate, source_params, tokenizer,
                                              [prompts[owner[i]] for i in rows], prompt_len, c.batch_rows, key, mesh,
                                              desc="compare" if len(sources) == 1 else f"compare ({sources[s][0]})",
                                              bucket=c.prompt_bucket)
        for i, text, n in zip(rows, got, got_lengths):
            texts[i], lengths[i] = text, n
    elapsed = time.perf_counter() - t0

    records, n_distinct, agree, pairs, agree_all, pairs_all = [], [], 0, 0, 0, 0
    starts = np.concatenate([[0], np.cumsum(ks + c.extra_samples)])
    for i, prompt in enumerate(prompts):
        samples = texts[starts[i]:starts[i + 1]]
        n_distinct.append(len(pick_distinct(samples, len(samples))))
        responses = pick_distinct(samples, int(ks[i]))
        source_of = {}
        for text, o in zip(samples, origin[starts[i]:starts[i + 1]]):
            source_of.setdefault(text, sources[o][0])
        if len(responses) < 2:
            continue
        labeler, other = rng.choice(world.labelers.n, 2, replace=False)
        ranks = world.rank(prompt, responses, int(labeler), rng)
        ranks_other = world.rank(prompt, responses, int(other), rng)
        a, n = labelers.untied_agreement(ranks, ranks_other)
        agree, pairs = agree + a, pairs + n
        a, n = labelers.pair_agreement(ranks, ranks_other)
        agree_all, pairs_all = agree_all + a, pairs_all + n
        gold = world.gold_score([prompt] * len(responses), responses)
        records.append({"prompt": prompt, "responses": responses, "ranking": formats.ranks_to_ranking(ranks),
                        "labeler": int(labeler), "gold": [round(float(g), 4) for g in gold]})
        if len(sources) > 1:
            records[-1]["policies"] = [source_of[y] for y in responses]
    if not records:
        raise ValueError(f"no prompt of {config.data.prompts} got 2 distinct samples from {config.policy}; "
                         "raise config.compare.extra_samples or the temperature")
    figures = {
        "compare/prompts": len(records),
        "compare/dropped": len(prompts) - len(records),
        "compare/mean_k": float(np.mean([len(r["responses"]) for r in records])),
        "compare/distinct_fraction": float(np.sum(n_distinct) / len(texts)),
        "compare/gold_score": float(np.mean([g for r in records for g in r["gold"]])),
        "compare/response_length": float(np.mean([len(tokenizer.encode_response(y)) for r in records for y in r["responses"]])),
        "compare/labeler_agreement": agree / max(pairs, 1),
        "compare/labeler_agreement_all": agree_all / max(pairs_all, 1),
        "compare/samples_per_s": len(texts) / elapsed,
        "compare/tokens_per_s": float(lengths.sum()) / elapsed,
        "compare/policy_step": int(meta["step"]),  # which checkpoint of config.policy sampled
    }
    if len(sources) > 1:
        figures["compare/mix_share"] = float(np.mean([p != config.policy for r in records for p in r["policies"]]))
    log.info("compare: %s", figures)
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))
        writer = metrics.MetricWriter(workdir)
        writer.truncate_after(-1)
        writer.write(0, figures)
        writer.close()
        formats.write_jsonl(out_path, records)  # last: its presence marks the stage complete
    return figures
