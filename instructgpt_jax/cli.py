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

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, optionally with :arg.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (one folder per stage under a pipeline workdir).")
_OUT = flags.DEFINE_string("out", None, "Output directory (world, bench).")
_PROMPT = flags.DEFINE_multi_string("prompt", [], "Prompt(s) for `sample`.")
_HF_DIR = flags.DEFINE_string("hf_dir", None, "Hugging Face GPT-2 folder (config.json + model.safetensors).")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 64, "`sample`: tokens to generate.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.0, "`sample`: 0 = greedy.")
_SEED = flags.DEFINE_integer("seed", 0, "`sample`: sampling seed.")

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


def _dispatch(command: str) -> None:
    module, fn_name, needs_config, needs_workdir = COMMANDS[command]
    config = _CONFIG.value
    if needs_config and config is None:
        raise app.UsageError(f"`instructgpt {command}` needs --config (see `instructgpt --help`)")
    if needs_workdir and not _WORKDIR.value:
        raise app.UsageError(f"`instructgpt {command}` needs --workdir DIR")
    fn = getattr(importlib.import_module(module), fn_name)
    if command == "world":
        if not _OUT.value:
            raise app.UsageError("`instructgpt world` needs --out DIR")
        result = fn(config, _OUT.value)
    elif command == "bench":
        result = fn(config, _OUT.value)
    elif command == "report":
        result = fn(_WORKDIR.value)
    elif command == "sample":
        result = fn(_WORKDIR.value, _PROMPT.value, max_new_tokens=_MAX_NEW.value, temperature=_TEMPERATURE.value, seed=_SEED.value)
    elif command in ("import-hf", "export-hf"):
        if not _HF_DIR.value:
            raise app.UsageError(f"`instructgpt {command}` needs --hf_dir DIR")
        result = fn(_HF_DIR.value, _WORKDIR.value)
    else:
        result = fn(config, _WORKDIR.value)
    if isinstance(result, dict) and result:
        print(json.dumps(result, indent=2, default=str))


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

    def _main(rest):
        if len(rest) > 1:
            raise app.UsageError(f"unexpected arguments: {rest[1:]}")
        try:
            _dispatch(command)
        except (ValueError, FileNotFoundError, FileExistsError, FloatingPointError, OSError) as e:
            # Bad input is the user's to fix: one line naming what is wrong. INSTRUCTGPT_TRACEBACK=1 shows the trace.
            if os.environ.get("INSTRUCTGPT_TRACEBACK") == "1":
                raise
            print(f"instructgpt {command}: error: {type(e).__name__}: {e}", file=sys.stderr)
            sys.exit(1)

    app.run(_main, argv=[f"instructgpt {command}"] + argv[2:])


if __name__ == "__main__":
    main()
