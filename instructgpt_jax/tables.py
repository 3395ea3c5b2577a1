"""Markdown tables of a pipeline's summary.json, and the line that marks a smoke run: what report.md, the
pipeline's last output and TensorBoard's text tab show (report.py adds the plots; no matplotlib here).

A run counts as a smoke run when its policy is a nano model (configs/pipeline.py:smoke, or any run with
--config.model=nano): the preset W/sft/config.json records (SFT writes the preset of the checkpoint it
trained, so a policy from an imported GPT-2 counts as what it is), else the pipeline's W/config.json
`model`. The model is what makes the numbers noise, and unlike the config arg it is written down in every
workdir.
"""

from __future__ import annotations

import json
import os

ORDER = ("base", "gpt_prompted", "sft", "ppo", "ppo_ptx")
LABELS = {"base": "GPT", "gpt_prompted": "GPT prompted", "sft": "SFT", "ppo": "PPO", "ppo_ptx": "PPO-ptx"}
TABLE = (  # (summary key, header, format)
    ("win_rate", "win rate vs SFT", "{:.3f}"), ("gold", "gold", "{:.3f}"), ("rm_score", "RM score", "{:.2f}"),
    ("kl", "KL from SFT", "{:.2f}"), ("pretrain_loss", "pretrain loss", "{:.3f}"),
    ("alignment_tax", "alignment tax", "{:+.3f}"), ("length", "length (tokens)", "{:.1f}"),
    ("refusal_rate", "refusal (harmful)", "{:.2f}"), ("benign_refusal_rate", "refusal (benign)", "{:.2f}"),
    ("refusal_rate_heldout", "refusal (harmful) held-out instr.", "{:.2f}"),
    ("win_rate_heldout", "win rate held-out instr.", "{:.3f}"), ("gold_heldout", "gold held-out instr.", "{:.3f}"),
    ("gold_diff", "gold - SFT (paired)", "{:+.3f}"), ("gold_diff_heldout", "gold - SFT held-out instr.", "{:+.3f}"),
    ("gold_vs_baseline", "gold - SFT draws", "{:+.3f}"),
)
PULSE_PRESETS = ("nano", "nano-world", "nano-neox")  # the smoke configs' models (0.13-0.25M parameters)
REAL_RUN = "instructgpt pipeline --config configs/pipeline.py:default --workdir runs/default"
METADATA = (  # (metadata_rates key, label): the paper's Figure 4 panels, as failure rates
    ("fails_to_attempt", "fails to attempt"), ("violates_constraints", "violates constraints"),
    ("hallucinates", "hallucinates"), ("inappropriate", "inappropriate"),
)


def policy_order(summary: dict) -> list[str]:
    """The summary's policies, the paper's five in its order first."""
    names = list(summary.get("policies", {}))
    return [n for n in ORDER if n in names] + [n for n in names if n not in ORDER]


def _cell(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def results_table(summary: dict) -> str:
    policies = policy_order(summary)
    lines = ["| policy | " + " | ".join(h for _, h, _ in TABLE) + " |", "|---" * (len(TABLE) + 1) + "|"]
    for name in policies:
        f = summary["policies"][name]
        cells = []
        for key, _, fmt in TABLE:
            cell = _cell(f.get(key), fmt)
            if key.startswith("win_rate") and f.get(f"{key}_stderr") is not None:
                cell += f" ± {f[f'{key}_stderr']:.3f}"
            elif key.startswith(("gold_diff", "gold_vs_baseline")) and f.get(f"{key}_ci95") is not None:
                cell += f" ± {f[f'{key}_ci95']:.3f}"
            cells.append(cell)
        lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def metadata_table(summary: dict, suffix: str = "") -> str:
    """Policies as rows, the Figure 4 rates as columns; "" if no policy has them."""
    policies = [n for n in policy_order(summary) if summary["policies"][n].get(f"metadata{suffix}")]
    if not policies:
        return ""
    lines = ["| policy | " + " | ".join(h for _, h in METADATA) + " |", "|---" * (len(METADATA) + 1) + "|"]
    for name in policies:
        rates = summary["policies"][name][f"metadata{suffix}"]
        lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(_cell(rates.get(k), "{:.2f}") for k, _ in METADATA)
                     + " |")
    return "\n".join(lines) + "\n"


def kind_table(summary: dict, suffix: str = "") -> str:
    """Gold per kind of prompt: kinds as rows (in evaluate's order), policies as columns; the hard slice in bold."""
    by_kind = {n: summary["policies"][n].get(f"gold{suffix}_by_kind") or {} for n in policy_order(summary)}
    policies = [n for n, v in by_kind.items() if v]
    kinds = list(dict.fromkeys(k for n in policies for k in by_kind[n]))
    if not kinds:
        return ""
    lines = ["| kind | " + " | ".join(LABELS.get(n, n) for n in policies) + " |", "|---" * (len(policies) + 1) + "|"]
    for kind in kinds:
        label = f"**{kind}** (algorithmic)" if kind == "hard" else kind
        lines.append(f"| {label} | " + " | ".join(_cell(by_kind[n].get(kind), "{:.3f}") for n in policies) + " |")
    return "\n".join(lines) + "\n"


