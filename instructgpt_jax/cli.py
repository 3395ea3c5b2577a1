"""`instructgpt <command> --config configs/X.py[:arg] [--config.key=value ...] --workdir DIR`.

Every command is a thin wrapper over a function a notebook can call with a ConfigDict. Overrides of keys
the config does not have are an error (the config is locked), as are values of the wrong type.
`instructgpt --help` lists the commands with an example each; `instructgpt <command> --help` its flags and
its config file's keys with their defaults and meanings (usage.py reads them from the config files).
Before anything is loaded the folders are checked (folders.py): a command that writes its workdir needs a
folder on a writable filesystem and holds its lock while it runs; a read-only one (sample, report,
export-hf) never creates one. Bad input ends with one line, `instructgpt <command>: error: ...`, and Ctrl-C
with one line saying where a rerun resumes.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import re
import sys

from absl import app, flags
from ml_collections import config_flags

from instructgpt_jax import host

# Before anything imports jax: XLA reads the CPU device count once (host.py: one device per core), JAX its
# compilation cache's folder (host.py: compiled programs kept on disk for the next run).
try:
    host.prepare(sys.argv[1] if len(sys.argv) > 1 else None)
except ValueError as e:
    sys.exit(f"instructgpt: error: {e}")

from instructgpt_jax import checkpoint, config_base, folders, pipeline, usage  # noqa: E402

HELP = ("-h", "--help", "--helpfull", "--helpshort", "help")


def _flag_values(argv: list[str]) -> flags.FlagValues:
    """A fresh set of flags per call, so `main` can run many times in one process (notebooks, the tests).
    `argv` tells config_flags which --config.key overrides to define."""
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "Config file, optionally with :arg (e.g. configs/sft.py:smoke).",
                                    flag_values=fv, lock_config=True, sys_argv=argv)
    flags.DEFINE_string("workdir", None, "Run directory (one folder per stage under a pipeline workdir).", flag_values=fv)
    flags.DEFINE_boolean("restart", False, "Start over in a workdir that holds a run: the old folder is moved to "
                         "<workdir>.replaced-<time> (nothing is deleted).", flag_values=fv)
    flags.DEFINE_string("out", None, "Output directory (world, bench).", flag_values=fv)
    flags.DEFINE_multi_string("prompt", [], "`sample`: a prompt (repeat the flag for several).", flag_values=fv)
    flags.DEFINE_string("hf_dir", None, "Hugging Face GPT-2 folder (config.json + model.safetensors).", flag_values=fv)
    flags.DEFINE_integer("max_new_tokens", 64, "`sample`: most tokens generated per prompt (stops at EOS).", flag_values=fv)
    flags.DEFINE_float("temperature", 0.0, "`sample`: softmax temperature; 0 = greedy (the likeliest token).",
                       flag_values=fv)
    flags.DEFINE_integer("seed", 0, "`sample`: sampling seed (matters when temperature > 0).", flag_values=fv)
    return fv


# command -> (module, function, needs --config, needs --workdir)
COMMANDS = {
    "world": ("instructgpt_jax.data.formats", "write_world", True, False),
    "pretrain": ("instructgpt_jax.stages.pretrain", "run", True, True),
    "sft": ("instructgpt_jax.stages.sft", "run", True, True),
    "rm_nlp": ("instructgpt_jax.stages.sft", "run_nlp", True, True),
    "compare": ("instructgpt_jax.stages.compare", "run", True, True),
    "rm": ("instructgpt_jax.stages.rm", "run", True, True),
    "ppo": ("instructgpt_jax.stages.ppo", "run", True, True),
    "pipeline": ("instructgpt_jax.pipeline", "run", True, True),
    "eval": ("instructgpt_jax.evaluate", "run", True, True),
    "report": ("instructgpt_jax.report", "run", False, True),
    "sample": ("instructgpt_jax.sampling", "sample_cli", False, True),
    "bench": ("instructgpt_jax.bench", "run", True, False),
    "import-hf": ("instructgpt_jax.hf", "import_hf", False, True),
    "export-hf": ("instructgpt_jax.hf", "export_hf", False, True),
}

# command -> (what it does, one example); the example's --config is the file `<command> --help` describes.
EXAMPLES = {
    "world": ("the embedded world's JSONL splits (instructions, demonstrations, prompts, labelers)",
              "instructgpt world --config configs/world.py --out runs/world"),
    "pretrain": ("train the base GPT on the pretraining corpus",
                 "instructgpt pretrain --config configs/pretrain.py:tiny --workdir runs/pt"),
    "sft": ("supervised fine-tuning on demonstrations (model and tokenizer from init_from)",
            "instructgpt sft --config configs/sft.py --workdir runs/sft --config.init_from=runs/pt "
            "--config.data.train=runs/world/sft.jsonl"),
    "rm_nlp": ("the RM's start of the paper's App. C.2: fine-tune on the world's NLP datasets (written first)",
               "instructgpt rm_nlp --config configs/rm_nlp.py --workdir runs/rm_nlp --config.init_from=runs/pt"),
    "compare": ("sample K responses per RM prompt; the simulated labelers rank them",
                "instructgpt compare --config configs/compare.py --workdir runs/compare --config.policy=runs/sft "
                "--config.data.prompts=runs/world/rm_prompts.jsonl"),
    "rm": ("the K-wise reward model (eq. 1), from SFT",
           "instructgpt rm --config configs/rm.py --workdir runs/rm --config.init_from=runs/sft "
           "--config.data.train=runs/compare/rm.jsonl"),
    "ppo": ("PPO / PPO-ptx against the reward model (eq. 2)",
            "instructgpt ppo --config configs/ppo.py:ptx --workdir runs/ppo_ptx --config.init_policy=runs/sft "
            "--config.init_value=runs/rm --config.reward_model=runs/rm --config.data.prompts=runs/world/ppo.jsonl"),
    "pipeline": ("world -> pretrain -> SFT -> compare -> RM -> PPO, PPO-ptx -> eval -> report, resumable",
                 "instructgpt pipeline --config configs/pipeline.py:smoke --workdir runs/smoke"),
    "eval": ("evaluate a pipeline workdir's policies into W/eval and W/summary.json",
             "instructgpt eval --config configs/pipeline.py:smoke --workdir runs/smoke"),
    "report": ("W/report/report.md and plots from a pipeline workdir's summary.json",
               "instructgpt report --workdir runs/smoke"),
    "sample": ("responses of a stage folder's newest checkpoint to prompts",
               'instructgpt sample --workdir runs/smoke/sft --prompt "Reverse the words: red fox sky" --temperature 0.7'),
    "bench": ("throughput / MFU / memory of each stage's step",
              "instructgpt bench --config configs/bench.py:trl_tiny --out runs/bench"),
    "import-hf": ("a Hugging Face GPT-2 folder as a finished base-model checkpoint",
                  "instructgpt import-hf --hf_dir path/to/gpt2 --workdir runs/smoke/pretrain"),
    "export-hf": ("a stage's newest params as a Hugging Face GPT-2 folder",
                  "instructgpt export-hf --workdir runs/smoke/ppo_ptx --hf_dir out/gpt2"),
}
FLAGS_OF = {"world": ("config", "out"), "eval": ("config", "workdir"), "report": ("workdir",),
            "sample": ("workdir", "prompt", "max_new_tokens", "temperature", "seed"), "bench": ("config", "out"),
            "import-hf": ("hf_dir", "workdir"), "export-hf": ("workdir", "hf_dir")}  # the rest: config, workdir, restart
WRITERS = ("pretrain", "sft", "rm_nlp", "compare", "rm", "ppo", "pipeline", "eval", "import-hf")  # lock --workdir
READERS = ("sample", "report", "export-hf", "eval")  # --workdir must exist; never created
# the folder giving model and tokenizer
INPUT_OF = {"sft": "init_from", "rm_nlp": "init_from", "rm": "init_from", "ppo": "init_policy"}


def _usage() -> str:
    width = max(map(len, EXAMPLES))
    lines = ["usage: instructgpt <command> [--config configs/X.py[:arg]] [--config.KEY=VALUE ...] [--workdir DIR]",
             "       instructgpt <command> --help   (its flags, and its config keys with defaults and meanings)",
             "", "Commands, one example each:"]
    for command, (what, example) in EXAMPLES.items():
        lines += [f"  {command:<{width}}  {what}", f"  {'':<{width}}    {example}"]
    lines += ["", "A stage resumes from the newest checkpoint in its workdir; a finished one reruns with another config",
              "only after --restart (the old folder is kept as <workdir>.replaced-<time>). Bad input ends with one",
              "line `instructgpt <command>: error: ...`; INSTRUCTGPT_TRACEBACK=1 shows the traceback behind it."]
    return "\n".join(lines)


def _command_help(command: str, args: list[str]) -> str:
    """The example, the flags, and (for a command with a config) the config file's docstring and keys."""
    what, example = EXAMPLES[command]
    spec = _config_spec(args) or (re.search(r"--config (\S+)", example) or [None, None])[1]
    fv = _flag_values([command])
    names = FLAGS_OF.get(command, ("config", "workdir", "restart"))
    parts = [f"instructgpt {command}: {what}", f"  example: {example}", "", "Flags:"]
    for name in names:
        flag = fv[name]
        default = spec if name == "config" else flag.default
        value = "" if default is None or default is False or default == [] else f"={default}"
        parts.append(f"  --{name}{value}".ljust(34) + "  " + flag.help.split(";\n")[0])
    parts.append("  -h, --help, --helpfull".ljust(34) + "  this help")
    if spec:
        parts += ["", usage.config_help(spec, config_base.load_config(spec))]
    return "\n".join(parts)


