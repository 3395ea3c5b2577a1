"""Re-judge a finished evaluation's samples with other labelers: how much of a win rate is the labelers' draw.

  python experiments/rejudge.py --workdir runs/default
  python experiments/rejudge.py --workdir runs/default --labeler noise_mean=0.05 --draws 5

Reads W/world/world.json (the labelers the run was judged by), W/summary.json (which policy is the
reference) and W/eval/<policy>.jsonl (each prompt's first answer and the SFT baseline draws it was judged
against, `evaluate.sample_record`), and judges every answer again against the same baseline draws: once with the
run's own labeler pool and once with the `--labeler key=value` overrides, all of them together (as in
experiments/compare_probe.py), each `--draws` times with fresh labeler assignments and noise. Every setting sees
the same assignments and noise stream in its draw d, so a difference between two columns is the setting's doing,
and the spread over draws is what the labelers' draw alone moves a win rate by (the evaluation's interval counts
only the prompts). The reference policy (SFT, ~0.5 against itself) is
left out. Prints one line per policy and split: the stored win rate, then each setting's mean and range over
draws. Answers of several policy draws: the first draw is re-judged (the stored figure averages all draws).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "experiments")):
    if path not in sys.path:
        sys.path.insert(0, path)

from compare_probe import parse_overrides  # noqa: E402


def _records(path: str) -> dict:
    """{split: [record, ...]} of one W/eval/<policy>.jsonl."""
    out = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                out.setdefault(r["split"], []).append(r)
    return out


def rejudge(workdir: str, settings: dict[str, dict], draws: int = 3, seed: int = 0) -> dict:
    """{policy: {split: {"stored": win rate, "n": prompts, setting: [win rate of each draw]}}} for each
    W/eval/<policy>.jsonl but the reference's; `settings` maps a name to labeler overrides ({} = as the run)."""
    import numpy as np

    from instructgpt_jax.data import world as world_lib

    with open(os.path.join(workdir, "world", "world.json")) as f:
        base = json.load(f)["config"]
    worlds = {}
    for name, overrides in settings.items():
        cfg = json.loads(json.dumps(base))
        cfg["labelers"].update(overrides)  # an unknown key is make_world's error (config_base.from_config names it)
        worlds[name] = world_lib.make_world(cfg, f"{workdir}/world/world.json with {overrides}")
    with open(os.path.join(workdir, "summary.json")) as f:
        reference = json.load(f)["eval"]["reference"]
    folder = os.path.join(workdir, "eval")
    policies = sorted(p[:-len(".jsonl")] for p in os.listdir(folder) if p.endswith(".jsonl"))
    out = {}
    for policy in policies:
        if policy == reference:
            continue
        for split, rows in _records(os.path.join(folder, f"{policy}.jsonl")).items():
            prompts, answers = [r["prompt"] for r in rows], [r["response"] for r in rows]
            baseline = [r.get("reference_responses") or [r["reference_response"]] for r in rows]
            if len({len(b) for b in baseline}) != 1:
                raise ValueError(f"{folder}/{policy}.jsonl ({split}): the prompts hold different numbers of "
                                 "baseline draws; expected one evaluation's records")
            entry = out.setdefault(policy, {})[split] = {"stored": float(np.mean([r["win"] for r in rows])),
                                                         "n": len(rows)}
            for name, world in worlds.items():
                wins = []
                for d in range(draws):
                    rng = np.random.default_rng([seed, d])  # the same stream for every setting in draw d
                    ids = rng.integers(world.labelers.n, size=len(rows))
                    verdicts = [world.preferences(prompts, answers, [b[j] for b in baseline], rng, ids)
                                for j in range(len(baseline[0]))]
                    wins.append(float(np.mean(verdicts)))
                entry[name] = wins
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True, help="pipeline workdir with world/ and a finished eval/")
    p.add_argument("--labeler", action="append", default=[],
                   help="labeler pool override key=value (repeatable; all of them make one further setting)")
    p.add_argument("--draws", type=int, default=3, help="labeler draws per setting")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.draws < 1:
        p.error(f"--draws {args.draws}: expected at least 1")
    settings = {"as run": {}}
    if args.labeler:
        settings[" ".join(args.labeler)] = parse_overrides(args.labeler)
    out = rejudge(args.workdir, settings, args.draws, args.seed)
    for policy, splits in out.items():
        for split, e in splits.items():
            cols = "  ".join(f"{name}: {sum(w) / len(w):.4f} ({min(w):.4f}-{max(w):.4f})"
                             for name, w in ((n, e[n]) for n in settings))
            print(f"{policy:14s} {split:8s} n={e['n']:4d}  stored {e['stored']:.4f}  {cols}")


if __name__ == "__main__":
    main()
