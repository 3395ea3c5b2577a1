"""One process of a multi-host run: join the job with `jax.distributed.initialize()`, then run an
`instructgpt` command unchanged. Every process runs the same command over one global mesh; each feeds its
own rows of every batch (`sharding.shard_batch` uses `make_array_from_process_local_data` when
`jax.process_count() > 1`), all of them write their shards of each checkpoint, process 0 writes metrics.

  # on every host of a pod slice (TPU: coordinator, process count and id are detected):
  python experiments/multihost_worker.py -- sft --config configs/sft.py --workdir gs://bucket/run/sft
  # two CPU processes on this machine, 4 fake devices each (what experiments/multihost_local.sh does):
  python experiments/multihost_worker.py --coordinator=localhost:12355 --num_processes=2 --process_id=0 \
      --cpu_devices=4 -- sft --config configs/sft.py:smoke --workdir /tmp/mh/sft

The worker flags come before `--`; everything after it is the `instructgpt` command line. On CPU the
cross-process collectives go through gloo (`jax_cpu_collectives_implementation`), which is what makes two
processes x 4 fake devices one 8-device mesh (checked with jax 0.10).
"""

from __future__ import annotations

import argparse
import os
import sys


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" not in argv:
        raise SystemExit("usage: multihost_worker.py [worker flags] -- <instructgpt command and flags>")
    cut = argv.index("--")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coordinator", default=None, help="host:port of process 0; unset = auto-detect (TPU/SLURM)")
    parser.add_argument("--num_processes", type=int, default=None)
    parser.add_argument("--process_id", type=int, default=None)
    parser.add_argument("--cpu_devices", type=int, default=0,
                        help="fake CPU devices per process (local testing); 0 = use the real accelerators")
    parser.add_argument("--init_timeout", type=int, default=300, help="seconds to wait for every process to join")
    args = parser.parse_args(argv[:cut])
    if not argv[cut + 1:]:
        raise SystemExit("multihost_worker.py: give an instructgpt command after `--`")
    return args, argv[cut + 1:]


def main(argv: list[str]) -> None:
    args, command = parse(argv)
    if args.cpu_devices:
        # Must be set before jax is imported: the device count of the CPU backend is fixed at start-up.
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.cpu_devices}"
        os.environ["JAX_PLATFORMS"] = "cpu"
    import jax

    if args.cpu_devices:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # Same key derivation on one host and many: the default, spelled out because results must match.
    jax.config.update("jax_threefry_partitionable", True)
    kwargs = {}
    if args.coordinator:
        kwargs = dict(coordinator_address=args.coordinator, num_processes=args.num_processes, process_id=args.process_id)
    jax.distributed.initialize(initialization_timeout=args.init_timeout, **kwargs)
    print(f"process {jax.process_index()}/{jax.process_count()}: {jax.local_device_count()} local of "
          f"{jax.device_count()} devices", file=sys.stderr, flush=True)

    from instructgpt_jax import cli

    try:
        cli.main(["instructgpt", *command])
    finally:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
