"""Iterated RLHF: rounds 2..R of comparisons -> reward model -> PPO-ptx, each on the current best policy.

Steps 2 and 3 of InstructGPT can be repeated (Ouyang et al. 2022, section 3.1): labelers compare samples of
the newest policy, the RM is retrained on every comparison so far, and PPO continues. The RM then sees the
policy's new distribution, which its first version never did (reward over-optimisation exploits exactly
that gap). Round 1 is the pipeline's own compare -> rm -> ppo_ptx stages; round r >= 2 lives in
W/round_<r>/ and has three stages, each resumable like every other pipeline stage:

- compare: K samples per fresh RM prompt (prompts (r-1)*B .. r*B-1 of W/world/rm_prompts.jsonl, B =
  `comparisons_per_round`) from round r-1's policy (W/ppo_ptx, then W/round_<r-1>/ppo), a share
  `round_sft_mix` of them from SFT, ranked by the simulated labelers (stages.compare.run). Then rm_train.jsonl =
  every earlier round's comparisons + this round's minus a held-out part, rm_val.jsonl = that part (each
  comparison exactly once over the two), samples.jsonl = this round's responses.
- rm: first the previous round's RM is scored on this round's comparisons (stale_rm.json: its pairwise
  accuracy on the newest policy's samples, i.e. how stale it had become), then stages.rm.run on rm_train.jsonl
  from SFT (`round_rm_init` "sft") or from the previous RM ("previous"), validated on rm_val.jsonl (the
  same held-out pairs, so stale and new accuracy compare), normalised on samples.jsonl (the current
  policy's samples score mean 0, as SFT's did in round 1).
- ppo: PPO-ptx (config.ppo_ptx) from round r-1's policy; the value function starts as this round's RM, as
  in round 1 (the previous value head was fitted to the previous RM's rewards, on another scale); rewards
  from this round's RM; the KL reference stays SFT (`ref_policy`), so the anchor never drifts.
"""

from __future__ import annotations

import copy
import json
import os

import jax
import ml_collections

from instructgpt_jax import metrics, reward, stages, train
from instructgpt_jax.config_base import rm_start, separate_rm
from instructgpt_jax.data.batching import split_val
from instructgpt_jax.data.formats import write_json, write_jsonl
from instructgpt_jax.data.world import gold_judge
from instructgpt_jax.tokenizer import make_tokenizer

KINDS = ("compare", "rm", "ppo")


def stage_names(rounds: int) -> list[str]:
    """The pipeline stages of rounds 2..R, in order: round_2/compare, round_2/rm, round_2/ppo, round_3/..."""
    return [f"round_{r}/{kind}" for r in range(2, rounds + 1) for kind in KINDS]


def policy_folder(r: int) -> str:
    """Stage folder (relative to W) of round r's final policy."""
    return "ppo_ptx" if r == 1 else f"round_{r}/ppo"


def rm_folder(r: int) -> str:
    return "rm" if r == 1 else f"round_{r}/rm"


def compare_folder(r: int) -> str:
    return "compare" if r == 1 else f"round_{r}/compare"


def budget(config) -> int:
    """RM prompts compared per round: `comparisons_per_round`, else the compare stage's num_prompts."""
    return config.comparisons_per_round or config.compare.data.num_prompts


