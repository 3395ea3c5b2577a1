"""Evaluate a pipeline workdir's policies the way the paper does, with the embedded world's judges.

  instructgpt eval --config configs/pipeline.py:smoke --workdir W

For each policy (base GPT, GPT prompted, SFT, PPO, PPO-ptx: stage folders under W) on the held-out prompts
of W/world/eval.jsonl, and on eval_heldout.jsonl (families and phrasings never trained on):
- win rate against SFT, judged by the simulated labelers, ties counting one half (the paper's headline
  metric, Ouyang et al. 2022 Figure 1): each answer against `baseline_samples` independent SFT samples of its
  prompt, one verdict each (the same labeler, fresh noise), averaged; SFT's own answer is judged the same way.
  Each policy answers every prompt `policy_samples` times (1 by default: one sampling draw per policy); every
  figure below averages a prompt's answers, and intervals are over prompts;
- gold score (the world's judge standing in for human intent) and RM score (normalised with reward_norm.json);
  the gold difference from SFT on the same prompts and sampling keys, with 95% intervals (paired), and from the
  mean gold of the win rate's baseline draws (`gold_vs_baseline`, overall and per family; summary "baseline"
  holds those draws' own gold), so gold and win rate can be read against the same SFT samples;
- KL from SFT, sum_t log pi(y_t|.) - log pi_SFT(y_t|.) over the sampled response (a Monte-Carlo estimate of
  KL(pi || pi_SFT) when sampling at temperature 1, the default);
- held-out pretraining loss, and the alignment tax = that loss minus the base model's (section 4.2);
- mean response length in tokens, refusal rate on harmful prompts, refusals of benign ones;
- gold per family and per kind of prompt, and Figure 4's metadata rates (eval_figures.py);
- per family, the phrases a policy took up against SFT's baseline draws (`phrase_shifts`, every policy but the
  reference): where a policy games the RM, the phrase shows, with the gold of the answers that use it.
"GPT prompted" (`prompted`) is the paper's few-shot-prompted GPT-3 baseline: the base model whose prompts
get `prompt_prefix`, two instruction/answer pairs in prose. The prefixed text is what it sees, so its KL
from SFT is measured on the prefixed prompt (both models conditioned on the prefix); its RM score, gold,
labelers and W/eval records use the original prompt, like every other policy's.
The reward model is also checked on fresh K-wise comparisons for held-out prompts, ranked by the labelers:
pairwise accuracy and top-1 accuracy per K, on K distinct samples of the reference (SFT) policy, the kind
of comparison it was trained on (summary "rm"), and on K world-made candidates (references, refusals,
junk: "rm"["world_candidates"]); per family beside a second labeler's agreement with the first on the
same responses. Best-of-n ("rm"["best_of_n"]): on the same prompts, the gold of the RM's pick among n raw
SFT samples against the gold-best of the same n, and the labelers' win rate of each pick against the
reference's answer (the oracle's is what re-ranking SFT's own samples reaches: a ceiling for the win rate of a
policy that stays near SFT). Samples go to W/eval/<policy>.jsonl,
figures to W/summary.json, the results table of report.md to TensorBoard's text tab (W/eval/tensorboard,
beside the stages' scalars under `tensorboard --logdir W`). Sampling keys, labelers and their noise are the
same for every policy.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from instructgpt_jax import checkpoint, eval_figures, metrics, ppo, sharding, tables
from instructgpt_jax.eval_rm import best_of_n, rm_accuracy, sample_draws
from instructgpt_jax.config_base import from_config, mesh_config
from instructgpt_jax.data import corpus as corpus_lib
from instructgpt_jax.data.batching import left_pad
from instructgpt_jax.data.formats import write_json, write_jsonl
from instructgpt_jax.data.packing import auto_seq_len
from instructgpt_jax.data.world import make_world
from instructgpt_jax.model import positions_from_mask
from instructgpt_jax.pretrain import heldout_loss
from instructgpt_jax.reward import load_reward_norm, rm_scores
from instructgpt_jax.sampling import SampleConfig, make_generate, pick_distinct
from instructgpt_jax.tokenizer import check_vocab, make_tokenizer

log = logging.getLogger(__name__)
SPLITS = (("eval", ""), ("heldout", "_heldout"))  # the prompt sets and their figures' key suffix


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """`config.eval`, checked once at the boundary; configs/eval.py holds the values."""

    policies: tuple[str, ...]  # name:stage folder of each policy evaluated
    prompted: str  # name:stage folder of a policy prompted with prompt_prefix; "" = none
    prompt_prefix: str  # what the prompted policy's prompts start with (few-shot examples)
    reference: str  # policy the win rate and KL are measured against
    reward_model: str  # stage folder with the RM checkpoint and reward_norm.json
    prompts: int  # from eval.jsonl
    heldout_prompts: int  # from eval_heldout.jsonl
    batch_size: int  # prompts sampled (and responses scored) per batch
    prompt_len: int  # most prompt tokens (prefix included); batches padded to the longest, rounded up to 16
    max_new_tokens: int  # most tokens per response
    temperature: float  # sampling temperature (0 = greedy)
    top_p: float  # nucleus sampling mass (1 = off)
    seed: int  # sampling keys, the labelers' noise and the RM comparisons' prompts
    baseline_samples: int  # independent SFT samples per prompt each answer is judged against (the win rate's baseline)
    policy_samples: int  # sampling draws of each policy per prompt; every figure averages them
    rm_prompts: int  # held-out prompts per K for the RM accuracy-by-K sets
    rm_k: tuple[int, ...]  # K of the RM accuracy-by-K sets
    best_of_n: tuple[int, ...]  # n of the best-of-n curve (SFT samples, rm_prompts); () = none
    corpus: str  # pretraining corpus of the held-out loss (the alignment tax)
    corpus_heldout_fraction: float  # share of the corpus held out
    heldout_batches: int  # pretraining held-out windows (batch_size x heldout_seq_len)
    heldout_seq_len: int  # tokens per held-out window

    def __post_init__(self):
        names = [p.partition(":")[0] for p in self.policies]
        if any(":" not in p for p in self.policies) or len(set(names)) != len(names):
            raise ValueError(f"config.eval.policies={self.policies!r}; expected distinct 'name:stage_folder' entries")
        if self.reference not in names:
            raise ValueError(f"config.eval.reference={self.reference!r} is not one of the policies {names}")
        if self.prompted and (":" not in self.prompted or self.prompted_name in names):
            raise ValueError(f"config.eval.prompted={self.prompted!r}; expected 'name:stage_folder' with a name "
                             f"that is not one of the policies {names}, or ''")
        if self.prompted and not self.prompt_prefix:
            raise ValueError("config.eval.prompted is set but config.eval.prompt_prefix is empty")
        ns = self.best_of_n
        if ns and (ns[0] != 1 or any(a >= b for a, b in zip(ns, ns[1:]))):
            raise ValueError(f"config.eval.best_of_n={ns}; expected increasing n starting at 1, or ()")
        if self.temperature < 0:
            raise ValueError(f"config.eval.temperature={self.temperature}; expected >= 0")
        if self.baseline_samples < 1:
            raise ValueError(f"config.eval.baseline_samples={self.baseline_samples}; expected at least 1")
        if self.policy_samples < 1:
            raise ValueError(f"config.eval.policy_samples={self.policy_samples}; expected at least 1")

    @property
    def prompted_name(self) -> str:
        return self.prompted.partition(":")[0]

    @property
    def folders(self) -> dict[str, str]:
        """Policy name -> stage folder, the prompted policy last."""
        return dict(p.split(":", 1) for p in self.policies + ((self.prompted,) if self.prompted else ()))


def eval_config(section) -> EvalConfig:
    """EvalConfig from `config.eval`; its `mesh` (an optional mesh section for the evaluation) is not a field."""
    return from_config(EvalConfig, {k: v for k, v in section.items() if k != "mesh"}, "config.eval")


# ---------------------------------------------------------------- jitted pieces


def score_samples(graphdef, rm_graphdef, prompt_len: int, params, ref_params, rm_params, sample, prompt_mask,
                  rm_prompt=None):
    """Per row: KL from the reference summed over the response (T=1 logprobs) and the RM's raw score.

    The RM reads the response after `rm_prompt` = (tokens, mask), left-padded to `prompt_len`, when given
    (the original prompt of a prefixed one), else after the sampled prompt, as the KL does.
    """
    response, response_mask = sample["response"], sample["response_mask"]

    def inputs_of(tokens, mask):
        attention_mask = jnp.concatenate([mask.astype(bool), response_mask], axis=1)
        return tokens, positions_from_mask(attention_mask), attention_mask

    inputs = inputs_of(sample["tokens"], prompt_mask)

    def logprobs(p):
        return ppo.response_read(nnx.merge(graphdef, p), *inputs, prompt_len, 1.0)[0]

    kl = jnp.where(response_mask, logprobs(params) - logprobs(ref_params), 0.0).sum(-1)
    if rm_prompt is not None:
        rm_tokens, rm_mask = rm_prompt
        inputs = inputs_of(jnp.concatenate([rm_tokens.astype(response.dtype), response], axis=1), rm_mask)
    # Read at the last response token (EOS when the response ended), as in training.
    return {"kl": kl, "rm_raw": rm_scores(nnx.merge(rm_graphdef, rm_params), *inputs, prompt_len + sample["lengths"] - 1)}


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
                  prompt_len: int, prefix: str = "", stream: int = 0):
    """Responses, lengths, KL and raw RM scores of one policy on `prompts`, left-padded to `prompt_len`.

    The policy sees `prefix` + prompt (KL is measured there); the RM scores the response to the prompt. The
    samples use key(seed), or fold_in(key(seed), stream) for a stream > 0 (another independent draw). With
    `score` None nothing is scored: only responses and lengths (the win rate's baseline draws).
    """
    out = {"response": [], "length": []} if score is None else {"response": [], "length": [], "kl": [], "rm_raw": []}
    key = jax.random.key(seed) if stream == 0 else jax.random.fold_in(jax.random.key(seed), stream)
    for b, (chunk, n) in enumerate(_batches(prompts, ec.batch_size)):
        tokens, mask = left_pad([tokenizer.encode_prompt(prefix + p) for p in chunk], tokenizer.pad_id, prompt_len)
        feed = {"prompt_tokens": tokens, "prompt_mask": mask}
        if prefix:
            feed["rm_tokens"], feed["rm_mask"] = left_pad([tokenizer.encode_prompt(p) for p in chunk],
                                                          tokenizer.pad_id, prompt_len)
        batch = sharding.put_global(feed, mesh)
        # Batch b samples with fold_in(key, b), folded inside the program (as generate_texts' batches).
        sample = generate(params, batch["prompt_tokens"], batch["prompt_mask"], key, b)
        host = sharding.to_host({k: sample[k] for k in ("response", "response_mask", "lengths")})
        out["response"] += [tokenizer.decode(r[m]) for r, m in zip(host["response"][:n], host["response_mask"][:n])]
        out["length"] += host["lengths"][:n].tolist()
        if score is not None:
            rm_prompt = (batch["rm_tokens"], batch["rm_mask"]) if prefix else None
            scored = sharding.to_host(score(params, ref_params, rm_params, sample, batch["prompt_mask"], rm_prompt))
            out["kl"] += scored["kl"][:n].tolist()
            out["rm_raw"] += scored["rm_raw"][:n].tolist()
    return out


def fitted_prompt_len(tokenizer, prompts: dict, prefix: str, ec: EvalConfig) -> int:
    """Tokens of the longest `prefix` + eval prompt, rounded up to 16 (at most ec.prompt_len, else an error)."""
    longest = max(len(tokenizer.encode_prompt(prefix + p)) for ps in prompts.values() for p in ps)
    if longest > ec.prompt_len:
        what = "with config.eval.prompt_prefix " if prefix else ""
        raise ValueError(f"an eval prompt {what}has {longest} tokens; config.eval.prompt_len={ec.prompt_len} "
                         "(raise it, or shorten the prefix)")
    # Rounded up to 16 and no further: padding is masked, but the length sets the prompt's and the KV cache's
    # shapes, so another length changes logits by round-off, and a sampled token can flip with them.
    return auto_seq_len([longest], ec.prompt_len)


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


# Streams of config.eval.seed besides the policies' samples, key(seed): the reference's further samples (the win
# rate's baseline: draw j of them folds j into its key, draw 0 does not), the SFT draws of RM accuracy and
# best-of-n, and (NumPy) the labeler judging each prompt.
BASELINE_SEED_OFFSET, DRAWS_SEED_OFFSET, LABELER_STREAM = 1, 2, 3


def check_world(world, workdir: str) -> None:
    """The labelers and judges of `world` must be those of the world W/world was made by (W/world/world.json):
    the same prompts ranked by other labelers would give another run's win rates."""
    path = os.path.join(workdir, "world", "world.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        made = make_world(json.load(f)["config"], f"{path} config").config
    if made == world.config:
        return
    diffs = [f"{f.name}: {getattr(made, f.name)!r} there, {getattr(world.config, f.name)!r} here"
             for f in dataclasses.fields(made) if getattr(made, f.name) != getattr(world.config, f.name)]
    raise ValueError(f"{path} was made by another world config than this evaluation's config.world "
                     f"({'; '.join(diffs[:3])}); evaluate with the config the run was made with (the same "
                     f"--config.seed and world overrides)")


def run(config, workdir: str) -> dict:
    """Evaluate every policy of `config.eval.policies` (and `prompted`) under `workdir`; writes W/eval/*.jsonl and
    W/summary.json."""
    ec = eval_config(config.eval)
    world = make_world(config.world)
    check_world(world, workdir)
    tokenizer = make_tokenizer(config.world.tokenizer)
    rows = {"eval": _read_eval(os.path.join(workdir, "world", "eval.jsonl"), ec.prompts),
            "heldout": _read_eval(os.path.join(workdir, "world", "eval_heldout.jsonl"), ec.heldout_prompts)}
    folders = {name: os.path.join(workdir, folder) for name, folder in ec.folders.items()}
    missing = [f"{n} ({d})" for n, d in folders.items() if checkpoint.latest_step(os.path.join(d, "checkpoints")) is None]
    if missing:
        raise FileNotFoundError(f"no checkpoint for policies {missing}: run those stages first")

    rm_dir = os.path.join(workdir, ec.reward_model)
    norm = load_reward_norm(rm_dir)
    mesh_cfg = config.eval.get("mesh") or mesh_config()
    mesh, shardings = checkpoint.mesh_and_shardings(mesh_cfg)

    text = corpus_lib.load_corpus(ec.corpus, heldout_fraction=ec.corpus_heldout_fraction)
    heldout_ids = tokenizer.encode_corpus(text.heldout)
    sample_cfg = SampleConfig(max_new_tokens=ec.max_new_tokens, temperature=ec.temperature, top_p=ec.top_p,
                              eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)
    # Checkpoints are restored outside `set_mesh`: building abstract models under a mesh makes flax place
    # the logical names on it. Restores land directly in their shards (`shardings`).
    rm_cfg, rm_graphdef, rm_params, _ = checkpoint.load_model(rm_dir, shardings=shardings)
    ref_cfg, graphdef, ref_params, _ = checkpoint.load_model(folders[ec.reference], shardings=shardings)
    check_vocab(tokenizer, ref_cfg.vocab_size)
    generate = make_generate(graphdef, sample_cfg, mesh)
    prompts = {split: [r["prompt"] for r in rs] for split, rs in rows.items()}
    prefixes = {name: ec.prompt_prefix if name == ec.prompted_name else "" for name in folders}
    # One compiled shape per prefix, no more padding than needed: the unprompted policies' figures do not
    # depend on whether a prompted one is evaluated beside them.
    prompt_lens = {prefix: fitted_prompt_len(tokenizer, prompts, prefix, ec) for prefix in {"", *prefixes.values()}}
    prompt_len = prompt_lens[""]
    scorers = {n: jax.jit(functools.partial(score_samples, graphdef, rm_graphdef, n))
               for n in set(prompt_lens.values())}
    # A fresh generator per use: the same judges for every policy.
    labeler_rng = lambda: np.random.default_rng([ec.seed, LABELER_STREAM])  # noqa: E731
    labeler_ids = {split: labeler_rng().integers(world.labelers.n, size=len(rs)) for split, rs in rows.items()}

    with jax.set_mesh(mesh):
        # The reference's further samples, which every answer is compared with (its own win rate is ~50%):
        # baseline[split][j] is draw j for every prompt.
        baseline = {split: [sample_policy(generate, None, ref_params, ref_params, rm_params, prompts[split],
                                          tokenizer, ec, mesh, ec.seed + BASELINE_SEED_OFFSET, prompt_len, stream=j)
                            ["response"] for j in range(ec.baseline_samples)]
                    for split in rows}

    # The baseline draws' mean gold per prompt of each split: what `gold_vs_baseline` compares each answer with.
    baseline_gold = {split: np.array([world.gold_score(prompts[split], draw) for draw in baseline[split]],
                                     np.float64).mean(0) for split in rows}
    families = {split: [eval_figures.row_family(world, r) for r in rs] for split, rs in rows.items()}

    def verdicts(split, responses, rng=None) -> np.ndarray:
        """(baseline_samples, n) labeler verdicts on `responses` to the first n prompts of `split`, row j against
        the reference's draw j: each prompt's labeler judges every draw, with fresh noise from one stream that
        starts anew for every policy (so row 0 is what one baseline sample gives); a policy's further sampling
        draws pass the stream on (`rng`), so its first draw's verdicts are those of a one-draw evaluation."""
        n, rng = len(responses), rng or labeler_rng()
        return np.stack([world.preferences(prompts[split][:n], responses, draw[:n], rng, labeler_ids[split][:n])
                         for draw in baseline[split]])

    def judge(split, responses) -> np.ndarray:
        """The win of each of `responses` against the reference: its verdicts' mean over the baseline draws."""
        return verdicts(split, responses).mean(0)

    results, samples, paired, pretrain_losses = {}, {}, {}, {}
    for name, folder in folders.items():
        cfg, _, params, meta = checkpoint.load_model(folder, shardings=shardings)
        if cfg.architecture() != ref_cfg.architecture():  # dropout, remat, dtype may differ: evaluation runs the reference's graph
            raise ValueError(f"policy {name} ({folder}) has model {cfg}, the reference {ec.reference} has {ref_cfg}")
        figures = {"stage": ec.folders[name], "step": int(meta["step"]), "n": len(rows["eval"]),
                   "n_heldout": len(rows["heldout"])}
        prefix, n_prompt = prefixes[name], prompt_lens[prefixes[name]]
        with jax.set_mesh(mesh):
            for split, suffix in SPLITS:
                # The policy's own sampling draws: draw j folds j into key(eval.seed), draw 0 does not (so one draw
                # is what every earlier evaluation sampled), and every policy uses the same keys.
                ds = [sample_policy(generate, scorers[n_prompt], params, ref_params, rm_params, prompts[split],
                                    tokenizer, ec, mesh, ec.seed, n_prompt, prefix, stream=j)
                      for j in range(ec.policy_samples)]
                responses = [d["response"] for d in ds]
                rm = (np.array([d["rm_raw"] for d in ds]) - norm["mean"]) / norm["std"]
                kl, lengths = np.array([d["kl"] for d in ds]), np.array([d["length"] for d in ds])
                rng = labeler_rng()
                each = np.stack([verdicts(split, ys, rng) for ys in responses])  # (draws, baseline draws, prompts)
                wins = each.mean((0, 1))
                f, golds = eval_figures.policy_figures(world, rows[split], responses, lengths, kl, rm, wins, suffix)
                gold = golds.mean(0)  # per prompt, over the policy's draws
                figures.update(f)
                figures.update(eval_figures.baseline_figures(gold, baseline_gold[split], families[split], suffix))
                if split == "eval" and name != ec.reference:  # what the policy took up that SFT's samples lack
                    figures["phrase_shifts"] = eval_figures.phrase_shifts(
                        families[split] * len(ds), [y for ys in responses for y in ys], golds.ravel(),
                        [draw * len(ds) for draw in baseline[split]], min_answers=5 * len(ds))
                paired[name, suffix] = gold, wins
                samples.setdefault(name, []).extend(
                    sample_record(split, r, [ys[i] for ys in responses], [draw[i] for draw in baseline[split]],
                                  golds[:, i], rm[:, i], kl[:, i], lengths[:, i], each[:, :, i])
                    for i, r in enumerate(rows[split]))
            if folder not in pretrain_losses:  # the prompted policy has its base model's parameters
                pretrain_losses[folder] = heldout_loss(graphdef, params, heldout_ids, ec.batch_size,
                                                       ec.heldout_seq_len, ec.heldout_batches, mesh)
            figures["pretrain_loss"] = pretrain_losses[folder]
        results[name] = figures
        log.info("eval %s: win rate %.3f, gold %.3f, KL %.2f", name, figures["win_rate"], figures["gold"], figures["kl"])
    with jax.set_mesh(mesh):
        rm_rows = rows["eval"][:ec.rm_prompts]
        rm_prompts = [r["prompt"] for r in rm_rows]
        # One set of raw SFT draws serves both: up to max K distinct samples from the first 2 x max K draws (as
        # the compare stage picks them) for the RM's accuracy, and the first max n for best-of-n.
        k, best_n = max(ec.rm_k), max(ec.best_of_n, default=0)
        draws = sample_draws(generate, ref_params, tokenizer, rm_prompts, max(2 * k, best_n), prompt_len, ec, mesh,
                             jax.random.key(ec.seed + DRAWS_SEED_OFFSET))
        ranked = [pick_distinct(d[:2 * k], k) for d in draws]
        rm_figures = rm_accuracy(world, rm_graphdef, rm_params, norm, tokenizer, rm_rows, ec, mesh, ranked)
        rm_figures["world_candidates"] = rm_accuracy(world, rm_graphdef, rm_params, norm, tokenizer, rm_rows, ec, mesh)
        if best_n:
            # Judged as the policies are: the same labelers against the reference's baseline draws of each prompt.
            rm_figures["best_of_n"] = best_of_n(world, rm_graphdef, rm_params, norm, tokenizer, rm_prompts,
                                                [d[:best_n] for d in draws], ec, mesh,
                                                functools.partial(judge, "eval"),
                                                families["eval"][:len(rm_rows)])
    for (name, suffix), (gold, wins) in paired.items():  # against the reference's gold on the same prompts and keys
        results[name].update(eval_figures.paired_figures(gold, paired[ec.reference, suffix][0], wins, suffix))
    base = results.get("base", {}).get("pretrain_loss")
    for figures in results.values():
        figures["alignment_tax"] = None if base is None else figures["pretrain_loss"] - base
    baseline_summary = {"samples": ec.baseline_samples}
    for split, suffix in SPLITS:
        baseline_summary.update({f"gold{suffix}": eval_figures.mean(baseline_gold[split]),
                                 f"gold{suffix}_by_family": eval_figures.by_group(baseline_gold[split], families[split],
                                                                                  ())})
    summary = {"policies": results, "rm": rm_figures, "baseline": baseline_summary, "stages": stage_finals(workdir),
               "eval": dataclasses.asdict(ec) | {"mesh": list(mesh_cfg.shape), "tokenizer": config.world.tokenizer}}
    if jax.process_index() == 0:
        for name, recs in samples.items():
            write_jsonl(os.path.join(workdir, "eval", f"{name}.jsonl"), recs)
        write_summary(workdir, summary)
        write_results_text(workdir, summary)
    return summary


def sample_record(split, row, responses, references, golds, rm_scores, kls, lengths, verdicts) -> dict:
    """One line of W/eval/<policy>.jsonl: the policy's answer(s) to one prompt against the reference's baseline
    draws `references`. `verdicts` (policy draws, baseline draws): the labeler's verdict on each pair.
    `response` is the first draw, `reference_response` the first baseline draw; gold, rm_score, kl and length
    are the means over the policy's draws and `win` the mean verdict, as the summary counts them. With several
    baseline draws `reference_responses` and `wins` (the first policy draw's verdict against each) hold them;
    with several policy draws `responses`, `golds` and `draw_wins` (each draw's mean verdict) hold them."""
    verdicts = np.asarray(verdicts, np.float64)
    out = {"split": split, "prompt": row["prompt"], "family": row.get("family"), "response": responses[0],
           "reference_response": references[0], "gold": float(np.mean(np.asarray(golds, np.float64))),
           "rm_score": float(np.mean(rm_scores)), "kl": float(np.mean(kls)),
           "length": int(lengths[0]) if len(responses) == 1 else float(np.mean(lengths)), "win": float(verdicts.mean())}
    if len(references) > 1:
        out.update(reference_responses=list(references), wins=[float(v) for v in verdicts[0]])
    if len(responses) > 1:
        out.update(responses=list(responses), golds=[float(g) for g in golds],
                   draw_wins=[float(v) for v in verdicts.mean(1)])
    return out


def write_results_text(workdir: str, summary: dict) -> None:
    """The results table (report.md's, policies x metrics) as TensorBoard text `eval/results` in W/eval/tensorboard.
    An evaluation replaces the one before it whole, so the events of an earlier one are removed first."""
    import shutil

    shutil.rmtree(os.path.join(workdir, "eval", "tensorboard"), ignore_errors=True)
    writer = metrics.MetricWriter(os.path.join(workdir, "eval"))
    writer.write_text(0, "eval/results", tables.results_table(summary))
    writer.close()


def write_summary(workdir: str, summary: dict) -> None:
    """W/summary.json, written atomically (a reader never sees half a file), merged with what is there."""

    path = os.path.join(workdir, "summary.json")
    old = {}
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
    write_json(path, {**old, **summary})
