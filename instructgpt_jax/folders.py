"""The folders a stage reads and writes, checked before any data or model is loaded.

A stage reads other stages' folders (`config.init_from`, `init_policy`, ...) and writes one workdir.
- An input folder must exist and hold a checkpoint of the kind the stage needs (a reward model is no policy).
  Its checkpoint determines the model's architecture and tokenizer (`inferred`): a stage config states only
  numerics (dtype, remat, dropout), and a value typed on the command line that contradicts the checkpoint is
  an error naming both (`check_given`).
- The workdir must be a folder on a writable filesystem (`check_workdir`), written by one run at a time
  (`lock`: <workdir>/.instructgpt.lock holds the pid, host and start time; the kernel releases the lock when
  its process dies, so a lock file left by a killed run is taken over with a warning).
- A finished run is never resumed under another config or other input files (`check_rerun`): that would
  return the old model and rewrite config.json to name data it never saw. The way out is a new workdir, or
  `--restart`, which moves the old folder aside to <workdir>.replaced-<time> (`move_aside`, as the pipeline
  does with a stage whose config changed).
Paths with a scheme (gs://...) are left to Orbax: only local folders are checked and locked.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import fcntl
import glob
import hashlib
import json
import logging
import os
import socket
import time

from instructgpt_jax import checkpoint
from instructgpt_jax.data.benchmarks import is_benchmark, split_source
from instructgpt_jax.model import GPTConfig
from instructgpt_jax.presets import PRESETS, get_preset
from instructgpt_jax.tokenizer import make_tokenizer

log = logging.getLogger(__name__)

LOCK = ".instructgpt.lock"


def is_local(path: str) -> bool:
    return "://" not in path


# ---------------------------------------------------------------- inputs

def read_input(path: str, key: str, policy: bool = False) -> dict:
    """Meta of the newest checkpoint of the stage folder `config.<key>` = `path`. It must exist and hold a
    model checkpoint; with `policy`, a language model (no scalar head: not a reward model)."""
    where = f"config.{key}={path}"
    if is_local(path) and not os.path.isdir(path):
        raise FileNotFoundError(f"{where}: " + ("a file, not a stage folder" if os.path.exists(path) else "no such folder"))
    ckpt_dir = os.path.join(path, "checkpoints")
    if checkpoint.latest_step(ckpt_dir) is None:
        raise FileNotFoundError(f"no checkpoint in {ckpt_dir} ({where}): run that stage first")
    step, meta = checkpoint.read_meta(ckpt_dir)
    if "model" not in meta:
        raise ValueError(f"{where}: checkpoint step {step} has no 'model' in its meta; not a model checkpoint")
    if policy and meta["model"].get("scalar_head"):
        raise ValueError(f"{where} holds a reward model (stage {meta.get('stage')!r}, with a scalar head); expected "
                         "a language model: a pretrain, SFT or PPO stage folder")
    return meta


def preset_name(cfg: GPTConfig) -> str | None:
    """The first preset with `cfg`'s architecture (presets.py order: 'gpt2' before its alias 'gpt2-small')."""
    return next((name for name in PRESETS if get_preset(name).architecture() == cfg.architecture()), None)


def describe(cfg: GPTConfig) -> str:
    return f"n_layer {cfg.n_layer}, n_embd {cfg.n_embd}"


def inferred(config, key: str, scalar_head: bool = False, policy: bool = True):
    """(config, GPTConfig): a copy of `config` whose model.preset and data.tokenizer are those of `config.<key>`'s
    checkpoint, and that model's GPTConfig with the config's numerics (dropout, dtype, remat)."""
    meta = read_input(config[key], key, policy=policy)
    stored = GPTConfig(**meta["model"])
    numerics = {k: v for k, v in config.model.to_dict().items()
                if k not in ("preset", "scalar_head", *GPTConfig.ARCHITECTURE)}
    model_cfg = GPTConfig(**{**{k: getattr(stored, k) for k in GPTConfig.ARCHITECTURE}, **numerics,
                             "scalar_head": scalar_head})
    config = copy.deepcopy(config)
    name, tokenizer = preset_name(stored), meta.get("tokenizer", config.data.tokenizer)
    if (name or config.model.preset) != config.model.preset or tokenizer != config.data.tokenizer:
        log.info("model %r (%s) and tokenizer %r from %s (the config said %r, %r)", name, describe(stored), tokenizer,
                 config[key], config.model.preset, config.data.tokenizer)
    if name:
        config.model.preset = name
    config.data.tokenizer = tokenizer
    return config, model_cfg