def _config_spec(args: list[str]) -> str | None:
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def _dispatch(command: str, fv: flags.FlagValues, given: set) -> None:
    module, fn_name, needs_config, needs_workdir = COMMANDS[command]
    config, workdir = fv.config, fv.workdir
    if needs_config and config is None:
        raise app.UsageError(f"`instructgpt {command}` needs --config (see `instructgpt {command} --help`)")
    if needs_workdir and not workdir:
        raise app.UsageError(f"`instructgpt {command}` needs --workdir DIR")
    if command == "world" and not fv.out:
        raise app.UsageError("`instructgpt world` needs --out DIR")
    if command in ("import-hf", "export-hf") and not fv.hf_dir:
        raise app.UsageError(f"`instructgpt {command}` needs --hf_dir DIR")
    if fv.restart and "restart" not in FLAGS_OF.get(command, ("restart",)):
        raise app.UsageError(f"`instructgpt {command}` has no --restart")
    if config is not None:
        config_base.check_counts(config)
    if needs_workdir:  # folder-level checks, before any data or model is loaded
        folders.check_workdir(workdir, must_exist=command in READERS)
    if command in INPUT_OF:
        folders.check_given(config, given, INPUT_OF[command])
    fn = getattr(importlib.import_module(module), fn_name)
    if command == "eval":  # the eval stage's config as the pipeline runs it: --config.seed reseeds world and eval
        config = pipeline.stage_configs(config, workdir)["eval"]
    with _locked(command, fv):
        if command in ("world", "bench"):
            result = fn(config, fv.out)
        elif command == "report":
            result = fn(workdir)
        elif command == "sample":
            result = fn(workdir, fv.prompt, max_new_tokens=fv.max_new_tokens, temperature=fv.temperature, seed=fv.seed)
        elif command in ("import-hf", "export-hf"):
            result = fn(fv.hf_dir, workdir)
        else:
            result = fn(config, workdir)
    if isinstance(result, dict) and result and command != "pipeline":  # the pipeline ends with its results table
        print(json.dumps(result, indent=2, default=str))


