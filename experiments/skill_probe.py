"""Latent skills of a run's models: the web's own cloze questions, per skill (instructgpt_jax/skills.py).

  python experiments/skill_probe.py --workdir runs/default                    # W/pretrain and W/sft
  python experiments/skill_probe.py --workdir W --stages pretrain --n 400 --json out.json
  python experiments/skill_probe.py --workdir W --stages pretrain --steps all   # every kept checkpoint

Prints each stage's multiple-choice accuracy per skill beside the chance level, then the share of the
candidates' probability on the candidates the question states (skills.read). A skill the base model
does not have (accuracy near chance) is one SFT has nothing to elicit and the RM (initialised from SFT)
nothing to judge with: the family that needs it stays where the hard slice is (docs/RESULTS.md, "Latent
skills, web v3 and longer pretraining"). `--steps` probes older checkpoints too, a column each ("pretrain@1000"):
when a skill emerges. A stage keeps its newest checkpoints and, with `train.keep_period`, every multiple of that
(`pipeline :default` keeps every 1,000th pretraining step).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from instructgpt_jax import host  # noqa: E402

# Before anything imports jax: the devices and compilation cache `instructgpt` gives a stage (host.prepare).
host.prepare("skill_probe")


def _print_table(figures: dict, stages: list, key: str, level: str, level_header: str = "") -> None:
    """A row per skill: its `level` (chance, uniform share; the same for every stage) and each stage's `key`."""
    from instructgpt_jax import skills

    print(f"{'skill':8s} {level_header or level:>7s} " + " ".join(f"{s:>10s}" for s in stages))
    for skill in skills.SKILLS:
        print(f"{skill:8s} {figures[stages[0]][skill][level]:7.3f} "
              + " ".join(f"{figures[s][skill][key]:10.3f}" for s in stages))


def _steps(stage_dir: str, steps: str) -> list:
    """The checkpoint steps `--steps` names in one stage folder: [None] (its newest), all it keeps, or those listed
    (each one it must keep)."""
    from instructgpt_jax import checkpoint

    if not steps:
        return [None]
    kept = checkpoint.all_steps(os.path.join(stage_dir, "checkpoints"))
    if steps == "all":
        return kept
    try:
        wanted = [int(x) for x in steps.split(",") if x]
    except ValueError:
        raise SystemExit(f"--steps {steps!r}: expected '', 'all' or comma-separated steps, e.g. 1000,2000") from None
    missing = [x for x in wanted if x not in kept]
    if missing or not wanted:
        raise SystemExit(f"--steps {steps!r}: {stage_dir} keeps checkpoints at steps {kept}, not at {missing}")
    return wanted


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a pipeline workdir (or any folder of stage folders)")
    parser.add_argument("--stages", default="pretrain,sft", help="comma-separated stage folders under --workdir")
    parser.add_argument("--n", type=int, default=200, help="questions per skill")
    parser.add_argument("--seed", type=int, default=0, help="seed of the questions")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    parser.add_argument("--steps", default="", help="checkpoints to probe in each stage: '' (the newest), 'all' "
                        "(every kept one) or comma-separated steps")
    args = parser.parse_args(argv)
    if args.n < 1:
        raise SystemExit(f"--n {args.n}: expected at least one question per skill")
    from instructgpt_jax import skills

    stages = [s for s in args.stages.split(",") if s]
    if not stages:
        raise SystemExit(f"--stages {args.stages!r}: name at least one stage folder, e.g. pretrain,sft")
    missing = [s for s in stages if not os.path.isdir(os.path.join(args.workdir, s, "checkpoints"))]
    if missing:
        raise SystemExit(f"{args.workdir}: no checkpoints in {', '.join(missing)} (expected stage folders with "
                         "checkpoints/, e.g. pretrain,sft)")
    columns = [(s, step) for s in stages for step in _steps(os.path.join(args.workdir, s), args.steps)]
    figures = {}
    for s, step in columns:
        name = s if step is None else f"{s}@{step}"
        print(f"skill_probe: {os.path.join(args.workdir, s)}{'' if step is None else f' step {step}'}, "
              f"{args.n} questions a skill", file=sys.stderr, flush=True)
        figures[name] = skills.probe(os.path.join(args.workdir, s), args.n, args.seed, step=step)
    names = list(figures)
    _print_table(figures, names, "accuracy", "chance")
    # Where accuracy is at chance, this tells a model that copies what the question states (share above the
    # uniform one) from one that does not look at it at all.
    print("\nshare of the candidates' probability on those the question states")
    _print_table(figures, names, "in_context", "in_context_uniform", "uniform")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"workdir": args.workdir, "n": args.n, "seed": args.seed, "stages": figures}, f, indent=1)
    return figures


if __name__ == "__main__":
    main()
