"""Evaluate a pipeline workdir's policies the way the paper does, with the embedded world's judges.

  instructgpt eval --config configs/pipeline.py:smoke --workdir W

For each policy (base GPT, SFT, PPO, PPO-ptx: stage folders under W) on the held-out prompts of
W/world/eval.jsonl, and on eval_heldout.jsonl (families and phrasings never trained on):
- win rate against SFT, judged by the simulated labelers, ties counting one half (the paper's headline
  metric, Ouyang et al. 2022 Figure 1); SFT is compared with a second, independent SFT sample;
- gold score (the world's judge standing in for human intent) and RM score (normalised with reward_norm.json);
- KL from SFT, sum_t log pi(y_t|.) - log pi_SFT(y_t|.) over the sampled response (a Monte-Carlo estimate of
  KL(pi || pi_SFT) when sampling at temperature 1, the default);
- held-out pretraining loss, and the alignment tax = that loss minus the base model's (section 4.2);
- mean response length in tokens, refusal rate on harmful prompts, refusals of benign ones.
The reward model is also checked on fresh K-wise comparisons for held-out prompts, ranked by the labelers:
pairwise accuracy and top-1 accuracy per K, on K distinct samples of the reference (SFT) policy, the kind
of comparison it was trained on (summary "rm"), and on K world-made candidates (references, refusals,
junk: "rm"["world_candidates"]). Samples go to W/eval/<policy>.jsonl,
figures to W/summary.json. Sampling keys, labelers and their noise are the same for every policy.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from instructgpt_jax import checkpoint, metrics, ppo, sharding
from instructgpt_jax.model import abstract_model, positions_from_mask
from instructgpt_jax.pretrain import lm_loss
from instructgpt_jax.sampling import SampleConfig, left_pad, make_generate

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """`config.eval`, checked once at the boundary."""

    policies: tuple[str, ...] = ("base:pretrain", "sft:sft", "ppo:ppo", "ppo_ptx:ppo_ptx")  # name:stage folder
    reference: str = "sft"  # policy the win rate and KL are measured against
    reward_model: str = "rm"  # stage folder with the RM checkpoint and reward_norm.json
    prompts: int = 256  # from eval.jsonl
    heldout_prompts: int = 256  # from eval_heldout.jsonl
    batch_size: int = 32
    prompt_len: int = 128  # most prompt tokens; batches are padded to the longest eval prompt, rounded up to 16
    max_new_tokens: int = 48
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    rm_prompts: int = 64  # held-out prompts per K for the RM accuracy-by-K sets
    rm_k: tuple[int, ...] = (2, 4, 6, 9)
    corpus: str = "shakespeare"
    corpus_heldout_fraction: float = 0.05
    heldout_batches: int = 8  # pretraining held-out windows (batch_size x heldout_seq_len)
    heldout_seq_len: int = 128

    def __post_init__(self):
        names = [p.partition(":")[0] for p in self.policies]
        if any(":" not in p for p in self.policies) or len(set(names)) != len(names):
            raise ValueError(f"config.eval.policies={self.policies!r}; expected distinct 'name:stage_folder' entries")
        if self.reference not in names:
            raise ValueError(f"config.eval.reference={self.reference!r} is not one of the policies {names}")
        if self.temperature < 0:
            raise ValueError(f"config.eval.temperature={self.temperature}; expected >= 0")

    @property
    def folders(self) -> dict[str, str]:
        return dict(p.split(":", 1) for p in self.policies)


def eval_config(section) -> EvalConfig:
    d = section.to_dict() if hasattr(section, "to_dict") else dict(section)
    fields = {f.name for f in dataclasses.fields(EvalConfig)}
    unknown = sorted(set(d) - fields - {"mesh"})
    if unknown:
        raise ValueError(f"config.eval has unknown keys {unknown}; expected some of {sorted(fields)}")
    return EvalConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in fields})


# ---------------------------------------------------------------- jitted pieces


def score_samples(graphdef, rm_graphdef, prompt_len: int, params, ref_params, rm_params, sample, prompt_mask):
    """Per row: KL from the reference summed over the response (T=1 logprobs) and the RM's raw score."""
    response, response_mask = sample["response"], sample["response_mask"]
    attention_mask = jnp.concatenate([prompt_mask.astype(bool), response_mask], axis=1)
    inputs = (sample["tokens"], positions_from_mask(attention_mask), attention_mask)

    def logprobs(p):
        model = nnx.merge(graphdef, p)
        return ppo.response_logprobs(model.logits(ppo.response_hidden(model, *inputs, prompt_len)), response, 1.0)[0]

    kl = jnp.where(response_mask, logprobs(params) - logprobs(ref_params), 0.0).sum(-1)
    rm = nnx.merge(rm_graphdef, rm_params)
    h, _ = rm.trunk(*inputs)
    return {"kl": kl, "rm_raw": rm.score(h, prompt_len + sample["lengths"] - 1)}  # read at the last response token