@contextlib.contextmanager
def _locked(command: str, fv: flags.FlagValues):
    """The workdir's lock around a writing command (process 0 holds it; --restart moves the old run aside first)."""
    import jax

    if command not in WRITERS:
        yield
        return
    holder = folders.lock(fv.workdir, f"instructgpt {command}", fv.restart)
    with holder if jax.process_index() == 0 else contextlib.nullcontext():
        if jax.process_count() > 1:  # everyone sees the folder process 0 moved aside
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("cli:locked")
        yield


def _interrupted(command: str, workdir: str | None) -> str:
    """Where a rerun of an interrupted command starts."""
    if command == "pipeline":
        return (f"rerun the same command to continue: finished stages in {workdir} are skipped, the interrupted one "
                "resumes from its newest checkpoint")
    if command in ("pretrain", "sft", "rm_nlp", "rm", "ppo") and workdir:
        unit = "iteration" if command == "ppo" else "step"
        step = checkpoint.latest_step(os.path.join(workdir, "checkpoints"))
        if step is None:
            return f"no checkpoint in {workdir} yet: the same command starts again from {unit} 0"
        return f"the same command resumes from {unit} {step} ({os.path.join(workdir, 'checkpoints', str(step))})"
    return "nothing to resume: the same command starts it again"


