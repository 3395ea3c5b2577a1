"""The report of a pipeline workdir: W/report/report.md with a results table, PNG plots and samples.

  instructgpt report --workdir W

Reads only files: W/summary.json (evaluate.py), each stage's metrics.jsonl and W/eval/<policy>.jsonl. Tables:
results per policy (with the paired gold difference from SFT and its 95% interval), Figure 4's metadata
rates, gold per kind of prompt, and the RM's agreement with the labelers per family beside the labelers'
agreement with each other. Plots:
- win_rate.png: win rate against SFT per policy as judged by the simulated labelers (Ouyang et al. 2022,
  Figure 1, at one model size), on the held-out prompts and on held-out families/phrasings;
- metadata.png: the metadata rates per policy (fails to attempt, violates constraints, hallucinates,
  inappropriate; the paper's Figure 4);
- best_of_n.png: gold of the RM's pick among n SFT samples against the gold-best of the same n;
- ppo_gold_rm_vs_kl.png: gold and RM score against KL from SFT over PPO training: the RM score keeps rising
  while the gold score flattens or falls (over-optimisation, Gao et al. 2022);
- alignment_tax.png: rise of the held-out pretraining loss over SFT during PPO, with and without ptx;
- rm_accuracy_k.png: reward-model agreement with the labelers on K ranked responses, per K (SFT samples and world candidates);
- length.png: mean response length per policy and during PPO (the labelers' length bias shows up here);
- training.png: each stage's training curves (losses, the RM's held-out accuracy, PPO's score), three panels to a
  row, steps on x and the metric named on y;
- rounds.png (iterated RLHF, `rounds` > 1): gold, win rate, RM score and KL per round, and the previous
  round's RM against the new one on the newest policy's comparisons (how stale the RM had become).
A plot whose inputs are missing (a partial workdir) is left out and the report says so.

A smoke run's report opens with a line saying it is a pulse, not a result (`tables.pulse_line`, which says
how a smoke run is told).
"""

from __future__ import annotations

import json
import os

import matplotlib
from matplotlib.figure import Figure

from instructgpt_jax import metrics, tables
from instructgpt_jax.tables import LABELS, METADATA, kind_table, metadata_table, pulse_line, results_table, rm_family_table, rounds_table

COLORS = {"base": "#9e9e9e", "gpt_prompted": "#8172b3", "sft": "#4c72b0", "ppo": "#dd8452", "ppo_ptx": "#c44e52"}

def _eval_rows(workdir: str, stage: str) -> list[dict]:
    return [r for r in metrics.read_metrics(os.path.join(workdir, stage)) if "ppo/eval_kl" in r]


def _ppo_stages(workdir: str) -> list[str]:
    return [s for s in ("ppo", "ppo_ptx") if _eval_rows(workdir, s)]


def plot_win_rate(workdir: str, summary: dict, path: str) -> bool:
    policies = tables.policy_order(summary)
    if not policies:
        return False
    fig, ax = _subplots(figsize=(6, 3.6))
    width = 0.38
    for j, (suffix, alpha) in enumerate((("", 1.0), ("_heldout", 0.45))):
        for i, name in enumerate(policies):
            f = summary["policies"][name]
            value, err = f.get(f"win_rate{suffix}"), f.get(f"win_rate{suffix}_stderr")
            if value is None:
                continue
            ax.bar(i + (j - 0.5) * width, value, width, yerr=err, color=COLORS.get(name, "#55a868"), alpha=alpha,
                   capsize=3)
    tie = ax.axhline(0.5, color="k", ls="--", lw=0.8, label="0.5: as good as SFT")
    ax.set_xticks(range(len(policies)), [LABELS.get(n, n) for n in policies])
    ax.set_ylim(0, 1)
    ax.set_ylabel("win rate against SFT")
    ax.set_title("Labeler preference vs SFT (ties = 1/2)")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="#666666", label="held-out prompts"),
                       Patch(color="#666666", alpha=0.45, label="held-out instructions"), tie], loc="upper left",
              fontsize=8)
    return _save(fig, path)