def heldout_nll(graphdef, params, tokens):
    """Mean next-token loss of a batch of pretraining windows (the alignment tax's measure)."""
    return lm_loss(nnx.merge(graphdef, params), tokens)[0]


def rm_scores(rm_graphdef, rm_params, tokens, mask):
    """Raw RM scores of left-padded (prompt + response) rows, read at the last slot (EOS)."""
    h, _ = nnx.merge(rm_graphdef, rm_params).trunk(tokens, positions_from_mask(mask), mask)
    return nnx.merge(rm_graphdef, rm_params).score(h, jnp.full(tokens.shape[:1], tokens.shape[1] - 1))


# ---------------------------------------------------------------- host side


def _read_eval(path: str, n: int) -> list[dict]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file (run the world stage: instructgpt world)")
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if not rows:
        raise ValueError(f"{path} has no prompts")
    return rows[:n]


def _batches(rows: list, batch_size: int):
    """Fixed-size batches (the last padded by repeating its first row), so everything compiles once."""
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        yield chunk + [chunk[0]] * (batch_size - len(chunk)), len(chunk)


def sample_policy(generate, score, params, ref_params, rm_params, prompts, tokenizer, ec: EvalConfig, mesh, seed,
                  prompt_len: int):
    """Responses, lengths, KL and raw RM scores of one policy on `prompts`, left-padded to `prompt_len`."""
    out = {"response": [], "length": [], "kl": [], "rm_raw": []}
    for b, (chunk, n) in enumerate(_batches(prompts, ec.batch_size)):
        tokens, mask = left_pad([tokenizer.encode_prompt(p) for p in chunk], tokenizer.pad_id, prompt_len)
        batch = sharding.put_global({"prompt_tokens": tokens, "prompt_mask": mask}, mesh)
        rng = jax.random.fold_in(jax.random.key(seed), b)
        sample = generate(params, batch["prompt_tokens"], batch["prompt_mask"], rng)
        scored = sharding.to_host(score(params, ref_params, rm_params, sample, batch["prompt_mask"]))
        host = sharding.to_host({k: sample[k] for k in ("response", "response_mask", "lengths")})
        out["response"] += [tokenizer.decode(r[m]) for r, m in zip(host["response"][:n], host["response_mask"][:n])]
        out["length"] += host["lengths"][:n].tolist()
        out["kl"] += scored["kl"][:n].tolist()
        out["rm_raw"] += scored["rm_raw"][:n].tolist()
    return out


def _mean(x) -> float | None:
    return float(np.mean(x)) if len(x) else None


def _stderr(x) -> float | None:
    return float(np.std(x) / np.sqrt(len(x))) if len(x) > 1 else None


def policy_figures(world, rows, responses, lengths, kl, rm, wins, suffix="") -> dict:
    """Gold, RM, win rate, KL, length, refusals (harmful and benign) and per-family gold of one prompt set."""
    prompts = [r["prompt"] for r in rows]
    gold = np.asarray(world.gold_score(prompts, responses), np.float64)
    harmful = np.array([world.is_harmful(p) for p in prompts])
    refused = np.array([world.is_refusal(y) for y in responses])
    families = [r.get("family") or world.family_of(r["prompt"]) for r in rows]
    by_family = {f: float(np.mean(gold[[g == f for g in families]])) for f in sorted(set(families))}
    return {
        f"gold{suffix}": _mean(gold), f"gold{suffix}_stderr": _stderr(gold),
        f"rm_score{suffix}": _mean(rm), f"win_rate{suffix}": _mean(wins), f"win_rate{suffix}_stderr": _stderr(wins),
        f"kl{suffix}": _mean(kl), f"length{suffix}": _mean(lengths),
        f"refusal_rate{suffix}": _mean(refused[harmful]), f"benign_refusal_rate{suffix}": _mean(refused[~harmful]),
        f"gold{suffix}_by_family": by_family,
    }, gold


