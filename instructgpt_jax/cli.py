"""`instructgpt <command> --config configs/X.py[:arg] [--config.key=value ...] --workdir DIR`.

Every command is a thin wrapper over a function a notebook can call with a ConfigDict. Overrides of keys
the config does not have are an error (the config is locked), as are values of the wrong type.

Commands:
  world       write the embedded world's JSONL splits            (--config configs/world.py --out DIR)
  pretrain    train the base GPT on the pretraining corpus       (--config configs/pretrain.py:tiny)
  sft         supervised fine-tuning on demonstrations           (--config configs/sft.py)
  compare     sample K responses per RM prompt, labelers rank     (--config configs/compare.py)
  rm          K-wise reward model                                (--config configs/rm.py)
  ppo         PPO / PPO-ptx against the reward model             (--config configs/ppo.py:ptx)
  pipeline    pretrain -> SFT -> compare -> RM -> PPO -> eval -> report (--config configs/pipeline.py:smoke)
  eval        evaluate a pipeline workdir's policies             (--config configs/pipeline.py:smoke)
  report      report.md and plots from a pipeline workdir        (--workdir W)
  sample      sample from a stage's latest checkpoint            (--workdir W/sft --prompt "...")
  bench       throughput / MFU / memory benchmark                (--config configs/bench.py:trl_tiny)
  import-hf   Hugging Face GPT-2 folder -> checkpoint            (--hf_dir D --workdir W)
  export-hf   checkpoint -> Hugging Face GPT-2 folder            (--workdir W --hf_dir D)
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

def _flag_values(argv: list[str]) -> flags.FlagValues:
    """A fresh set of flags per call, so `main` can run many times in one process (notebooks, the tests).
    `argv` tells config_flags which --config.key overrides to define."""
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "Config file, optionally with :arg.", flag_values=fv,
                                    lock_config=True, sys_argv=argv)
    flags.DEFINE_string("workdir", None, "Run directory (one folder per stage under a pipeline workdir).", flag_values=fv)
    flags.DEFINE_string("out", None, "Output directory (world, bench).", flag_values=fv)
    flags.DEFINE_multi_string("prompt", [], "Prompt(s) for `sample`.", flag_values=fv)
    flags.DEFINE_string("hf_dir", None, "Hugging Face GPT-2 folder (config.json + model.safetensors).", flag_values=fv)
    flags.DEFINE_integer("max_new_tokens", 64, "`sample`: tokens to generate.", flag_values=fv)
    flags.DEFINE_float("temperature", 0.0, "`sample`: 0 = greedy.", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "`sample`: sampling seed.", flag_values=fv)
    return fv


# command -> (module, function, needs --config, needs --workdir)
COMMANDS = {
    "world": ("instructgpt_jax.data.formats", "write_world", True, False),
    "pretrain": ("instructgpt_jax.pretrain", "run", True, True),
    "sft": ("instructgpt_jax.sft", "run", True, True),
    "compare": ("instructgpt_jax.compare", "run", True, True),
    "rm": ("instructgpt_jax.reward", "run", True, True),
    "ppo": ("instructgpt_jax.ppo", "run", True, True),
    "pipeline": ("instructgpt_jax.pipeline", "run", True, True),
    "eval": ("instructgpt_jax.evaluate", "run", True, True),
    "report": ("instructgpt_jax.report", "run", False, True),
    "sample": ("instructgpt_jax.sampling", "sample_cli", False, True),
    "bench": ("instructgpt_jax.bench", "run", True, False),
    "import-hf": ("instructgpt_jax.hf", "import_hf", False, True),
    "export-hf": ("instructgpt_jax.hf", "export_hf", False, True),
}


def _usage() -> str:
    return __doc__


def _dispatch(command: str, fv: flags.FlagValues) -> None:
    module, fn_name, needs_config, needs_workdir = COMMANDS[command]
    config = fv.config
    if needs_config and config is None:
        raise app.UsageError(f"`instructgpt {command}` needs --config (see `instructgpt --help`)")
    if needs_workdir and not fv.workdir:
        raise app.UsageError(f"`instructgpt {command}` needs --workdir DIR")
    fn = getattr(importlib.import_module(module), fn_name)
    if command == "world":
        if not fv.out:
            raise app.UsageError("`instructgpt world` needs --out DIR")
        result = fn(config, fv.out)
    elif command == "bench":
        result = fn(config, fv.out)
    elif command == "report":
        result = fn(fv.workdir)
    elif command == "sample":
        result = fn(fv.workdir, fv.prompt, max_new_tokens=fv.max_new_tokens, temperature=fv.temperature, seed=fv.seed)
    elif command in ("import-hf", "export-hf"):
        if not fv.hf_dir:
            raise app.UsageError(f"`instructgpt {command}` needs --hf_dir DIR")
        result = fn(fv.hf_dir, fv.workdir)
    else:
        result = fn(config, fv.workdir)
    if isinstance(result, dict) and result:
        print(json.dumps(result, indent=2, default=str))


def _fail(command: str, message: str, code: int = 1) -> None:
    """The one line a user sees for bad input: which command, what is wrong (INSTRUCTGPT_TRACEBACK=1 for more)."""
    print(f"instructgpt {command}: error: {message}", file=sys.stderr)
    sys.exit(code)


def _check_config_args(command: str, args: list[str]) -> None:
    """Load --config and walk every --config.key override before absl does, so a missing file, an unknown
    config arg or an unknown key is one line naming it (ml_collections would raise a chained traceback)."""
    from instructgpt_jax import config_base

    spec, overrides = None, []
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            spec = args[i + 1]
        elif arg.startswith("--config="):
            spec = arg.split("=", 1)[1]
        elif arg.startswith("--config."):
            overrides.append(arg[len("--config."):].split("=", 1)[0])
    if spec is None:
        return
    try:
        config = config_base.load_config(spec)
    except (ValueError, FileNotFoundError, KeyError) as e:
        _fail(command, f"--config {spec}: {e}", 2)
    for dotted in overrides:
        node, walked = config, []
        for key in dotted.split("."):
            walked.append(key)
            if not hasattr(node, "keys") or key not in node:
                known = sorted(node.keys()) if hasattr(node, "keys") else []
                _fail(command, f"--config.{dotted}: config {spec} has no key {'.'.join(walked)!r}"
                      + (f"; keys there: {', '.join(known)}" if known else ""), 2)
            node = node[key]


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(_usage())
        sys.exit(0 if len(argv) >= 2 else 2)
    command = argv[1]
    if command not in COMMANDS:
        print(f"instructgpt: unknown command {command!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax logs every save step at INFO through absl
    _check_config_args(command, argv[2:])
    if not flags.FLAGS.is_parsed():  # absl's own flags (logging): defaults
        flags.FLAGS.mark_as_parsed()
    args = [f"instructgpt {command}"] + argv[2:]
    fv = _flag_values(args)
    try:
        rest = fv(args)
    except flags.Error as e:  # a wrong type, an unknown flag
        _fail(command, str(e).splitlines()[0], 2)
    try:
        if len(rest) > 1:
            raise app.UsageError(f"unexpected arguments: {rest[1:]}")
        _dispatch(command, fv)
    except app.UsageError as e:
        _fail(command, f"{e} (see `instructgpt --help`)", 2)
    except (ValueError, FileNotFoundError, FileExistsError, FloatingPointError, OSError, KeyError) as e:
        # Bad input is the user's to fix: one line naming what is wrong. INSTRUCTGPT_TRACEBACK=1 shows the trace.
        if os.environ.get("INSTRUCTGPT_TRACEBACK") == "1":
            raise
        _fail(command, f"{type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