def plot_metadata(workdir: str, summary: dict, path: str) -> bool:
    """Grouped bars: each Figure 4 rate (lower is better) for each policy, on the held-out prompts."""
    policies = [n for n in tables.policy_order(summary) if summary["policies"][n].get("metadata")]
    if not policies:
        return False
    fig, ax = _subplots(figsize=(8.5, 3.6))
    width = 0.8 / len(policies)
    for i, name in enumerate(policies):
        rates = summary["policies"][name]["metadata"]
        x = [j for j, (k, _) in enumerate(METADATA) if rates.get(k) is not None]
        ax.bar([j + (i - (len(policies) - 1) / 2) * width for j in x], [rates[METADATA[j][0]] for j in x], width,
               color=COLORS.get(name, "#55a868"), label=LABELS.get(name, name))
    ax.set_xticks(range(len(METADATA)), [h for _, h in METADATA])
    ax.set(ylabel="share of responses it applies to", ylim=(0, 1), title="Metadata of the responses (lower is better)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))  # beside the axes: bars reach 1
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def plot_best_of_n(workdir: str, summary: dict, path: str) -> bool:
    """Gold against n: the RM's pick among n SFT samples and the gold-best of the same samples."""
    best = summary.get("rm", {}).get("best_of_n")
    if not best or not best.get("n"):
        return False
    fig, ax = _subplots(figsize=(5.6, 3.6))
    ax.plot(best["n"], best["oracle"], marker="s", color="#55a868", label="gold-best of n (oracle)")
    ax.plot(best["n"], best["rm"], marker="o", color="#4c72b0", label="RM's pick of n")
    ax.axhline(best["sample_gold"], color="k", ls="--", lw=0.8, label="a sample (mean)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(best["n"], [str(n) for n in best["n"]])
    recovered = best.get("recovered")
    ax.set(xlabel="n (SFT samples per prompt)", ylabel="gold score",
           title="Best-of-n" + ("" if recovered is None else f": the RM recovers {recovered:.0%} of the oracle's gain"))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_gold_rm_vs_kl(workdir: str, summary: dict, path: str) -> bool:
    stages = _ppo_stages(workdir)
    if not stages:
        return False
    fig, (ax_gold, ax_rm) = _subplots(1, 2, figsize=(9, 3.6))
    for stage in stages:
        rows = sorted(_eval_rows(workdir, stage), key=lambda r: r["step"])
        kl = [r["ppo/eval_kl"] for r in rows]
        name = "ppo_ptx" if stage == "ppo_ptx" else "ppo"
        style = dict(color=COLORS[name], marker="o", ms=3, label=LABELS[name])
        if all("ppo/gold_score" in r for r in rows):
            ax_gold.plot(kl, [r["ppo/gold_score"] for r in rows], **style)
        ax_rm.plot(kl, [r["ppo/eval_score"] for r in rows], **style)
    ax_gold.set(xlabel="KL from SFT (nats per response)", ylabel="gold score", title="Gold (true objective)")
    ax_rm.set(xlabel="KL from SFT (nats per response)", ylabel="RM score (normalised)", title="RM (proxy objective)")
    for ax in (ax_gold, ax_rm):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("During PPO: proxy reward vs gold as the policy moves away from SFT", fontsize=10)
    return _save(fig, path)


# plot_ppo_runs draws KL on a symmetric-log axis when some run's KL passes this many nats.
KL_LOG_AXIS_ABOVE = 20.0


def plot_ppo_runs(stage_dirs: dict, path: str) -> bool:
    """Gold and RM score against KL over training, one line per PPO run (a sweep of beta or ptx_coef)."""
    curves = {name: sorted(_eval_rows(os.path.dirname(d), os.path.basename(d)), key=lambda r: r["step"])
              for name, d in stage_dirs.items()}
    curves = {name: rows for name, rows in curves.items() if rows}
    if not curves:
        return False
    fig, (ax_gold, ax_rm) = _subplots(1, 2, figsize=(10, 3.8))
    cmap = matplotlib.colormaps["viridis"]
    for i, (name, rows) in enumerate(curves.items()):
        color = cmap(i / max(len(curves) - 1, 1))
        kl = [r["ppo/eval_kl"] for r in rows]
        if all("ppo/gold_score" in r for r in rows):
            ax_gold.plot(kl, [r["ppo/gold_score"] for r in rows], marker="o", ms=3, color=color, label=name)
        ax_rm.plot(kl, [r["ppo/eval_score"] for r in rows], marker="o", ms=3, color=color, label=name)
    ax_gold.set(xlabel="KL from SFT (nats per response)", ylabel="gold score", title="Gold (true objective)")
    ax_rm.set(xlabel="KL from SFT (nats per response)", ylabel="RM score (normalised)", title="RM (proxy objective)")
    # A run that escapes (beta 0: ~90 nats) would squash the others' curves, all within a few nats, into the
    # left edge; past 1 nat the axis is then logarithmic, linear below (KL starts at 0).
    wide = max(r["ppo/eval_kl"] for rows in curves.values() for r in rows) > KL_LOG_AXIS_ABOVE
    for ax in (ax_gold, ax_rm):
        ax.grid(alpha=0.3)
        if wide:
            ax.set_xscale("symlog", linthresh=1.0)
    ax_rm.legend(fontsize=7, loc="best")
    return _save(fig, path)


def plot_alignment_tax(workdir: str, summary: dict, path: str) -> bool:
    """Rise of the held-out pretraining loss over the SFT policy (PPO iteration 0) during PPO and PPO-ptx.

    Plotted as a difference: PPO's evaluation uses its own held-out windows (configs/ppo.py), so its levels
    differ slightly from evaluate.py's; the table's alignment tax is evaluate.py's, against the base model.
    """
    stages = [s for s in _ppo_stages(workdir) if all("ppo/pretrain_loss" in r for r in _eval_rows(workdir, s))]
    if not stages:
        return False
    fig, ax = _subplots(figsize=(6, 3.6))
    for stage in stages:
        rows = sorted(_eval_rows(workdir, stage), key=lambda r: r["step"])
        start = rows[0]["ppo/pretrain_loss"]
        ax.plot([r["step"] for r in rows], [r["ppo/pretrain_loss"] - start for r in rows], marker="o", ms=3,
                color=COLORS[stage], label=LABELS[stage] + (" (ptx)" if stage == "ppo_ptx" else " (no ptx)"))
    ax.axhline(0.0, color=COLORS["sft"], ls="--", lw=1, label="SFT (start of PPO)")
    ax.set(xlabel="PPO iteration", ylabel="held-out pretraining loss - SFT's (nats/token)",
           title="Alignment tax: pretraining loss during PPO")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_rm_accuracy(workdir: str, summary: dict, path: str) -> bool:
    rm = summary.get("rm", {})
    if not rm.get("accuracy_by_k"):
        return False
    fig, ax = _subplots(figsize=(5.6, 3.6))
    world = rm.get("world_candidates") or {}
    for figures, what, style in ((rm, "SFT samples", "-"), (world, "world candidates", "--")):
        if not figures.get("accuracy_by_k"):
            continue
        ks = sorted(figures["accuracy_by_k"], key=int)
        x = [int(k) for k in ks]
        ax.plot(x, [figures["accuracy_by_k"][k] for k in ks], marker="o", ls=style, color="#4c72b0",
                label=f"pairwise, {what}")
        if figures.get("top1_by_k"):
            ax.plot(x, [figures["top1_by_k"][k] for k in ks], marker="s", ls=style, color="#dd8452",
                    label=f"top-1 of K, {what}")
    ks = sorted(rm["accuracy_by_k"], key=int)
    ax.plot([int(k) for k in ks], [1 / int(k) for k in ks], color="k", ls=":", lw=0.8, label="top-1 by chance")
    ax.axhline(0.5, color="k", ls="--", lw=0.8, label="pairwise by chance")
    ax.set(xlabel="K (responses ranked per prompt)", ylabel="agreement with labelers", ylim=(0, 1),
           title="Reward model accuracy vs K (held-out prompts)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_length(workdir: str, summary: dict, path: str) -> bool:
    policies = [n for n in tables.policy_order(summary) if summary["policies"][n].get("length") is not None]
    stages = [s for s in _ppo_stages(workdir) if all("ppo/eval_length" in r for r in _eval_rows(workdir, s))]
    if not policies and not stages:
        return False
    fig, (ax_bar, ax_line) = _subplots(1, 2, figsize=(9, 3.4))
    ax_bar.bar(range(len(policies)), [summary["policies"][n]["length"] for n in policies],
               color=[COLORS.get(n, "#55a868") for n in policies])
    ax_bar.set_xticks(range(len(policies)), [LABELS.get(n, n) for n in policies])
    ax_bar.set(ylabel="mean response length (tokens)", title="Response length per policy")
    for stage in stages:
        rows = sorted(_eval_rows(workdir, stage), key=lambda r: r["step"])
        ax_line.plot([r["step"] for r in rows], [r["ppo/eval_length"] for r in rows], marker="o", ms=3,
                     color=COLORS[stage], label=LABELS[stage])
    ax_line.set(xlabel="PPO iteration", ylabel="mean response length (tokens)", title="Length during PPO")
    if stages:
        ax_line.legend(fontsize=8)
    return _save(fig, path)


TRAINING = (  # (stage folder, metric, y-axis label): the panels of training.png, in the recipe's order
    ("pretrain", "pretrain/loss", "pretrain/loss (nats per token)"), ("sft", "sft/loss", "sft/loss (nats per token)"),
    ("rm", "rm/loss", "rm/loss (eq. 1, per pair)"), ("rm", "rm/accuracy", "rm/accuracy (held-out pairs)"),
    ("ppo", "ppo/score", "ppo/score (normalised RM score)"), ("ppo_ptx", "ppo/score", "ppo/score (normalised RM score)"),
)
FEW = 20  # a series of at most this many points gets a marker on each (one point is no line at all)


def plot_training(workdir: str, summary: dict, path: str) -> bool:
    """One panel per stage and metric, three to a row."""
    curves = []
    for stage, key, ylabel in TRAINING:
        rows = [r for r in metrics.read_metrics(os.path.join(workdir, stage)) if key in r]
        if rows:
            curves.append((stage, key, ylabel, [r["step"] for r in rows], [r[key] for r in rows]))
    if not curves:
        return False
    cols = min(3, len(curves))
    rows = -(-len(curves) // cols)
    fig, axes = _subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, (stage, key, ylabel, steps, values) in zip(axes.flat, curves):
        ax.plot(steps, values, lw=1, color=COLORS.get(stage, "#4c72b0"),
                marker="o" if len(steps) <= FEW else None, ms=5 if len(steps) == 1 else 3)
        if key == "rm/accuracy":
            ax.axhline(0.5, color="k", ls="--", lw=0.8, label="chance (0.5)")
            ax.set_ylim(0, 1)
            ax.legend(fontsize=7, loc="lower right")
        ax.set(title=f"{stage} ({len(steps)} logged step{'s' if len(steps) > 1 else ''})", xlabel="step",
               ylabel=ylabel)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(curves):]:
        ax.set_visible(False)
    return _save(fig, path)


def plot_rounds(rounds: list[dict], path: str, sft_gold: float | None = None) -> bool:
    """Per round: gold and win rate (SFT's gold for reference), RM score and KL, and the previous round's RM
    against the new one on the round's new comparisons."""
    if len(rounds) < 2:
        return False
    x = [r["round"] for r in rounds]
    series = lambda key: [r.get(key) if r.get(key) is not None else float("nan") for r in rounds]  # noqa: E731
    fig, (ax_gold, ax_rm, ax_acc) = _subplots(1, 3, figsize=(12, 3.6))
    ax_gold.plot(x, series("gold"), marker="o", color=COLORS["ppo_ptx"], label="gold")
    ax_gold.plot(x, series("win_rate"), marker="s", color=COLORS["sft"], label="win rate vs SFT")
    ax_gold.axhline(0.5, color="k", ls="--", lw=0.8, label="win rate 0.5: as good as SFT")
    if sft_gold is not None:
        ax_gold.axhline(sft_gold, color=COLORS["ppo_ptx"], ls=":", lw=1, label="SFT gold")
    ax_gold.set(xlabel="round", title="Gold score and win rate vs SFT")
    ax_rm.plot(x, series("rm_score"), marker="o", color="#8172b3", label="RM score (round-1 RM)")
    ax_rm.plot(x, series("rm_score_own"), marker="^", color="#937860", label="RM score (own RM, end of PPO)")
    ax_kl = ax_rm.twinx()
    ax_kl.plot(x, series("kl"), marker="s", color="#55a868", ls=":", label="KL from SFT")
    ax_kl.set_ylabel("KL from SFT (nats per response)")
    ax_rm.set(xlabel="round", ylabel="normalised RM score", title="RM score and KL from SFT")
    handles = ax_rm.get_legend_handles_labels()[0] + ax_kl.get_legend_handles_labels()[0]
    ax_rm.legend(handles=handles, fontsize=7, loc="best")
    ax_acc.plot(x, series("stale_rm_accuracy"), marker="o", color="#dd8452", label="previous round's RM")
    ax_acc.plot(x, series("rm_accuracy"), marker="s", color="#4c72b0", label="this round's RM")
    ax_acc.axhline(0.5, color="k", ls="--", lw=0.8, label="chance")
    ax_acc.set(xlabel="round", ylabel="pairwise accuracy vs labelers",
               title="RM accuracy on each round's\nnew comparisons (held-out part)")
    for ax in (ax_gold, ax_acc):
        ax.legend(fontsize=7, loc="best")
    for ax in (ax_gold, ax_rm, ax_acc):
        ax.set_xticks(x)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def _subplots(*grid, figsize, **kwargs):
    """A Figure without pyplot: no backend is chosen or switched, so a notebook's inline plots keep working."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, **kwargs)


def _save(fig, path: str) -> bool:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def samples_section(workdir: str, policies: list[str], n: int = 4) -> str:
    """The first n held-out prompts with each policy's response side by side."""
    per_policy = {}
    for name in policies:
        path = os.path.join(workdir, "eval", f"{name}.jsonl")
        if os.path.exists(path):
            with open(path) as f:
                per_policy[name] = [json.loads(line) for line in f if line.strip()][:n]
    if not per_policy:
        return ""
    names = list(per_policy)
    lines = ["| prompt | " + " | ".join(LABELS.get(p, p) for p in names) + " |", "|---" * (len(names) + 1) + "|"]
    esc = lambda s: s.replace("|", "\\|").replace("\n", " ")  # noqa: E731
    for i in range(min(len(v) for v in per_policy.values())):
        row = [esc(per_policy[names[0]][i]["prompt"])]
        row += [f"{esc(per_policy[p][i]['response'])[:80]} (gold {per_policy[p][i]['gold']:.2f})" for p in names]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


PLOTS = (  # file, caption, function(workdir, summary, path) -> whether it had the data to plot
    ("win_rate.png", "Win rate against SFT, judged by the simulated labelers (paper Figure 1).", plot_win_rate),
    ("metadata.png", "Metadata rates per policy on the held-out prompts (paper Figure 4).", plot_metadata),
    ("best_of_n.png", "Best-of-n on SFT samples: gold of the RM's pick against the gold-best of the same n.",
     plot_best_of_n),
    ("ppo_gold_rm_vs_kl.png", "Gold and RM score against KL from SFT during PPO (over-optimisation).", plot_gold_rm_vs_kl),
    ("alignment_tax.png", "Rise of the held-out pretraining loss over SFT during PPO, with and without ptx (alignment tax).",
     plot_alignment_tax),
    ("rm_accuracy_k.png", "Reward model agreement with labeler rankings, per K.", plot_rm_accuracy),
    ("length.png", "Response length per policy and during PPO.", plot_length),
    ("training.png", "Training curves of each stage.", plot_training),
)


def run(workdir: str) -> dict:
    """Write W/report/report.md and its plots; returns {"report": path, "plots": [...]}."""
    path = os.path.join(workdir, "summary.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file; run `instructgpt eval` (or the pipeline) first")
    with open(path) as f:
        summary = json.load(f)
    out_dir = os.path.join(workdir, "report")
    os.makedirs(out_dir, exist_ok=True)
    made, missing = [], []
    for name, caption, fn in PLOTS:
        (made if fn(workdir, summary, os.path.join(out_dir, name)) else missing).append((name, caption))
    rm = summary.get("rm", {})
    pulse = pulse_line(workdir)
    parts = [*([pulse] if pulse else []), "# InstructGPT on the embedded world\n",
             f"Workdir: `{os.path.abspath(workdir)}`\n", "## Results (held-out prompts)\n", results_table(summary),
             "Win rates ± their standard error; gold - SFT: the mean per-prompt gold difference from SFT's sample of "
             "the same prompt with the same sampling key, ± its 95% interval; gold - SFT draws: from the mean gold of "
             "the SFT samples the win rate compares each answer with, ± its 95% interval.\n"]
    for title, table in (("## Metadata (paper Figure 4; share of the responses each applies to)\n",
                          metadata_table(summary)),
                         ("## Gold per kind of prompt (held-out prompts)\n", kind_table(summary))):
        if table:
            parts += [title, table]
    if rm.get("accuracy") is not None:
        line = (f"Reward model on fresh held-out comparisons of SFT samples: pairwise accuracy {rm['accuracy']:.3f} "
                f"against the labelers, {rm['gold_accuracy']:.3f} against the gold judge")
        world = rm.get("world_candidates")
        if world and world.get("accuracy") is not None:
            line += (f"; of world-made candidates (references, refusals, junk): {world['accuracy']:.3f} and "
                     f"{world['gold_accuracy']:.3f}")
        parts.append(line + ".\n")
    family_table = rm_family_table(rm)
    if family_table:
        parts += ["## Reward model agreement per family\n",
                  "On SFT samples: the RM's pairwise agreement with the ranking labeler, and a second labeler's "
                  "agreement with the first on the same responses (pairs the first does not tie).\n", family_table]
    best = rm.get("best_of_n")
    if best and best.get("recovered") is not None:
        parts.append(f"Best-of-{best['n'][-1]} by the RM recovers {best['recovered']:.0%} of the gold-best's gain "
                     f"over one sample ({best['prompts']} prompts).\n")
    bon_table = tables.best_of_n_family_table(best)
    if bon_table:
        parts += ["Best-of-n per family (gold of the RM's pick among the first n SFT samples; the last column is "
                  "the family's part of the overall curve's last step, so a fall at the largest n shows where it "
                  "comes from):\n", bon_table]
    if best and best.get("oracle_win_rate"):
        parts.append(f"Labeler win rate against SFT of the best of {best['n'][-1]} SFT samples: "
                     f"{best['rm_win_rate'][-1]:.3f} picked by the RM, {best['oracle_win_rate'][-1]:.3f} picked by "
                     "gold (what re-ranking SFT's own samples reaches).\n")
    shifts = tables.phrase_shift_table(summary)
    if shifts:
        parts += ["## What the RLHF policies took up\n",
                  "Per family (eval prompts in brackets), the phrases whose share of a policy's answers rose by at "
                  "least 0.25 over SFT's samples (the win rate's baseline draws), with the gold of the policy's "
                  "answers that use the phrase and of those that do not. A phrase the RM rewards where the labelers "
                  "do not (lower gold with it) is the policy gaming the RM.\n", shifts]
    if summary.get("wall_time_s"):
        times = ", ".join(f"{k} {v:.0f} s" for k, v in summary["wall_time_s"].items())
        devices = sorted({d for d in (summary.get("wall_time_devices") or {}).values() if d})
        parts.append(f"Wall time{' on ' + ' / '.join(devices) if devices else ''}: {times}.\n")
    rounds = summary.get("rounds") or []
    if len(rounds) > 1:
        parts += ["## Rounds of RLHF\n",
                  "Round 1 is PPO-ptx; round r >= 2 ranks samples of round r-1's policy on fresh prompts, retrains "
                  "the RM on every comparison so far and continues PPO-ptx, KL anchored to SFT. Accuracies are on the "
                  "held-out part of each round's new comparisons (round 1: of SFT samples).\n", rounds_table(rounds)]
        sft_gold = summary.get("policies", {}).get("sft", {}).get("gold")
        if plot_rounds(rounds, os.path.join(out_dir, "rounds.png"), sft_gold):
            made.append(("rounds.png", "Per round: gold, win rate, RM score, KL; previous vs new RM on new samples."))
    parts.append("## Plots\n")
    parts += [f"![{caption}]({name})\n\n{caption}\n" for name, caption in made]
    if missing:
        parts.append("Not available (inputs missing in this workdir): " + ", ".join(n for n, _ in missing) + ".\n")
    samples = samples_section(workdir, tables.policy_order(summary))
    if samples:
        parts += ["## Samples\n", samples]
    report = os.path.join(out_dir, "report.md")
    with open(report, "w") as f:
        f.write("\n".join(parts))
    return {"report": report, "plots": [os.path.join(out_dir, n) for n, _ in made]}
