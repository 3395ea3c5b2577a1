"""How many XLA devices a CPU host gets, decided before JAX starts (the command line calls `split_cpu_cores`).

XLA gives a CPU host one device whose ops split each small tensor over all cores; at this project's model
sizes (d_model 128) most ops are too small for that to pay. One device per core instead runs the data-parallel
mesh's shards side by side, each on whole ops (docs/RESULTS.md, "One XLA device per CPU core": what it buys
per stage and per PPO phase). So `instructgpt` asks XLA for one CPU device per core, rounded down to a power
of two (every batch of the shipped configs divides by it) and at most MAX_DEVICES:

  INSTRUCTGPT_CPU_DEVICES=auto   the default: cores, rounded down to a power of two, at most MAX_DEVICES
  INSTRUCTGPT_CPU_DEVICES=1      one device, XLA's own default (the runs before this module)
  INSTRUCTGPT_CPU_DEVICES=N      N devices
  XLA_FLAGS=--xla_force_host_platform_device_count=N   wins over both (the tests use 8)

Only the CPU platform reads the flag: on a GPU or TPU host the accelerators are the devices as before. A
notebook that imports jax itself gets XLA's default unless it sets XLA_FLAGS first.

The command line also keeps XLA's compiled programs on disk (JAX's persistent compilation cache), so a resumed
run, the next seed, a sweep's next point or a rerun of a stage loads each program instead of compiling it again
(docs/RESULTS.md, "A compilation cache for the command line": what it saves per command):

  INSTRUCTGPT_COMPILE_CACHE unset   the cache in $XDG_CACHE_HOME/instructgpt_jax/xla (~/.cache/...), at most
                                    CACHE_MAX_BYTES, least recently used programs dropped first
  INSTRUCTGPT_COMPILE_CACHE=DIR     the cache in DIR
  INSTRUCTGPT_COMPILE_CACHE=off     no cache
  JAX_COMPILATION_CACHE_DIR=DIR     JAX's own variable wins over ours (the tests set it to a folder of their own)

`instructgpt bench` never uses our cache: it measures compile time. A compiled program is keyed by its HLO, the
compile options, the devices and the jax/jaxlib version, so a cached program is the one XLA would compile.
"""

from __future__ import annotations

import os
import sys

ENV = "INSTRUCTGPT_CPU_DEVICES"
CACHE_ENV = "INSTRUCTGPT_COMPILE_CACHE"
JAX_CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"
CACHE_MAX_BYTES = 2 << 30   # 2 GiB; JAX drops the least recently used programs beyond it
FLAG = "--xla_force_host_platform_device_count"
MAX_DEVICES = 8


def auto_devices(cores: int) -> int:
    """The largest power of two <= min(cores, MAX_DEVICES)."""
    n = 1
    while n * 2 <= min(cores, MAX_DEVICES):
        n *= 2
    return n


def cpu_device_flags(environ, cores: int) -> str | None:
    """XLA_FLAGS with the CPU device count added, or None to leave the environment as it is (a count already
    in XLA_FLAGS, or one device)."""
    flags = environ.get("XLA_FLAGS", "")
    if FLAG in flags:
        return None
    value = environ.get(ENV, "auto").strip() or "auto"
    if value == "auto":
        n = auto_devices(cores)
    else:
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"{ENV}={value!r}: expected 'auto' or a positive number of CPU devices")
    if n == 1:
        return None
    return f"{flags} {FLAG}={n}".strip()


def cores() -> int:
    """Cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity mask
        return os.cpu_count() or 1


def split_cpu_cores(environ=os.environ) -> bool:
    """Set XLA_FLAGS per `cpu_device_flags` unless JAX is already imported (then XLA has read its flags and
    nothing changes). Returns whether it set them."""
    if "jax" in sys.modules:
        return False
    flags = cpu_device_flags(environ, cores())
    if flags is None:
        return False
    environ["XLA_FLAGS"] = flags
    return True


def prepare(command: str | None, environ=os.environ) -> None:
    """What `instructgpt` sets before JAX starts: one XLA CPU device per core (`split_cpu_cores`) and the
    compilation cache (`use_compile_cache`). A script that runs stages in its own process (experiments/sweep.py,
    the probes) calls it before importing anything that imports jax, so a stage runs there on the devices it
    gets under `instructgpt`: the same program and the same float rounding. ValueError for a bad
    INSTRUCTGPT_CPU_DEVICES."""
    split_cpu_cores(environ)
    use_compile_cache(command, environ)


def compile_cache_dir(environ, command: str | None) -> str | None:
    """The folder for XLA's persistent compilation cache when `command` runs, or None to leave the environment as
    it is (JAX's own variable already set, the cache turned off, or the bench)."""
    if environ.get(JAX_CACHE_ENV) or command == "bench":
        return None
    value = environ.get(CACHE_ENV, "").strip()
    if value == "off":
        return None
    if value:
        return os.path.abspath(os.path.expanduser(value))
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "instructgpt_jax", "xla")


def use_compile_cache(command: str | None, environ=os.environ) -> str | None:
    """Point JAX at `compile_cache_dir`'s folder (size-capped) unless JAX is already imported (then it has read
    its configuration and nothing changes). Returns the folder it set, or None."""
    if "jax" in sys.modules:
        return None
    folder = compile_cache_dir(environ, command)
    if folder is None:
        return None
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:  # a read-only home, say: run without the cache, and say so once
        print(f"instructgpt: compilation cache off: cannot create {folder} ({e.strerror}); set {CACHE_ENV}=DIR "
              f"or {CACHE_ENV}=off", file=sys.stderr)
        return None
    environ[JAX_CACHE_ENV] = folder
    environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(CACHE_MAX_BYTES))
    environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # JAX's 1 s would skip most programs here
    return folder
