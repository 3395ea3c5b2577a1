"""How much one sampling draw moves a policy's gold: the policy's mean gold on a run's eval prompts under many
sampling keys, against the key the run's evaluation used.

  python experiments/sampling_spread.py runs/default --keys 0-9
  python experiments/sampling_spread.py runs/default --policy ppo_ptx --keys 0-19,777 --out spread.json

Every policy of an evaluation samples its answers with one key (config.eval.seed), so a table row is one draw
of that policy: the SFT row's win rate and gold sit above or below the policy's mean by that draw's luck.
This samples the policy's answers to the same prompts (the evaluation's settings, read from W/summary.json's
"eval": prompts, temperature, lengths) with each key of `--keys` and scores them with the world's gold
judge, then prints each key's mean gold, the mean and standard deviation over keys, and where the
evaluation's own key lies. The eval stage must have run (its summary names the settings and the key).
docs/RESULTS.md ("Gold against the SFT samples the win rate uses") has what it showed.
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
host.prepare("sampling_spread")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from instructgpt_jax import checkpoint, evaluate  # noqa: E402
from instructgpt_jax.config_base import mesh_config  # noqa: E402
from instructgpt_jax.data.world import make_world  # noqa: E402
from instructgpt_jax.sampling import SampleConfig, make_generate  # noqa: E402
from instructgpt_jax.tokenizer import make_tokenizer  # noqa: E402


def parse_keys(text: str) -> list[int]:
    """"0-3,777" -> [0, 1, 2, 3, 777]; an empty or malformed part is an error naming it."""
    keys = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            keys += list(range(int(lo), int(hi) + 1)) if dash else [int(lo)]
        except ValueError:
            raise ValueError(f"--keys {text!r}: part {part!r} is not N or N-M") from None
    if not keys:
        raise ValueError(f"--keys {text!r}: no keys")
    return keys


def spread(workdir: str, policy: str, keys: list[int]) -> dict:
    """Mean gold of `policy`'s samples on `workdir`'s eval prompts for each key, their mean and standard
    deviation (ddof 1), and the evaluation's own key and its gold (computed here, like every other key)."""
    path = os.path.join(workdir, "summary.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file; run the eval stage of {workdir} first")
    with open(path) as f:
        saved = json.load(f).get("eval")
    if not saved:
        raise ValueError(f"{path}: no \"eval\" section; run the eval stage of {workdir} first")
    ec = evaluate.eval_config({k: v for k, v in saved.items() if k not in ("mesh", "tokenizer")})
    if policy not in ec.folders:
        raise ValueError(f"--policy {policy!r}: the evaluation of {workdir} has policies {sorted(ec.folders)}")
    with open(os.path.join(workdir, "world", "world.json")) as f:
        world = make_world(json.load(f)["config"], "world.json")
    tokenizer = make_tokenizer(saved["tokenizer"])
    prompts = [r["prompt"] for r in evaluate._read_eval(os.path.join(workdir, "world", "eval.jsonl"), ec.prompts)]
    prefix = ec.prompt_prefix if policy == ec.prompted_name else ""
    mesh, shardings = checkpoint.mesh_and_shardings(mesh_config())
    _, graphdef, params, _ = checkpoint.load_model(os.path.join(workdir, ec.folders[policy]), shardings=shardings)
    sample_cfg = SampleConfig(max_new_tokens=ec.max_new_tokens, temperature=ec.temperature, top_p=ec.top_p,
                              eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)
    generate = make_generate(graphdef, sample_cfg, mesh)
    prompt_len = evaluate.fitted_prompt_len(tokenizer, {"eval": prompts}, prefix, ec)
    gold = {}
    with jax.set_mesh(mesh):
        for key in dict.fromkeys(keys + [ec.seed]):
            out = evaluate.sample_policy(generate, None, params, params, params, prompts, tokenizer, ec, mesh, key,
                                         prompt_len, prefix)
            gold[key] = float(np.mean(np.asarray(world.gold_score(prompts, out["response"]), np.float64)))
            print(f"key {key}: gold {gold[key]:.4f}", flush=True)
    values = np.array([gold[k] for k in keys])
    sd = float(values.std(ddof=1)) if len(values) > 1 else None
    return {"workdir": workdir, "policy": policy, "prompts": len(prompts),
            "gold_by_key": {str(k): gold[k] for k in keys}, "mean": float(values.mean()), "sd": sd,
            "eval_key": ec.seed, "eval_key_gold": gold[ec.seed],
            "eval_key_z": (gold[ec.seed] - float(values.mean())) / sd if sd else None}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workdir", help="a pipeline workdir whose eval stage has run")
    p.add_argument("--policy", default="sft", help="a policy of that evaluation (default sft)")
    p.add_argument("--keys", default="0-9", help="sampling keys: N, N-M, comma-separated (default 0-9)")
    p.add_argument("--out", default="", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    keys = parse_keys(args.keys)
    figures = spread(args.workdir, args.policy, keys)
    sd = "-" if figures["sd"] is None else f"{figures['sd']:.4f}"
    print(f"{args.workdir} {args.policy}: gold over {len(keys)} keys mean {figures['mean']:.4f}, sd {sd}; "
          f"the evaluation's key {figures['eval_key']} gives {figures['eval_key_gold']:.4f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(figures, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