def rm_accuracy(world, rm_graphdef, rm_params, norm, tokenizer, rows, ec: EvalConfig, mesh, samples=None) -> dict:
    """RM agreement with labeler rankings of K responses per held-out prompt, for each K of `ec.rm_k`.

    The responses are the first K of `samples[i]` (distinct policy samples for rows[i]; a prompt with fewer
    than K is left out of that K, and counted), else K world-made candidates.
    """
    rng = np.random.default_rng([ec.seed, 7])
    items, groups = [], []  # items: (prompt, response); groups: (K, slice, labeler ranks, gold)
    for k in ec.rm_k:
        for i, r in enumerate(rows[:ec.rm_prompts]):
            if samples is not None and len(samples[i]) < k:
                continue
            responses = world.candidates(r["prompt"], k, rng) if samples is None else samples[i][:k]
            ranks = world.rank(r["prompt"], responses, int(rng.integers(world.labelers.n)), rng)
            groups.append((k, slice(len(items), len(items) + k), ranks, world.gold_score([r["prompt"]] * k, responses)))
            items += [(r["prompt"], y) for y in responses]
    if not items:  # a policy that repeats itself: no prompt with 2 distinct samples
        log.warning("RM accuracy: none of %d held-out prompts has %d distinct samples", len(rows), min(ec.rm_k))
        return {"accuracy": None, "gold_accuracy": None, "accuracy_by_k": {}, "top1_by_k": {}, "prompts_per_k": {}}
    seqs = [tokenizer.encode_prompt(p) + tokenizer.encode_response(y) for p, y in items]
    seq_len = -(-max(len(s) for s in seqs) // 32) * 32  # one length for all batches: one compile
    score = jax.jit(lambda p, t, m: rm_scores(rm_graphdef, p, t, m))
    scores = []
    for chunk, n in _batches(seqs, ec.batch_size):
        tokens, mask = left_pad(chunk, tokenizer.pad_id, seq_len)
        batch = sharding.put_global({"tokens": tokens, "mask": mask}, mesh)
        scores += sharding.to_host(score(rm_params, batch["tokens"], batch["mask"]))[:n].tolist()
    scores = (np.asarray(scores) - norm["mean"]) / norm["std"]
    per_k = {k: {"right": 0, "pairs": 0, "gold_right": 0, "gold_pairs": 0, "top1": []} for k in ec.rm_k}
    for k, sl, ranks, gold in groups:
        s, acc = scores[sl], per_k[k]
        for i in range(k):
            for j in range(i + 1, k):
                if ranks[i] != ranks[j]:  # labeler ties carry no preference
                    acc["pairs"] += 1
                    acc["right"] += int((s[i] - s[j]) * (ranks[j] - ranks[i]) > 0)
                if abs(gold[i] - gold[j]) > 1e-6:
                    acc["gold_pairs"] += 1
                    acc["gold_right"] += int((s[i] - s[j]) * (gold[i] - gold[j]) > 0)
        acc["top1"].append(float(ranks[int(np.argmax(s))] == ranks.min()))
    total = sum(a["right"] for a in per_k.values()) / max(sum(a["pairs"] for a in per_k.values()), 1)
    gold_total = sum(a["gold_right"] for a in per_k.values()) / max(sum(a["gold_pairs"] for a in per_k.values()), 1)
    return {
        "accuracy": total, "gold_accuracy": gold_total,
        # Only the K that some prompt had enough distinct samples for.
        "accuracy_by_k": {str(k): a["right"] / max(a["pairs"], 1) for k, a in per_k.items() if a["top1"]},
        "top1_by_k": {str(k): float(np.mean(a["top1"])) for k, a in per_k.items() if a["top1"]},
        "prompts_per_k": {str(k): len(a["top1"]) for k, a in per_k.items() if a["top1"]},
    }


def distinct_samples(generate, params, tokenizer, prompts, prompt_len, ec: EvalConfig, mesh, rng) -> list[list[str]]:
    """Up to max(ec.rm_k) distinct non-blank samples per prompt, in sampling order, from 2 x max(ec.rm_k) draws
    (as the compare stage picks them)."""
    from instructgpt_jax.compare import pick_distinct
    from instructgpt_jax.sft import generate_texts

    k = max(ec.rm_k)
    texts, _ = generate_texts(generate, params, tokenizer, [p for p in prompts for _ in range(2 * k)], prompt_len,
                              ec.batch_size, rng, mesh)
    return [pick_distinct(texts[i * 2 * k:(i + 1) * 2 * k], k) for i in range(len(prompts))]


def mesh_and_shardings(mesh_cfg):
    """(mesh, fn(model config) -> param shardings) for loading checkpoints straight into their shards."""
    mesh = sharding.make_mesh(mesh_cfg.shape)
    rules = tuple(tuple(r) for r in mesh_cfg.rules)
    return mesh, lambda cfg: sharding.param_shardings(abstract_model(cfg)[1], mesh, rules)


def stage_finals(workdir: str) -> dict:
    """Last logged value of every metric of every stage folder (e.g. sft/loss, rm/accuracy)."""
    out = {}
    for name in sorted(os.listdir(workdir)) if os.path.isdir(workdir) else []:
        rows = metrics.read_metrics(os.path.join(workdir, name))
        last = {}
        for row in rows:
            last.update({k: v for k, v in row.items() if k not in ("step", "time") and isinstance(v, (int, float))})
        if last:
            out[name] = last
    return out


def run(config, workdir: str) -> dict:
    """Evaluate every policy of `config.eval.policies` under `workdir`; writes W/eval/*.jsonl and W/summary.json."""
    from instructgpt_jax import reward
    from instructgpt_jax.config_base import mesh_config
    from instructgpt_jax.data import corpus as corpus_lib
    from instructgpt_jax.data.formats import write_jsonl
    from instructgpt_jax.data.world import make_world
    from instructgpt_jax.tokenizer import check_vocab, make_tokenizer

    ec = eval_config(config.eval)
    world = make_world(config.world)
    tokenizer = make_tokenizer(config.world.tokenizer)
    rows = {"eval": _read_eval(os.path.join(workdir, "world", "eval.jsonl"), ec.prompts),
            "heldout": _read_eval(os.path.join(workdir, "world", "eval_heldout.jsonl"), ec.heldout_prompts)}
    folders = {name: os.path.join(workdir, folder) for name, folder in ec.folders.items()}
    missing = [f"{n} ({d})" for n, d in folders.items() if checkpoint.latest_step(os.path.join(d, "checkpoints")) is None]
    if missing:
        raise FileNotFoundError(f"no checkpoint for policies {missing}: run those stages first")

    rm_dir = os.path.join(workdir, ec.reward_model)
    norm = reward.load_reward_norm(rm_dir)
    mesh_cfg = config.eval.get("mesh") or mesh_config()
    mesh, shardings = mesh_and_shardings(mesh_cfg)

    text = corpus_lib.load_corpus(ec.corpus, heldout_fraction=ec.corpus_heldout_fraction)
    heldout_ids = np.asarray(tokenizer.encode(text.heldout), np.int32)
    sample_cfg = SampleConfig(max_new_tokens=ec.max_new_tokens, temperature=ec.temperature, top_p=ec.top_p,
                              eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)
    # Checkpoints are restored outside `set_mesh`: building abstract models under a mesh makes flax place
    # the logical names on it. Restores land directly in their shards (`shardings`).
    rm_cfg, rm_graphdef, rm_params, _ = checkpoint.load_model(rm_dir, shardings=shardings)
    ref_cfg, graphdef, ref_params, _ = checkpoint.load_model(folders[ec.reference], shardings=shardings)
    check_vocab(tokenizer, ref_cfg.vocab_size)
    nll = jax.jit(lambda p, t: heldout_nll(graphdef, p, t))
    generate = make_generate(graphdef, sample_cfg)
    prompts = {split: [r["prompt"] for r in rs] for split, rs in rows.items()}
    longest = max(len(tokenizer.encode_prompt(p)) for ps in prompts.values() for p in ps)
    if longest > ec.prompt_len:
        raise ValueError(f"an eval prompt has {longest} tokens; config.eval.prompt_len={ec.prompt_len} (raise it)")
    prompt_len = min(-(-longest // 16) * 16, ec.prompt_len)  # one compiled shape, no more padding than needed
    score = jax.jit(lambda *a: score_samples(graphdef, rm_graphdef, prompt_len, *a))
    labeler_rng = lambda: np.random.default_rng([ec.seed, 3])  # noqa: E731 - the same judges for every policy
    labeler_ids = {split: labeler_rng().integers(world.labelers.n, size=len(rs)) for split, rs in rows.items()}
    with jax.set_mesh(mesh):
        # The reference's second sample, which it is compared with (its win rate against itself is ~50%).
        baseline = {split: sample_policy(generate, score, ref_params, ref_params, rm_params, prompts[split], tokenizer,
                                         ec, mesh, ec.seed + 1, prompt_len)["response"] for split in rows}
    results, samples = {}, {}
    for name, folder in folders.items():
        cfg, _, params, meta = checkpoint.load_model(folder, shardings=shardings)
        if cfg.architecture() != ref_cfg.architecture():  # dropout, remat, dtype may differ: evaluation runs the reference's graph
            raise ValueError(f"policy {name} ({folder}) has model {cfg}, the reference {ec.reference} has {ref_cfg}")
        figures = {"stage": ec.folders[name], "step": int(meta["step"]), "n": len(rows["eval"]),
                   "n_heldout": len(rows["heldout"])}
        with jax.set_mesh(mesh):
            for split, suffix in (("eval", ""), ("heldout", "_heldout")):
                s = sample_policy(generate, score, params, ref_params, rm_params, prompts[split], tokenizer, ec, mesh,
                                  ec.seed, prompt_len)
                rm = (np.asarray(s["rm_raw"]) - norm["mean"]) / norm["std"]
                wins = world.preferences(prompts[split], s["response"], baseline[split], labeler_rng(), labeler_ids[split])
                f, gold = policy_figures(world, rows[split], s["response"], s["length"], s["kl"], rm, wins, suffix)
                figures.update(f)
                samples.setdefault(name, []).extend(
                    {"split": split, "prompt": r["prompt"], "family": r.get("family"), "response": y,
                     "reference_response": b, "gold": float(gd), "rm_score": float(sc), "kl": float(k),
                     "length": int(n), "win": float(w)}
                    for r, y, b, gd, sc, k, n, w in zip(rows[split], s["response"], baseline[split], gold, rm, s["kl"],
                                                         s["length"], wins))
            losses = [nll(params, sharding.put_global({"t": corpus_lib.eval_windows(
                heldout_ids, i, ec.batch_size, ec.heldout_seq_len)}, mesh)["t"]) for i in range(ec.heldout_batches)]
            figures["pretrain_loss"] = float(np.mean(sharding.to_host(losses)))
        results[name] = figures
        log.info("eval %s: win rate %.3f, gold %.3f, KL %.2f", name, figures["win_rate"], figures["gold"], figures["kl"])
    with jax.set_mesh(mesh):
        rm_rows = rows["eval"][:ec.rm_prompts]
        policy_samples = distinct_samples(generate, ref_params, tokenizer, [r["prompt"] for r in rm_rows],
                                          prompt_len, ec, mesh, jax.random.key(ec.seed + 2))
        rm_figures = rm_accuracy(world, rm_graphdef, rm_params, norm, tokenizer, rm_rows, ec, mesh, policy_samples)
        rm_figures["world_candidates"] = rm_accuracy(world, rm_graphdef, rm_params, norm, tokenizer, rm_rows, ec, mesh)
    base = results.get("base", {}).get("pretrain_loss")
    for figures in results.values():
        figures["alignment_tax"] = None if base is None else figures["pretrain_loss"] - base
    summary = {"policies": results, "rm": rm_figures, "stages": stage_finals(workdir),
               "eval": dataclasses.asdict(ec) | {"mesh": list(mesh_cfg.shape), "tokenizer": config.world.tokenizer}}
    if jax.process_index() == 0:
        for name, recs in samples.items():
            write_jsonl(os.path.join(workdir, "eval", f"{name}.jsonl"), recs)
        write_summary(workdir, summary)
    return summary


def write_summary(workdir: str, summary: dict) -> None:
    """W/summary.json, written atomically (a reader never sees half a file), merged with what is there."""
    from instructgpt_jax.data.formats import write_json

    path = os.path.join(workdir, "summary.json")
    old = {}
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
    write_json(path, {**old, **summary})