def _message(e: Exception) -> str:
    text = str(e)
    if type(e).__name__ == "DataError" and ("invalid JSON" in text or "expected a JSON object" in text):
        text += "; a JSONL file must hold one JSON object per line (a pretty-printed JSON array is not JSONL)"
    return text


def _fail(command: str, message: str, code: int = 1) -> None:
    """The one line a user sees for bad input: which command, what is wrong (INSTRUCTGPT_TRACEBACK=1 for more)."""
    print(f"instructgpt {command}: error: {message}", file=sys.stderr)
    sys.exit(code)


def _check_config_args(command: str, args: list[str]) -> set:
    """Load --config and walk every --config.key override before absl does, so a missing file, an unknown
    config arg or an unknown key is one line naming it (ml_collections would raise a chained traceback)."""
    spec = _config_spec(args)
    overrides = [arg[len("--config."):].split("=", 1)[0] for arg in args if arg.startswith("--config.")]
    if spec is None:
        return set(overrides)
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
    return set(overrides)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in HELP:
        print(_usage())
        sys.exit(0 if len(argv) >= 2 else 2)
    command = argv[1]
    if command not in COMMANDS:
        print(f"instructgpt: unknown command {command!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        sys.exit(2)
    # Importing Orbax logs through absl, which calls logging.basicConfig(): the root logger keeps its WARNING level
    # and gets a plain stderr StreamHandler, so ours would be a no-op and every INFO line (resuming from step N,
    # the stages' progress) dropped. Remove only plain StreamHandlers; subclasses (pytest's capture) stay.
    root = logging.getLogger()
    for handler in [h for h in root.handlers if type(h) is logging.StreamHandler]:
        root.removeHandler(handler)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax logs every save step at INFO through absl
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # "Unable to initialize backend 'tpu'"
    if any(arg in HELP for arg in argv[2:]):
        try:
            print(_command_help(command, argv[2:]))
        except (ValueError, FileNotFoundError, KeyError) as e:
            _fail(command, f"{type(e).__name__}: {e}", 2)
        sys.exit(0)
    given = _check_config_args(command, argv[2:])
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
        _dispatch(command, fv, given)
    except app.UsageError as e:
        _fail(command, f"{e} (see `instructgpt {command} --help`)", 2)
    except KeyboardInterrupt:  # Ctrl-C: one line, no traceback
        print(f"instructgpt {command}: interrupted; {_interrupted(command, fv.workdir)}", file=sys.stderr)
        sys.exit(130)
    except (ValueError, FileNotFoundError, FileExistsError, FloatingPointError, OSError, KeyError) as e:
        # Bad input is the user's to fix: one line naming what is wrong. INSTRUCTGPT_TRACEBACK=1 shows the trace.
        if os.environ.get("INSTRUCTGPT_TRACEBACK") == "1":
            raise
        _fail(command, f"{type(e).__name__}: {_message(e)}")


if __name__ == "__main__":
    main()
