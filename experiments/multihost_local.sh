#!/usr/bin/env bash
# Multi-host JAX on one machine: start N CPU processes (D fake devices each) that join one job through
# jax.distributed.initialize() and run the same `instructgpt` command over one N*D-device mesh.
#
#   experiments/multihost_local.sh sft --config configs/sft.py:smoke --workdir /tmp/mh/sft
#   NUM_PROCESSES=2 DEVICES_PER_PROCESS=4 PORT=12355 experiments/multihost_local.sh pretrain \
#       --config configs/pretrain.py:smoke --workdir /tmp/mh/pt
#
# Process i logs to $LOG_DIR/process_i.log (default: the system temp dir). Exits non-zero if any process
# fails; a failing process makes the others stop at their next collective, so all are waited for.
# tests/test_multihost.py runs this and checks the result equals a single-process run on 8 devices.
set -euo pipefail

NUM_PROCESSES=${NUM_PROCESSES:-2}
DEVICES_PER_PROCESS=${DEVICES_PER_PROCESS:-4}
PORT=${PORT:-12355}
LOG_DIR=${LOG_DIR:-$(mktemp -d -t multihost.XXXXXX)}
PYTHON=${PYTHON:-python}
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [ "$#" -eq 0 ]; then
  echo "usage: $0 <instructgpt command> [flags]   (e.g. sft --config configs/sft.py:smoke --workdir W)" >&2
  exit 2
fi
mkdir -p "$LOG_DIR"

pids=()
for ((i = 0; i < NUM_PROCESSES; i++)); do
  TQDM_DISABLE=1 "$PYTHON" "$HERE/multihost_worker.py" \
    --coordinator="localhost:$PORT" --num_processes="$NUM_PROCESSES" --process_id="$i" \
    --cpu_devices="$DEVICES_PER_PROCESS" -- "$@" >"$LOG_DIR/process_$i.log" 2>&1 &
  pids+=($!)
done

status=0
for ((i = 0; i < NUM_PROCESSES; i++)); do
  if ! wait "${pids[$i]}"; then
    echo "process $i failed; last lines of $LOG_DIR/process_$i.log:" >&2
    tail -n 20 "$LOG_DIR/process_$i.log" >&2
    status=1
  fi
done
[ "$status" -eq 0 ] && echo "all $NUM_PROCESSES processes finished; logs in $LOG_DIR"
exit "$status"
