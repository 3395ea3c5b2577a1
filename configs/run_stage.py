"""The config a finished stage ran with, read back from its folder: the base of an ablation of that stage.

  instructgpt rm --config configs/run_stage.py:W/rm --config.train.epochs=1 --workdir W/rm_1ep
  python experiments/sweep.py --config configs/ablations/beta.py:W --workdir W/sweep_beta

The arg is a stage folder of a pipeline workdir (W/rm, W/ppo, W/ppo_ptx, ...). Every stage writes the config it
ran with to <folder>/config.json, input paths, model preset, tokenizer, token lengths and the pipeline seed's
share of its seeds included, so a run built on it differs from that stage in the overridden keys and nothing
else, whatever flags the pipeline had (`--config.seed=2`, `--config.model=small_cpu-world`, ...). The ablations
in configs/ablations/ that start from a pipeline's SFT, comparisons or RM use it as their base.
"""

import json
import os

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if not arg:
        raise ValueError("configs/run_stage.py needs a stage folder after the colon, e.g. configs/run_stage.py:W/rm")
    path = os.path.join(arg, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"configs/run_stage.py:{arg}: {path} does not exist; run that stage first (the "
                                f"pipeline writes config.json into every stage folder it runs)")
    with open(path) as f:
        try:
            values = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {e.lineno}: not valid JSON ({e.msg})") from e
    if not isinstance(values, dict) or "stage" not in values:
        raise ValueError(f"{path}: expected a stage config (a JSON object with a 'stage' key)")
    return ml_collections.ConfigDict(_tuples(values))


def _tuples(value):
    """JSON lists back to the tuples the config files write (mesh shapes and rules, family names, ...)."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value