def stage_configs(config, workdir: str) -> dict:
    """Configs of the stages of rounds 2..R, with their input paths under `workdir` (copies)."""
    if config.round_rm_init not in ("sft", "previous"):
        raise ValueError(f"config.round_rm_init={config.round_rm_init!r}; expected 'sft' or 'previous'")
    if not 0.0 <= config.round_sft_mix <= 1.0:
        raise ValueError(f"config.round_sft_mix={config.round_sft_mix}; expected a share in [0, 1]")
    if config.rounds > 1 and not budget(config):
        raise ValueError("config.rounds > 1 needs a labelling budget: set config.comparisons_per_round > 0 "
                         "(config.compare.data.num_prompts = 0 means every prompt, leaving none for round 2)")
    w = lambda *p: os.path.join(workdir, *p)  # noqa: E731
    separate = separate_rm(config)  # round 1's RM had its own preset (rm_model)
    out = {}
    for r in range(2, config.rounds + 1):
        compare = copy.deepcopy(config.compare)
        compare.unlock()
        compare.policy, compare.data.prompts = w(policy_folder(r - 1)), w("world", "rm_prompts.jsonl")
        compare.data.num_prompts, compare.data.first_prompt = budget(config), (r - 1) * budget(config)
        compare.compare.seed = config.compare.compare.seed + r - 1
        if config.round_sft_mix > 0:
            compare.mix_policy, compare.compare.mix_fraction = w("sft"), config.round_sft_mix
        out[f"round_{r}/compare"] = ml_collections.ConfigDict({
            "compare": compare,
            "previous": [w(compare_folder(q), "rm.jsonl") for q in range(1, r)],
            "val_fraction": config.rm.data.val_fraction, "seed": config.rm.train.seed,
        })
        rm = copy.deepcopy(config.rm)
        rm.unlock()
        if separate:
            rm.model.preset = config.rm_model
        rm.init_from = w(rm_start(config)) if config.round_rm_init == "sft" else w(rm_folder(r - 1))
        data = w(compare_folder(r))
        rm.data.train, rm.data.val, rm.norm.data = (os.path.join(data, f) for f in ("rm_train.jsonl", "rm_val.jsonl",
                                                                                     "samples.jsonl"))
        out[f"round_{r}/rm"] = ml_collections.ConfigDict({"rm": rm, "stale_rm": w(rm_folder(r - 1)),
                                                          "fresh": os.path.join(data, "rm.jsonl")})
        ppo = copy.deepcopy(config.ppo_ptx)
        ppo.unlock()
        ppo.init_policy, ppo.ref_policy = w(policy_folder(r - 1)), w("sft")
        ppo.init_value = ppo.reward_model = w(rm_folder(r))
        ppo.data.prompts, ppo.data.eval_prompts = w("world", "ppo.jsonl"), w("world", "eval.jsonl")
        ppo.train.seed = config.ppo_ptx.train.seed + r - 1  # fresh prompt order and sampling keys each round
        out[f"round_{r}/ppo"] = ppo
    return out


def run_stage(stage: str, cfg, workdir: str):
    """Run one round stage (`round_<r>/<kind>`) into W/round_<r>/<kind>."""
    stage_dir = os.path.join(workdir, stage)
    kind = os.path.basename(stage)
    if kind == "compare":  # compare.run refuses a budget the prompt file cannot fill: budgets stay equal
        figures = stages.compare.run(cfg.compare, stage_dir)
        return {**figures, **accumulate(list(cfg.previous), os.path.join(stage_dir, "rm.jsonl"), cfg.val_fraction,
                                        cfg.seed, stage_dir)}
    if kind == "rm":
        stale = stale_accuracy(cfg.rm, cfg.stale_rm, {"": cfg.rm.data.val, "_all": cfg.fresh})
        if jax.process_index() == 0:
            write_json(os.path.join(stage_dir, "stale_rm.json"), stale)
        return {**stale, **stages.rm.run(cfg.rm, stage_dir)}
    if kind == "ppo":
        return stages.ppo.run(cfg, stage_dir)
    raise ValueError(f"unknown round stage {stage!r}; expected round_<r>/{{{','.join(KINDS)}}}")


def _read_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line for line in f if line.strip()]


def accumulate(previous: list[str], fresh: str, val_fraction: float, seed: int, out_dir: str) -> dict:
    """rm_train.jsonl (earlier rounds' comparisons + this round's but a held-out part), rm_val.jsonl (that part)
    and samples.jsonl (this round's responses as {"prompt", "response"}: the RM's normalisation samples)."""
    older = [json.loads(line) for path in previous for line in _read_lines(path)]
    new = [json.loads(line) for line in _read_lines(fresh)]
    train, val = split_val(new, val_fraction, seed, fresh)
    if jax.process_index() == 0:
        write_jsonl(os.path.join(out_dir, "rm_val.jsonl"), val)
        write_jsonl(os.path.join(out_dir, "samples.jsonl"),
                    [{"prompt": r["prompt"], "response": y} for r in new for y in r["responses"]])
        write_jsonl(os.path.join(out_dir, "rm_train.jsonl"), older + train)
    return {"compare/accumulated": len(older) + len(new), "compare/fresh_train": len(train),
            "compare/fresh_val": len(val)}


