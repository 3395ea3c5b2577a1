"""Head to head: one evaluated policy against another, possibly of another workdir (another model size), on the
same eval prompts, judged by the world's labelers: the paper's Figure 1 comparison across sizes.

  python experiments/head_to_head.py A_WORKDIR:ppo_ptx B_WORKDIR:sft [--out FILE.json]

Each side is a workdir whose `eval` stage has run, and the name of one of its policies (W/eval/<name>.jsonl).
Both must have been evaluated on the same world and the same prompts, in the same order (the same
`--config.seed`: the eval takes the first N prompts of W/world/eval.jsonl); a prompt that differs is an
error naming its row. For every prompt one labeler (drawn per prompt from a fixed stream) ranks A's sample
against B's: the win rate of A, with its 95% interval, the mean paired gold difference A - B with its
interval, and both per family; then the held-out split the same way. The paper's size analogue: PPO-ptx of
the 1.3B model preferred to SFT of the 175B (configs/ablations/model_size.py; figures in docs/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from instructgpt_jax.data.world import make_world  # noqa: E402
from instructgpt_jax.eval_figures import ci95  # noqa: E402

LABELER_STREAM = 11  # the labelers' draws here, apart from the eval's own streams


def read_side(spec: str) -> tuple[str, str, list[dict]]:
    workdir, _, name = spec.rpartition(":")
    if not workdir or not name:
        raise ValueError(f"{spec!r}: expected WORKDIR:POLICY, e.g. runs/default:ppo_ptx")
    path = os.path.join(workdir, "eval", f"{name}.jsonl")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file; run the eval stage of {workdir} with policy {name!r}")
    rows = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {i}: not valid JSON ({e.msg})") from e
    return workdir, name, rows


def world_config(workdir: str) -> dict:
    path = os.path.join(workdir, "world", "world.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file; the labelers need the world the policies were evaluated in")
    with open(path) as f:
        return json.load(f)["config"]


def compare(world, a_rows: list[dict], b_rows: list[dict], seed: int, where: str) -> dict:
    """{split: {win_rate, win_rate_ci95, gold_diff, gold_diff_ci95, n, by_family}} of A against B."""
    out = {}
    for split in dict.fromkeys(r["split"] for r in a_rows):
        a = [r for r in a_rows if r["split"] == split]
        b = [r for r in b_rows if r["split"] == split]
        if len(a) != len(b):
            raise ValueError(f"{where}: split {split!r} has {len(a)} prompts in A and {len(b)} in B")
        for i, (x, y) in enumerate(zip(a, b)):
            if x["prompt"] != y["prompt"]:
                raise ValueError(f"{where}: split {split!r}, row {i}: the prompts differ ({x['prompt']!r} / "
                                 f"{y['prompt']!r}); evaluate both with the same world and seed")
        rng = np.random.default_rng([seed, LABELER_STREAM])
        wins = world.preferences([x["prompt"] for x in a], [x["response"] for x in a], [y["response"] for y in b], rng)
        diff = np.array([x["gold"] - y["gold"] for x, y in zip(a, b)], np.float64)
        families = {}
        for x, w, d in zip(a, wins, diff):
            families.setdefault(x["family"], []).append((w, d))
        out[split] = {"n": len(a), "win_rate": float(np.mean(wins)),
                      "win_rate_ci95": ci95(np.asarray(wins, np.float64)),
                      "gold_a": float(np.mean([x["gold"] for x in a])),
                      "gold_b": float(np.mean([y["gold"] for y in b])),
                      "gold_diff": float(diff.mean()), "gold_diff_ci95": ci95(diff),
                      "by_family": {f: {"n": len(v), "win_rate": float(np.mean([w for w, _ in v])),
                                        "gold_diff": float(np.mean([d for _, d in v]))}
                                    for f, v in sorted(families.items())}}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="WORKDIR:POLICY whose win rate is reported, e.g. runs/tiny:ppo_ptx")
    parser.add_argument("b", help="WORKDIR:POLICY it is compared with, e.g. runs/small:sft")
    parser.add_argument("--seed", type=int, default=0, help="the labelers' draws")
    parser.add_argument("--out", default="", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    (wa, na, a), (wb, nb, b) = read_side(args.a), read_side(args.b)
    config = world_config(wa)
    if world_config(wb) != config:
        raise ValueError(f"{wa}/world and {wb}/world were made with different world configs; compare policies of "
                         f"one world")
    world = make_world(config, f"{wa}/world/world.json config")
    figures = compare(world, a, b, args.seed, f"{args.a} vs {args.b}")
    for split, f in figures.items():
        print(f"{split}: {na} ({wa}) against {nb} ({wb}), {f['n']} prompts: win rate {f['win_rate']:.3f} "
              f"+- {f['win_rate_ci95']:.3f}, gold {f['gold_a']:.3f} vs {f['gold_b']:.3f}, "
              f"difference {f['gold_diff']:+.3f} +- {f['gold_diff_ci95']:.3f}")
        print("| family | prompts | win rate | gold difference |\n|---|---|---|---|")
        for fam, v in f["by_family"].items():
            print(f"| {fam} | {v['n']} | {v['win_rate']:.2f} | {v['gold_diff']:+.3f} |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"a": args.a, "b": args.b, "seed": args.seed, **figures}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