def check_given(config, given: set, key: str) -> None:
    """Values typed on the command line (`given`: dotted config keys) that contradict `config.<key>`'s checkpoint."""
    if not config.get(key) or not {"model.preset", "data.tokenizer"} & given:
        return
    meta = read_input(config[key], key)
    stored = GPTConfig(**meta["model"])
    if "model.preset" in given:
        want = get_preset(config.model.preset)
        if want.architecture() != stored.architecture():
            raise ValueError(
                f"config.model.preset={config.model.preset!r} but {config[key]} holds a {preset_name(stored)!r}-shaped "
                f"model ({describe(stored)}), not {describe(want)} (checkpoint from another model size?); leave out "
                "--config.model.preset to use the checkpoint's")
    if "data.tokenizer" in given and meta.get("tokenizer") and meta["tokenizer"] != config.data.tokenizer:
        n = make_tokenizer(config.data.tokenizer).vocab_size
        raise ValueError(f"config.data.tokenizer={config.data.tokenizer!r} ({n} ids) but {config[key]} was trained with "
                         f"the {meta['tokenizer']!r} tokenizer (model vocab_size {stored.vocab_size}); leave out "
                         "--config.data.tokenizer to use the checkpoint's")


def input_digests(config) -> dict:
    """{config key: sha256} of every file the config names (data, prompts): a rerun can tell they changed.

    A benchmark path (`tldr:PATH`, `hh:PATH`, data/benchmarks.py) is digested through what PATH names: a
    JSONL or Parquet file, a `datasets` save_to_disk folder (every file in it, with its name), or a glob of
    those (the files it matches, with their names). A plain path counts only as a file: stage folders
    (`init_from`) are checked through their checkpoints, not here.
    """
    out = {}
    for key, value in _flat(config.to_dict()).items():
        if not (isinstance(value, str) and value):
            continue
        benchmark = is_benchmark(value)
        path = split_source(value)[1] if benchmark else value
        if not is_local(path):
            continue
        if benchmark:
            files = [f for match in sorted(glob.glob(path)) for f in _files(match)]
        else:
            files = [path] if os.path.isfile(path) else []
        if files:
            named = benchmark and (glob.has_magic(path) or os.path.isdir(path))
            h = hashlib.sha256()
            for name in files:
                if named:  # a file renamed, added or removed in the folder or glob changes the digest
                    h.update(name.encode() + b"\0")
                with open(name, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
            out[key] = h.hexdigest()
    return out


def _files(path: str) -> list[str]:
    """`path` if a file, else every file under the folder `path` (sorted, so the digest is the same each time)."""
    if os.path.isfile(path):
        return [path]
    return sorted(os.path.join(d, name) for d, _, names in os.walk(path) for name in names)


# ---------------------------------------------------------------- the workdir

def check_workdir(workdir: str, must_exist: bool = False) -> None:
    """The workdir is a folder (or can become one) on a filesystem this process can write."""
    if not is_local(workdir):
        return
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise NotADirectoryError(f"--workdir {workdir} is a file, not a folder")
    if must_exist:
        if not os.path.isdir(workdir):
            raise FileNotFoundError(f"--workdir {workdir}: no such folder")
        return
    existing = os.path.abspath(workdir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise NotADirectoryError(f"--workdir {workdir}: {existing} is a file, not a folder")
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        raise PermissionError(f"--workdir {workdir}: {existing} is on a read-only filesystem")
    if not os.access(existing, os.W_OK):
        raise PermissionError(f"--workdir {workdir}: no permission to write in {existing}")


def check_rerun(workdir: str, config, stage: str, finished: bool | None = None, model_cfg: GPTConfig | None = None) -> None:
    """A finished run in `workdir` whose config.json or input files differ from this run's is an error.

    `finished` defaults to "the newest checkpoint is the last step" (train.is_complete).
    """
    path = os.path.join(workdir, "config.json")
    if not (is_local(workdir) and os.path.exists(path)):
        return
    meta = {}
    if finished is None:
        meta = checkpoint.newest_meta(os.path.join(workdir, "checkpoints")) or {}
        finished = checkpoint.is_final(meta)
    if not finished:
        return
    with open(path) as f:
        old = _flat(json.load(f))
    new = _flat(json.loads(config.to_json_best_effort()))
    diffs = [f"{k}: {old.get(k, '(absent)')!r} there, {new.get(k, '(absent)')!r} here"
             for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)]
    digests = input_digests(config)
    diffs += [f"the file config.{k} names has changed since" for k, h in meta.get("inputs", {}).items()
              if k in digests and digests[k] != h and old.get(k) == new.get(k)]
    if not diffs:
        return
    detail = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
    if model_cfg is not None and "model" in meta:
        stored = GPTConfig(**meta["model"])
        if stored.architecture() != model_cfg.architecture():
            detail += (f"; its checkpoint holds a {preset_name(stored)!r}-shaped model ({describe(stored)}), the model "
                       f"expects {describe(model_cfg)}")
    raise FileExistsError(f"{workdir} holds a finished {stage} run with another config or data ({detail}); use a new "
                          f"--workdir, or add --restart to move this one to {workdir}.replaced-<time> and start over")


def move_aside(path: str) -> str | None:
    """Rename `path` to <path>.replaced-<time> (a new suffix if that exists); nothing is deleted."""
    if not os.path.exists(path):
        return None
    dst = base = f"{path.rstrip(os.sep)}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while os.path.lexists(dst):
        n += 1
        dst = f"{base}-{n}"
    os.rename(path, dst)
    return dst


def _holder(fd: int) -> str:
    """Who the lock file names: 'pid 12 on host h since 2026-12-03 10:00:00 (instructgpt sft)'."""
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode(errors="replace").strip()
    try:
        h = json.loads(text)
        return f"pid {h['pid']} on host {h['host']} since {h['started']} ({h['command']})"
    except (ValueError, KeyError, TypeError):
        return text[:200]


def _acquire(workdir: str, command: str) -> int:
    """An fd holding the exclusive lock of `workdir` (which exists), with this process named in the file."""
    path = os.path.join(workdir, LOCK)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise FileExistsError(f"{workdir} is in use: locked by {holder}; wait for that run, stop it, or choose "
                                  "another --workdir") from None
        if os.path.exists(path) and os.path.samestat(os.fstat(fd), os.stat(path)):
            break
        os.close(fd)  # the holder removed the file as we opened it: take the new one
    stale = _holder(fd)
    if stale:
        log.warning("%s: taking over the lock left by %s, which is no longer running", workdir, stale)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    started = datetime.datetime.now().isoformat(sep=" ", timespec="seconds")
    os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started,
                             "command": command}).encode())
    return fd