def stale_accuracy(rm_cfg, rm_dir: str, paths: dict) -> dict:
    """The RM of `rm_dir` on K-wise RM JSONL files: {rm/stale_accuracy<suffix>, ...} for each (suffix, path)."""
    d = rm_cfg.data
    tokenizer = make_tokenizer(d.tokenizer)
    model_cfg = train.model_config(rm_cfg.model, scalar_head=True)
    sets = {suffix: stages.rm.read_comparisons(path, d, tokenizer, model_cfg.vocab_size) for suffix, path in paths.items()}
    seq_len = stages.rm.fit_seq_len([r for records in sets.values() for r in records], tokenizer, rm_cfg.train.seq_len,
                                 model_cfg.n_positions)
    setup = train.make_setup(model_cfg, rm_cfg.mesh, train.make_optimizer(rm_cfg.optim, 1))
    params = train.params_from(setup, rm_dir)
    score_texts = reward.make_score_texts(setup.graphdef, setup.mesh, tokenizer, seq_len, rm_cfg.eval.batch_rows)
    gold = gold_judge(rm_cfg.eval.gold_judge)
    out = {"rm/stale_from": rm_dir}
    with jax.set_mesh(setup.mesh):
        for suffix, records in sets.items():
            figures = reward.evaluate_records(score_texts, params, records, "stale/", gold, tokenizer)
            out[f"rm/stale_accuracy{suffix}"] = figures["stale/accuracy"]
            out[f"rm/stale_loss{suffix}"] = figures["stale/loss"]
            if gold is not None:
                out[f"rm/stale_gold_accuracy{suffix}"] = figures["stale/gold_accuracy"]
    return out


def _read_json(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _last(workdir: str, stage: str, key: str):
    values = [row[key] for row in metrics.read_metrics(os.path.join(workdir, stage)) if key in row]
    return values[-1] if values else None


def round_figures(workdir: str, rounds: int, summary: dict) -> list[dict]:
    """One entry per round for W/summary.json: the round's policy as evaluate.py measured it (gold, win rate
    and KL against SFT, RM score under round 1's RM: one yardstick for every round), its own RM's score at
    the end of its PPO (`rm_score_own`), the new RM's held-out accuracy on the round's comparisons and
    the previous RM's on the same pairs (`stale_rm_accuracy`; `_all`: on all of the round's comparisons), and
    `stale_rm_drop`: the previous RM's held-out accuracy in its own round minus `stale_rm_accuracy`."""
    out = []
    for r in range(1, rounds + 1):
        name = "ppo_ptx" if r == 1 else f"round_{r}"
        policy = summary.get("policies", {}).get(name, {})
        stale = _read_json(os.path.join(workdir, rm_folder(r), "stale_rm.json"))
        out.append({
            "round": r, "policy": policy_folder(r), "rm": rm_folder(r),
            "gold": policy.get("gold"), "win_rate": policy.get("win_rate"), "kl": policy.get("kl"),
            "rm_score": policy.get("rm_score"), "length": policy.get("length"),
            "rm_score_own": _last(workdir, policy_folder(r), "ppo/eval_score"),
            "rm_accuracy": _last(workdir, rm_folder(r), "rm/accuracy"),
            "rm_gold_accuracy": _last(workdir, rm_folder(r), "rm/gold_accuracy"),
            "stale_rm_accuracy": stale.get("rm/stale_accuracy"),
            "stale_rm_gold_accuracy": stale.get("rm/stale_gold_accuracy"),
            "stale_rm_accuracy_all": stale.get("rm/stale_accuracy_all"),
            "comparisons": _last(workdir, compare_folder(r), "compare/prompts"),
            "compare_gold": _last(workdir, compare_folder(r), "compare/gold_score"),
        })
        previous, now = (out[-2]["rm_accuracy"] if r > 1 else None), out[-1]["stale_rm_accuracy"]
        # The previous RM on its own round's held-out pairs minus on this round's: what the policy's move cost it.
        out[-1]["stale_rm_drop"] = previous - now if previous is not None and now is not None else None
    return out
