"""Run the runs of an ablation config one after another and gather one results table.

  python experiments/sweep.py --config configs/ablations/beta.py --workdir runs/beta            # run all
  python experiments/sweep.py --config configs/ablations/beta.py --workdir runs/beta --dry_run  # print them
  python experiments/sweep.py --config configs/ablations/beta.py --workdir runs/beta --runs beta_0,beta_0.1

An ablation config's `get_config(arg)` returns `config.base` = "configs/X.py:arg" (a stage or pipeline config)
and `config.runs` = {name: overrides}. ConfigDict keys cannot contain dots, so overrides are written nested,
{"ppo": {"beta": 0.0}}, or as a tuple of ("ppo.beta", 0.0) pairs; both mean `--config.ppo.beta=0.0`. Runs go
in the order `config.runs` iterates: ConfigDict sorts keys unless built with `ConfigDict(runs, sort_keys=False)`.
Run `name` goes to W/<name> with the command `instructgpt <config.stage>`; finished runs are skipped (every
stage resumes), so rerunning a sweep only does what is missing. Pipeline runs share their upstream stages:
a stage whose config is the same as in the first run (pretrain, SFT and RM in a beta sweep) is linked from
there, not retrained. The table, one row per run with its overrides and figures, goes to W/sweep.md and
W/sweep.json; a pipeline run's figures come from its summary.json, a stage run's from what it returns. A
sweep of PPO runs (beta, ptx_coef) also plots every run's gold and RM score against KL (W/sweep.png).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as a script from anywhere: make the package and configs/ resolvable
    sys.path.insert(0, ROOT)

from instructgpt_jax import host  # noqa: E402

# Before anything imports jax: the devices and compilation cache `instructgpt` gives a stage (host.prepare).
host.prepare("sweep")

from instructgpt_jax.config_base import apply_overrides, load_config  # noqa: E402

# Figures a pipeline run's row shows (summary.json paths); a stage run shows everything it returns.
PIPELINE_COLUMNS = (
    "policies.ppo_ptx.win_rate", "policies.ppo.win_rate", "policies.ppo_ptx.gold", "policies.ppo.gold",
    "policies.sft.gold", "policies.ppo_ptx.rm_score", "policies.ppo_ptx.kl", "policies.ppo.kl",
    "policies.ppo_ptx.alignment_tax", "policies.ppo.alignment_tax", "policies.ppo_ptx.length",
    "policies.ppo_ptx.refusal_rate", "rm.accuracy",
)
# Added when a run has several RLHF rounds (configs/ablations/rounds.py): the last round's policy and RMs.
ROUND_COLUMNS = ("rounds.-1.round", "rounds.-1.gold", "rounds.-1.win_rate", "rounds.-1.kl", "rounds.-1.rm_score",
                 "rounds.-1.stale_rm_accuracy", "rounds.-1.stale_rm_drop", "rounds.-1.rm_accuracy")


def flatten(overrides, prefix: str = "") -> dict:
    """{"ppo": {"beta": 0}} or (("ppo.beta", 0),) or {"ppo.beta": 0} -> {"ppo.beta": 0}."""
    if isinstance(overrides, (tuple, list)):
        return {str(k): v for k, v in overrides}
    items = overrides.items() if hasattr(overrides, "items") else ()
    out = {}
    for key, value in items:
        name = f"{prefix}{key}"
        if hasattr(value, "items"):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def plan(spec: str, workdir: str, only: list[str] | None = None) -> list[dict]:
    """[{name, workdir, base, overrides, config, command}] for the runs of the ablation config `spec`."""
    ablation = load_config(spec)
    for key in ("base", "runs"):
        if key not in ablation:
            raise ValueError(f"{spec}: an ablation config needs config.{key} (see experiments/sweep.py)")
    runs = {name: flatten(value) for name, value in ablation.runs.items()}
    unknown = sorted(set(only or ()) - set(runs))
    if unknown:
        raise ValueError(f"--runs {unknown} are not runs of {spec}; it has {sorted(runs)}")
    out = []
    for name, overrides in runs.items():
        if only and name not in only:
            continue
        config = load_config(ablation.base)
        try:
            apply_overrides(config, overrides)
        except (KeyError, TypeError) as e:
            raise ValueError(f"{spec}: run {name!r}: {e}") from e
        stage = config.get("stage")
        if stage is None:
            raise ValueError(f"{ablation.base}: config.stage is missing; cannot tell which command runs it")
        run_dir = os.path.join(workdir, name)
        flags = " ".join(f"--config.{k}={_flag_value(v)}" for k, v in overrides.items())
        command = f"instructgpt {stage} --config {ablation.base} {flags} --workdir {run_dir}".replace("  ", " ")
        out.append({"name": name, "workdir": run_dir, "base": ablation.base, "stage": stage, "overrides": overrides,
                    "config": config, "command": command})
    return out


def _flag_value(v) -> str:
    text = str(tuple(v)) if isinstance(v, (list, tuple)) else str(v)
    return f"'{text}'" if any(c in text for c in " ()[],") else text


def execute(run: dict, reuse_from: str | None) -> dict:
    """Run one entry of `plan` in this process; returns its figures."""
    from instructgpt_jax import cli

    module, fn_name, _, _ = cli.COMMANDS[run["stage"]]
    fn = getattr(importlib.import_module(module), fn_name)
    if run["stage"] == "pipeline":
        fn(run["config"], run["workdir"], reuse_from=reuse_from)
        with open(os.path.join(run["workdir"], "summary.json")) as f:
            return json.load(f)
    result = fn(run["config"], run["workdir"]) or {}
    with open(os.path.join(run["workdir"], "result.json"), "w") as f:
        json.dump(result, f, indent=2, default=float)
    return result


def lookup(tree: dict, dotted: str):
    """tree["a"]["b"] for "a.b"; an integer key indexes a list ("rounds.-1.gold": the last round's gold)."""
    node = tree
    for key in dotted.split("."):
        if isinstance(node, list) and key.lstrip("-").isdigit() and -len(node) <= int(key) < len(node):
            node = node[int(key)]
        elif isinstance(node, dict) and key in node:
            node = node[key]
        else:
            return None
    return node


def table(runs: list[dict], results: dict[str, dict]) -> tuple[list[str], list[list]]:
    """(header, rows): run name, its override values, then its figures."""
    keys = list(dict.fromkeys(k for r in runs for k in r["overrides"]))
    pipeline = any(r["stage"] == "pipeline" for r in runs)
    if pipeline:
        columns = PIPELINE_COLUMNS
        if any(len(results.get(r["name"], {}).get("rounds") or ()) > 1 for r in runs):
            columns = ROUND_COLUMNS + PIPELINE_COLUMNS
        figures = [c for c in columns if any(lookup(results.get(r["name"], {}), c) is not None for r in runs)]
    else:
        figures = list(dict.fromkeys(k for r in runs for k in results.get(r["name"], {})))
    header = ["run", *keys, *figures]
    rows = []
    for r in runs:
        res = results.get(r["name"], {})
        rows.append([r["name"], *(r["overrides"].get(k) for k in keys), *(lookup(res, f) if pipeline else res.get(f) for f in figures)])
    return header, rows


def markdown(header: list[str], rows: list[list]) -> str:
    def cell(v):
        if v is None:
            return "-"
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="ablation config, configs/ablations/X.py[:arg]")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--runs", default="", help="comma-separated run names (default: all)")
    parser.add_argument("--dry_run", action="store_true", help="print each run's command and stop")
    args = parser.parse_args(argv)
    runs = plan(args.config, args.workdir, [r for r in args.runs.split(",") if r])
    if args.dry_run:
        for r in runs:
            print(r["command"])
        return 0
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.makedirs(args.workdir, exist_ok=True)
    results, first = {}, None
    for i, r in enumerate(runs):
        t0 = time.time()
        print(f"[sweep {i + 1}/{len(runs)}] {r['name']}: {r['command']}", flush=True)
        results[r["name"]] = execute(r, reuse_from=first)
        first = first or r["workdir"]
        print(f"[sweep {i + 1}/{len(runs)}] {r['name']} done in {time.time() - t0:.0f} s", flush=True)
    header, rows = table(runs, results)
    text = f"# Sweep {args.config}\n\nbase: `{runs[0]['base']}`\n\n" + markdown(header, rows) if runs else ""
    with open(os.path.join(args.workdir, "sweep.md"), "w") as f:
        f.write(text)
    if runs and all(r["stage"] == "ppo" for r in runs):
        from instructgpt_jax import report

        if report.plot_ppo_runs({r["name"]: r["workdir"] for r in runs}, os.path.join(args.workdir, "sweep.png")):
            text += "\n![gold and RM score against KL, one line per run](sweep.png)\n"
            with open(os.path.join(args.workdir, "sweep.md"), "w") as f:
                f.write(text)
    with open(os.path.join(args.workdir, "sweep.json"), "w") as f:
        json.dump({"config": args.config, "header": header, "rows": rows}, f, indent=2, default=str)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
