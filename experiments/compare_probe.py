"""What the labelers see in a compare stage's comparisons, per family: gold, its spread, Figure 4 metadata,
and how often two labelers agree (the paper's 72.6% is measured on exactly this kind of data).

  python experiments/compare_probe.py --workdir runs/default
  python experiments/compare_probe.py --workdir runs/default --labeler noise_mean=0.02 --labeler length_bias_std=0.1

Reads W/world/world.json (the world's config) and W/compare/rm.jsonl (K samples of the SFT policy per
prompt); each prompt's samples are ranked by two distinct random labelers and their agreement is counted on
the pairs the first does not tie (`labelers.untied_agreement`, as `compare/labeler_agreement`). `--labeler
key=value` overrides the pool's settings: the way to calibrate `world.labelers.noise_mean` on a new policy's
samples (docs/RESULTS.md). Prints one line overall and one per family (its kind, prompts, mean gold, mean
within-prompt gold spread, the share of response pairs whose gold ties and whose gold differs by at least
`MARGIN` (the pairs that can teach an RM the family's check), agreement, metadata rates).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


MARGIN = 0.3  # a gold gap the labelers' noise rarely reverses: an informative pair


def probe(workdir: str, labeler_overrides: dict, seed: int = 0) -> dict:
    """{"agreement", "pairs", "prompts", "families": {family: {...}}} of W/compare/rm.jsonl."""
    import numpy as np

    from instructgpt_jax.data import judge, labelers, world

    with open(os.path.join(workdir, "world", "world.json")) as f:
        cfg = json.load(f)["config"]
    cfg["labelers"].update(labeler_overrides)
    w = world.make_world(cfg)
    rng = np.random.default_rng(seed)
    by = collections.defaultdict(lambda: collections.defaultdict(list))
    with open(os.path.join(workdir, "compare", "rm.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    for r in records:
        prompt, ys = r["prompt"], r["responses"]
        d = by[w.family_of(prompt)]
        gold = w.gold_score([prompt] * len(ys), ys)
        d["gold"] += gold.tolist()
        d["spread"].append(float(np.ptp(gold)))
        gaps = np.abs(gold[:, None] - gold[None, :])[np.triu_indices(len(ys), 1)]
        d["tied"] += (gaps < 1e-9).tolist()
        d["informative"] += (gaps >= MARGIN).tolist()
        la, lb = rng.choice(w.labelers.n, 2, replace=False)
        agree, pairs = labelers.untied_agreement(w.rank(prompt, ys, la, rng), w.rank(prompt, ys, lb, rng))
        d["agree"].append(agree)
        d["pairs"].append(pairs)
        for key, rate in judge.metadata_rates([prompt] * len(ys), ys).items():
            if rate is not None:
                d[key].append(rate)
    families = {}
    for name, d in by.items():
        families[name] = {"kind": judge.FAMILIES[name].kind, "prompts": len(d["spread"]),
                          "gold": float(np.mean(d["gold"])), "spread": float(np.mean(d["spread"])),
                          "tied": float(np.mean(d["tied"])), "informative": float(np.mean(d["informative"])),
                          "agreement": sum(d["agree"]) / max(sum(d["pairs"]), 1), "pairs": sum(d["pairs"]),
                          **{k: float(np.mean(d[k])) for k in ("violates_constraints", "hallucinates", "inappropriate",
                                                               "fails_to_attempt") if d[k]}}
    pairs = sum(f["pairs"] for f in families.values())
    agreement = sum(f["agreement"] * f["pairs"] for f in families.values()) / max(pairs, 1)
    return {"agreement": agreement, "pairs": pairs, "prompts": len(records), "families": families}


def parse_overrides(items: list[str]) -> dict:
    """`--labeler key=value` items -> {key: value}, each key a field of `labelers.LabelerConfig` and each value
    of that field's type (`n` an integer, `model` a name, the rest numbers); anything else is a SystemExit
    naming the item and what it expects."""
    import typing

    from instructgpt_jax.data import labelers

    types = typing.get_type_hints(labelers.LabelerConfig)  # as config_base.from_config reads a dataclass's fields
    overrides = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise SystemExit(f"--labeler {item!r}: expected key=value, e.g. noise_mean=0.05")
        if key not in types:
            raise SystemExit(f"--labeler {item!r}: no labeler setting {key!r}; expected one of {', '.join(types)}")
        kind = types[key]
        try:
            overrides[key] = kind(value)
        except ValueError:
            raise SystemExit(f"--labeler {item!r}: {key} takes {'an integer' if kind is int else 'a number'}") from None
    return overrides


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True, help="pipeline workdir with world/ and compare/")
    p.add_argument("--labeler", action="append", default=[], help="labeler pool override key=value (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = probe(args.workdir, parse_overrides(args.labeler), args.seed)
    print(f"two labelers agree on {out['agreement']:.3f} of {out['pairs']} untied pairs ({out['prompts']} prompts)")
    order = {k: i for i, k in enumerate(("constraint", "closed", "language", "harmful", "open", "hard"))}
    for name, f in sorted(out["families"].items(), key=lambda kv: (order.get(kv[1]["kind"], 9), kv[0])):
        meta = " ".join(f"{k}={f[k]:.2f}" for k in ("violates_constraints", "hallucinates", "inappropriate") if k in f)
        print(f"{name:12s} {f['kind']:10s} prompts {f['prompts']:4d}  gold {f['gold']:.3f}  spread {f['spread']:.2f}  "
              f"tied {f['tied']:.2f}  gap>={MARGIN} {f['informative']:.2f}  agree {f['agreement']:.3f}  {meta}")


if __name__ == "__main__":
    main()
