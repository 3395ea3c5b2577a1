"""Where a policy's win rate against SFT is decided: the labelers' verdicts beside gold's, comparison by comparison.

  python experiments/win_decomposition.py runs/seed0 runs/seed1 runs/seed2            # PPO-ptx, one row a run
  python experiments/win_decomposition.py runs/seed1 --policy ppo --families          # and per family

Reads W/eval/<policy>.jsonl (the "eval" split: each row holds the policy's answer, the SFT baseline draws it was
judged against and the labelers' verdicts `wins`) and scores both sides of every comparison with the world's gold
judge again. No model runs. Columns:

- gold better / equal / worse: the share of comparisons in which the policy's answer has more, the same or less
  gold than the SFT draw it was judged against (equal is mostly the same text, or two answers at gold 1);
- labelers: the win rate the evaluation reports (ties count 1/2);
- gold-exact: the win rate a labeler who followed gold exactly would give (better 1, equal 1/2, worse 0): how
  far the labelers' noise and length bias move the verdicts;
- never worse: gold-exact with every gold-worse comparison counted as a tie instead: the win rate this policy
  would have if RLHF had not made any answer worse than SFT's;
- gold-perfect: the win rate of a policy at gold 1 on every prompt against the same SFT draws (1 where the SFT
  draw is below 1, else 1/2): the ceiling that SFT's own quality leaves on these prompts;
- hard slice: the same three shares and gold-exact on the algorithmic families (reverse, sort, ...), where the
  RM cannot judge (docs/RESULTS.md, "Where the win rate is decided").
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from instructgpt_jax.data.records import jsonl_records  # noqa: E402
from instructgpt_jax.data.world import gold_score, kind_of  # noqa: E402

EPS = 1e-9


def comparisons(workdir: str, policy: str) -> dict:
    """Every (policy answer, SFT draw) comparison of the eval split: family, hard, the two golds, the verdict.
    Each answer is judged once and repeated over its draws."""
    path = os.path.join(workdir, "eval", f"{policy}.jsonl")
    if not os.path.exists(path):
        raise SystemExit(f"{path}: no such file (run the eval stage; policies are the files in {workdir}/eval)")
    rows = []
    for where, row in jsonl_records(path):
        if row["split"] != "eval":
            continue
        if "wins" not in row or len(row["wins"]) != len(row["reference_responses"]):
            raise SystemExit(f"{where}: expected `wins` beside each of `reference_responses`")
        rows.append(row)
    if not rows:
        raise SystemExit(f"{path}: no rows of the eval split")
    prompts = [r["prompt"] for r in rows]
    draws = [len(r["wins"]) for r in rows]

    def per_draw(values):  # a row's value, once for each of its draws
        return np.repeat(np.asarray(values), draws)

    return {"family": per_draw([r["family"] for r in rows]),
            "hard": per_draw([kind_of(p) == "hard" for p in prompts]),
            "gold_policy": per_draw(np.asarray(gold_score(prompts, [r["response"] for r in rows]), np.float64)),
            "gold_sft": np.asarray(gold_score(np.repeat(prompts, draws).tolist(),
                                              [d for r in rows for d in r["reference_responses"]]), np.float64),
            "win": np.asarray([w for r in rows for w in r["wins"]], np.float64), "prompts": len(set(prompts))}


def decompose(c: dict, mask=None) -> dict:
    """The shares and win rates of the module docstring over the comparisons selected by `mask`."""
    m = np.ones(len(c["win"]), bool) if mask is None else mask
    better = c["gold_policy"][m] > c["gold_sft"][m] + EPS
    worse = c["gold_policy"][m] < c["gold_sft"][m] - EPS
    exact = np.where(better, 1.0, np.where(worse, 0.0, 0.5))
    return {"comparisons": int(m.sum()), "better": better.mean(), "equal": 1.0 - better.mean() - worse.mean(),
            "worse": worse.mean(), "labelers": c["win"][m].mean(), "gold_exact": exact.mean(),
            "never_worse": np.where(worse, 0.5, exact).mean(),
            "gold_perfect": np.where(c["gold_sft"][m] < 1.0 - EPS, 1.0, 0.5).mean()}


def row(name: str, c: dict) -> str:
    d, h = decompose(c), decompose(c, c["hard"])
    hard = f"{h['better']:.2f} / {h['worse']:.2f}, {h['gold_exact']:.3f}" if h["comparisons"] else "-"
    return (f"| {name} | {c['prompts']} ({d['comparisons']}) | {d['better']:.3f} / {d['equal']:.3f} / "
            f"{d['worse']:.3f} | {d['labelers']:.3f} | {d['gold_exact']:.3f} | {d['never_worse']:.3f} | "
            f"{d['gold_perfect']:.3f} | {hard} |")


def family_rows(c: dict) -> list[str]:
    out = ["| family | comparisons | better / equal / worse | labelers | gold-exact | gold-perfect |",
           "|---|---|---|---|---|---|"]
    for fam in sorted(set(c["family"]), key=lambda f: (-np.sum(c["family"] == f), f)):
        d = decompose(c, c["family"] == fam)
        out.append(f"| {fam} | {d['comparisons']} | {d['better']:.2f} / {d['equal']:.2f} / {d['worse']:.2f} | "
                   f"{d['labelers']:.2f} | {d['gold_exact']:.2f} | {d['gold_perfect']:.2f} |")
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("workdirs", nargs="+", help="pipeline workdirs with an eval stage")
    p.add_argument("--policy", default="ppo_ptx", help="W/eval/<policy>.jsonl (ppo_ptx, ppo, sft, ...)")
    p.add_argument("--families", action="store_true", help="also a table per family for each run")
    args = p.parse_args(argv)
    runs = [(w.rstrip("/").split("/")[-1], comparisons(w, args.policy)) for w in args.workdirs]
    print(f"{args.policy} against SFT's draws, comparison by comparison")
    print("| run | prompts (comparisons) | gold: better / equal / worse | labelers | gold-exact | never worse "
          "| gold-perfect | hard slice: better / worse, gold-exact |")
    print("|---|---|---|---|---|---|---|---|")
    for name, c in runs:
        print(row(name, c))
    if args.families:
        for name, c in runs:
            print(f"\n{name}")
            print("\n".join(family_rows(c)))


if __name__ == "__main__":
    main()