def _release(workdir: str, fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(workdir, LOCK))  # before unlocking: the next run finds no stale holder
    os.close(fd)


@contextlib.contextmanager
def lock(workdir: str, command: str, restart: bool = False):
    """Hold `workdir`'s exclusive lock for the block (creating the folder); with `restart`, first move what
    the folder holds aside to <workdir>.replaced-<time>. Folders this made and left empty are removed."""
    if not is_local(workdir):
        yield
        return
    parent = os.path.dirname(os.path.abspath(workdir))
    if os.path.exists(os.path.join(parent, LOCK)):  # e.g. a pipeline writing W while this run would write W/sft
        _release(parent, _acquire(parent, command))
    made = os.path.abspath(workdir)
    while not os.path.exists(os.path.dirname(made)):
        made = os.path.dirname(made)
    made = made if not os.path.exists(made) else None
    os.makedirs(workdir, exist_ok=True)
    fd = _acquire(workdir, command)
    try:
        if restart and set(os.listdir(workdir)) - {LOCK}:
            moved = move_aside(workdir)  # the lock file moves along, still held
            os.makedirs(workdir)
            old, fd = fd, _acquire(workdir, command)
            _release(moved, old)
            log.warning("--restart: moved the previous run to %s", moved)
        yield
    finally:
        _release(workdir, fd)
        path = os.path.abspath(workdir)
        while made and path.startswith(made) and os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)
            path = os.path.dirname(path)


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
