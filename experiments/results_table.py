"""The results table of one or several pipeline runs, in Markdown, from their summary.json files.

  python experiments/results_table.py runs/default                      # one run
  python experiments/results_table.py runs/seed0 runs/seed1 runs/seed2  # seeds: mean, and each seed's value
  python experiments/results_table.py runs/default --readme README.md    # rewrite README's table in place
  python experiments/results_table.py runs/seed0 runs/seed1 --families    # and the table per family

README.md's results table is this script's output: `--readme` replaces what lies between the lines
`<!-- results:begin -->` and `<!-- results:end -->` with the table and the RM line and leaves the rest of the
file as it is, so the table cannot drift from the run it names. docs/RESULTS.md pastes its output. Columns: labeler win rate against SFT (± its 95% interval), gold and the paired gold
difference from SFT's answer (± 95%), the gold difference from the SFT samples the win rate judges each answer
against (the mean over the eval's baseline draws, ± 95%), RM score, KL from SFT, alignment tax, response length,
refusals of harmful requests (the eval prompts' and the held-out instructions'), and the Figure 4 metadata
(fails to attempt the task, constraint violations, hallucinations, inappropriate answers). With
several runs each cell is the mean over runs followed by the runs' values in brackets. Rows: GPT, GPT prompted,
SFT, PPO, PPO-ptx, then any other policy a run evaluated (later rounds' PPO-ptx with `--config.rounds`).
`--families` adds a table per prompt family (the world's slices, the hard one last): each policy's gold, the
gold of the win rate's SFT baseline draws, PPO's and PPO-ptx's win rates, and the RM's agreement with a held-out
labeler's ranking beside the labelers' own (mean over runs), the figures behind "where RLHF helps and where it
does not".
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from instructgpt_jax.tables import LABELS, ORDER  # noqa: E402  (no jax: the table reads summary.json only)

POLICIES = tuple((name, LABELS[name]) for name in ORDER)  # the report's rows and labels, in its order
COLUMNS = (  # (header, getter, format, interval key or None)
    ("win rate vs SFT", lambda f: f.get("win_rate"), "{:.3f}", "win_rate_ci95"),
    ("gold", lambda f: f.get("gold"), "{:.3f}", None),
    ("gold - SFT", lambda f: f.get("gold_diff"), "{:+.3f}", "gold_diff_ci95"),
    ("gold - SFT draws", lambda f: f.get("gold_vs_baseline"), "{:+.3f}", "gold_vs_baseline_ci95"),
    ("RM score", lambda f: f.get("rm_score"), "{:.2f}", None),
    ("KL", lambda f: f.get("kl"), "{:.1f}", None),
    ("tax", lambda f: f.get("alignment_tax"), "{:+.2f}", None),
    ("length", lambda f: f.get("length"), "{:.1f}", None),
    ("refusal", lambda f: f.get("refusal_rate"), "{:.2f}", None),
    ("refusal held-out", lambda f: f.get("refusal_rate_heldout"), "{:.2f}", None),
    ("fails to attempt", lambda f: (f.get("metadata") or {}).get("fails_to_attempt"), "{:.2f}", None),
    ("violates", lambda f: (f.get("metadata") or {}).get("violates_constraints"), "{:.2f}", None),
    ("hallucinates", lambda f: (f.get("metadata") or {}).get("hallucinates"), "{:.2f}", None),
    ("inappropriate", lambda f: (f.get("metadata") or {}).get("inappropriate"), "{:.2f}", None),
)


def load(workdirs) -> list[dict]:
    out = []
    for w in workdirs:
        path = os.path.join(w, "summary.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file (run the pipeline's eval stage first)")
        with open(path) as f:
            out.append(json.load(f))
    return out


def cell(figures: list[dict], get, fmt: str, interval: str | None) -> str:
    present = [f for f in figures if f is not None and get(f) is not None]
    values = [get(f) for f in present]
    if not values:
        return "-"
    mean = sum(values) / len(values)
    text = fmt.format(mean)
    if len(values) == 1 and interval and present[0].get(interval):  # the one run that has it
        text += f" ± {present[0][interval]:.3f}"
    if len(values) > 1:
        text += " (" + " / ".join(fmt.format(v) for v in values) + ")"
    return text


def policies(summaries: list[dict]) -> list[tuple[str, str]]:
    """(name, label) of the rows: the paper's five policies, then any other a run evaluated (a later round's
    policy, `round_<r>` of --config.rounds, labelled "PPO-ptx, round <r>"), in the order the runs list them."""
    known = {name for name, _ in POLICIES}
    extra = dict.fromkeys(n for s in summaries for n in s["policies"] if n not in known)
    label = lambda n: f"PPO-ptx, round {n.split('_')[1]}" if n.startswith("round_") else n  # noqa: E731
    return list(POLICIES) + [(n, label(n)) for n in extra]


def table(summaries: list[dict]) -> str:
    lines = ["| policy | " + " | ".join(h for h, *_ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, label in policies(summaries):
        figures = [s["policies"].get(name) for s in summaries]
        if all(f is None for f in figures):
            continue
        lines.append(f"| {label} | " + " | ".join(cell(figures, get, fmt, ci) for _, get, fmt, ci in COLUMNS) + " |")
    return "\n".join(lines)


FAMILY_POLICIES = (("sft", "SFT gold"), ("ppo", "PPO"), ("ppo_ptx", "PPO-ptx"))
FAMILY_WINS = (("ppo", "PPO win"), ("ppo_ptx", "PPO-ptx win"))  # the labelers' win rate against SFT's sample


def family_table(summaries: list[dict]) -> str:
    """Per family, mean over runs: each policy's gold (SFT's answer's, then the mean of the baseline draws the win
    rate compares with, summary["baseline"]), PPO's and PPO-ptx's win rate against SFT (a run evaluated before the
    summary had them left out of those means), the RM's agreement and the labelers' (the RM's ceiling),
    and, for runs whose evaluation has it (summary["rm"]["best_of_n"]["by_family"]), the gold of the RM's pick
    among the largest n SFT samples against the gold-best's, and its change from the n before (unweighted: the
    family's own curve)."""
    from instructgpt_jax.data.judge import FAMILIES, KINDS

    def mean(values):
        values = [v for v in values if v is not None]
        return f"{sum(values) / len(values):.2f}" if values else "-"

    seen = {f for s in summaries for f in (s["policies"].get("sft") or {}).get("gold_by_family", {})}
    kind = {f: FAMILIES[f].kind if f in FAMILIES else "unknown" for f in seen}  # unknown: not a world family
    order = sorted(seen, key=lambda f: (KINDS.index(kind[f]) if kind[f] in KINDS else len(KINDS), f))
    bests = [(s.get("rm", {}).get("best_of_n") or {}) for s in summaries]
    bests = [b for b in bests if b.get("by_family")]
    n = bests[0]["n"] if bests else None
    head = ([FAMILY_POLICIES[0][1], "SFT draws"] + [label for _, label in FAMILY_POLICIES[1:] + FAMILY_WINS]
            + ["RM agreement", "labelers", "pairs"])
    if n:
        head += [f"best-of-{n[-1]}: RM / gold-best", f"RM's pick {n[-2] if len(n) > 1 else n[-1]} -> {n[-1]}"]
    lines = ["| family | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for fam in order:
        name = f"hard: {fam}" if kind[fam] == "hard" else fam
        cells = [mean([((s["policies"].get(p) or {}).get("gold_by_family") or {}).get(fam) for s in summaries])
                 for p, _ in FAMILY_POLICIES]
        cells.insert(1, mean([((s.get("baseline") or {}).get("gold_by_family") or {}).get(fam) for s in summaries]))
        cells += [mean([((s["policies"].get(p) or {}).get("win_rate_by_family") or {}).get(fam) for s in summaries])
                  for p, _ in FAMILY_WINS]
        for key in ("accuracy_by_family", "labeler_agreement_by_family"):
            cells.append(mean([(s.get("rm", {}).get(key) or {}).get(fam) for s in summaries]))
        pairs = [(s.get("rm", {}).get("pairs_by_family") or {}).get(fam) for s in summaries]
        cells.append(str(sum(p for p in pairs if p)))
        if n:
            curves = [b["by_family"][fam] for b in bests if fam in b["by_family"]]
            cells.append(f"{mean([c['rm'][-1] for c in curves])} / {mean([c['oracle'][-1] for c in curves])}")
            step = [c["rm"][-1] - c["rm"][-2] for c in curves if len(c["rm"]) > 1]
            cells.append(f"{sum(step) / len(step):+.3f}" if step else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rm_line(summaries: list[dict]) -> str:
    """The RM's agreement with held-out labelers, the labelers' own, best-of-n's recovered share and, when the
    eval has it, the labelers' win rate of the gold-best of n SFT samples against SFT (the re-ranking ceiling)."""
    parts = []
    for s in summaries:
        rm = s.get("rm", {})
        bon = rm.get("best_of_n") or {}
        line = (f"RM {rm.get('accuracy', float('nan')):.3f} / labelers {rm.get('labeler_agreement', float('nan')):.3f}"
                f" / best-of-{(bon.get('n') or [16])[-1]} recovers {bon.get('recovered', float('nan')):.2f}")
        if bon.get("oracle_win_rate"):
            line += f", the gold-best of {bon['n'][-1]} wins {bon['oracle_win_rate'][-1]:.3f}"
        parts.append(line)
    return "; ".join(parts)


BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def block(summaries: list[dict]) -> str:
    return f"{table(summaries)}\n\n{rm_line(summaries)}"


def rewrite(text: str, summaries: list[dict]) -> str:
    """`text` with the lines between its BEGIN and END markers replaced by `block`; the markers stay."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"expected one {BEGIN!r} line and, after it, one {END!r} line")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{block(summaries)}\n{END}{tail}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workdirs", nargs="+", help="pipeline workdirs with summary.json")
    p.add_argument("--families", action="store_true", help="also print the table per prompt family")
    p.add_argument("--readme", default="", help="rewrite the table between the results markers of this file "
                                                "(README.md) instead of printing it")
    args = p.parse_args(argv)
    summaries = load(args.workdirs)
    if not args.readme:
        print(block(summaries))
        if args.families:
            print("\n" + family_table(summaries))
        return
    with open(args.readme) as f:
        text = rewrite(f.read(), summaries)  # before opening for writing: a file without markers stays whole
    with open(args.readme, "w") as f:
        f.write(text)
    print(f"results_table: rewrote the results table of {args.readme}")


if __name__ == "__main__":
    main()