def rm_family_table(rm: dict) -> str:
    """Per family: the RM's agreement with the ranking labeler, a second labeler's, and the pairs; "" if none."""
    rm_acc, labeler = rm.get("accuracy_by_family") or {}, rm.get("labeler_agreement_by_family") or {}
    if not rm_acc:
        return ""
    pairs = rm.get("pairs_by_family") or {}
    lines = ["| family | RM agreement | labeler agreement | pairs |", "|---|---|---|---|"]
    for family, acc in rm_acc.items():
        lines.append(f"| {family} | {acc:.3f} | {_cell(labeler.get(family), '{:.3f}')} | "
                     f"{_cell(pairs.get(family), '{:d}')} |")
    lines.append(f"| all | {_cell(rm.get('accuracy'), '{:.3f}')} | {_cell(rm.get('labeler_agreement'), '{:.3f}')} | "
                 f"{sum(pairs.values())} |")
    return "\n".join(lines) + "\n"


def best_of_n_family_table(best: dict) -> str:
    """Per family: gold of the RM's pick among the first n SFT samples for each n, the gold-best's at the
    largest n, and the family's share of the overall curve's last step (summary["rm"]["best_of_n"]["by_family"],
    eval_figures.best_of_n); "" if the summary has none."""
    by_family = (best or {}).get("by_family") or {}
    if not by_family:
        return ""
    ns = best["n"]
    lines = [f"| family | prompts | RM's pick, n = {' / '.join(map(str, ns))} | gold-best of {ns[-1]} | "
             f"{ns[-2] if len(ns) > 1 else ns[-1]} -> {ns[-1]}, weighted |", "|---|---|---|---|---|"]
    for family, f in by_family.items():
        lines.append(f"| {family} | {f['prompts']} | {' / '.join(f'{v:.3f}' for v in f['rm'])} | "
                     f"{f['oracle'][-1]:.3f} | {_cell(f.get('rm_change'), '{:+.4f}')} |")
    change = best["rm"][-1] - best["rm"][-2] if len(ns) > 1 else None
    lines.append(f"| all | {best['prompts']} | {' / '.join(f'{v:.3f}' for v in best['rm'])} | "
                 f"{best['oracle'][-1]:.3f} | {_cell(change, '{:+.4f}')} |")
    return "\n".join(lines) + "\n"


def phrase_shift_table(summary: dict) -> str:
    """The phrases each policy tuned from SFT took up per family (summary "phrase_shifts", eval_figures.phrase_shifts;
    PPO, PPO-ptx, later rounds' policies; not GPT, whose answers are not SFT's to begin with): the share of its
    answers using one against the share of SFT's baseline draws, and the gold of its answers with and without it;
    "" if no policy has any."""
    policies = [n for n in policy_order(summary) if n not in ("base", "gpt_prompted")]
    rows = [(name, e) for name in policies for e in summary["policies"][name].get("phrase_shifts") or ()]
    if not rows:
        return ""
    lines = ["| policy | family | phrase | SFT draws | policy | gold with / without |", "|---|---|---|---|---|---|"]
    for name, e in rows:
        lines.append(f"| {LABELS.get(name, name)} | {e['family']} ({e['prompts']}) | \"{e['phrase']}\" | "
                     f"{e['ref_share']:.2f} | {e['share']:.2f} | {_cell(e['gold_with'], '{:.2f}')} / "
                     f"{_cell(e['gold_without'], '{:.2f}')} |")
    return "\n".join(lines) + "\n"


def policy_preset(workdir: str) -> str | None:
    """The policy's model preset: the one SFT trained (W/sft/config.json), else the pipeline config's `model`."""
    for path in (os.path.join(workdir, "sft", "config.json"), os.path.join(workdir, "config.json")):
        if os.path.exists(path):
            with open(path) as f:
                model = json.load(f).get("model")
            preset = model.get("preset") if isinstance(model, dict) else model
            if isinstance(preset, str) and preset:
                return preset
    return None


def pulse_line(workdir: str) -> str:
    """The line that opens a smoke run's report (and ends its pipeline output); "" for any other run."""
    preset = policy_preset(workdir)
    if preset not in PULSE_PRESETS:
        return ""
    return (f"**Smoke run: a pulse, not a result.** A {preset} model trained for a few steps per stage: the "
            f"numbers below are noise, not a result. The real run: `{REAL_RUN}`.\n")


ROUND_TABLE = (  # (summary.rounds key, header, format)
    ("gold", "gold", "{:.3f}"), ("win_rate", "win rate vs SFT", "{:.3f}"),
    ("rm_score", "RM score (round-1 RM)", "{:.2f}"), ("rm_score_own", "RM score (own RM)", "{:.2f}"),
    ("kl", "KL from SFT", "{:.2f}"), ("length", "length", "{:.1f}"), ("comparisons", "new comparisons", "{:.0f}"),
    ("stale_rm_accuracy", "previous RM acc. (new samples)", "{:.3f}"), ("stale_rm_drop", "previous RM acc. drop", "{:+.3f}"),
    ("rm_accuracy", "new RM acc. (new samples)", "{:.3f}"), ("rm_gold_accuracy", "new RM gold acc.", "{:.3f}"),
)


def rounds_table(rounds: list[dict]) -> str:
    lines = ["| round | " + " | ".join(h for _, h, _ in ROUND_TABLE) + " |", "|---" * (len(ROUND_TABLE) + 1) + "|"]
    for r in rounds:
        lines.append(f"| {r['round']} | " + " | ".join(_cell(r.get(k), fmt) for k, _, fmt in ROUND_TABLE) + " |")
    return "\n".join(lines) + "\n"
