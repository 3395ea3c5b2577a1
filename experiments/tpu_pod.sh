#!/usr/bin/env bash
# Run an `instructgpt` command on every worker of a Cloud TPU pod slice (multi-controller JAX).
#
# Every TPU VM worker runs the same command; experiments/multihost_worker.py calls
# jax.distributed.initialize(), which finds the coordinator, process count and process id from the TPU
# metadata, so no addresses are passed. The workdir must be one folder every worker sees (all hosts write
# their shards of each checkpoint): `setup` mounts a GCS bucket with gcsfuse at $MOUNT on every worker.
#
#   export TPU_NAME=igpt ZONE=us-central2-b ACCELERATOR=v4-128 BUCKET=my-bucket   # PROJECT optional
#   experiments/tpu_pod.sh create                 # gcloud compute tpus tpu-vm create (queued resources: see below)
#   experiments/tpu_pod.sh setup                  # copy this checkout, pip install, mount the bucket, on all workers
#   experiments/tpu_pod.sh run pipeline --config configs/pods/gpt3_6b7.py:v4-128 --workdir /gcs/runs/6b7
#   experiments/tpu_pod.sh run pipeline --config configs/pods/gpt3_6b7.py:v4-128 --config.stages=sft --workdir /gcs/runs/6b7
#   experiments/tpu_pod.sh logs                   # tail worker 0's log
#   experiments/tpu_pod.sh delete
#
# DRY_RUN=1 prints the gcloud commands instead of running them (tests/test_pod_configs.py checks them).
# Runtime versions: v4 -> tpu-ubuntu2204-base, v5e (v5litepod-N) -> v2-alpha-tpuv5-lite, v5p -> v2-alpha-tpuv5.
# Check a config's per-chip memory before paying for a slice: python experiments/pod_check.py --config <cfg>.
# Spot capacity / large slices are easier through queued resources:
#   gcloud compute tpus queued-resources create $TPU_NAME-qr --node-id=$TPU_NAME --zone=$ZONE \
#       --accelerator-type=$ACCELERATOR --runtime-version=$RUNTIME [--spot]
set -euo pipefail

: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
ACCELERATOR=${ACCELERATOR:-v4-32}
MOUNT=${MOUNT:-/gcs}
REMOTE_DIR=${REMOTE_DIR:-instructgpt_jax}
LOG=${LOG:-/tmp/instructgpt.log}
case "$ACCELERATOR" in
  v4-*) DEFAULT_RUNTIME=tpu-ubuntu2204-base ;;
  v5litepod-*|v5e-*) DEFAULT_RUNTIME=v2-alpha-tpuv5-lite ;;
  v5p-*) DEFAULT_RUNTIME=v2-alpha-tpuv5 ;;
  *) DEFAULT_RUNTIME=tpu-ubuntu2204-base ;;
esac
RUNTIME=${RUNTIME:-$DEFAULT_RUNTIME}
GCLOUD=(gcloud compute tpus tpu-vm)
COMMON=(--zone="$ZONE")
[ -n "${PROJECT:-}" ] && COMMON+=(--project="$PROJECT")

run() {  # print, then execute unless DRY_RUN=1
  printf '%q ' "$@"; echo
  [ "${DRY_RUN:-0}" = 1 ] || "$@"
}

on_all_workers() {
  run "${GCLOUD[@]}" ssh "$TPU_NAME" "${COMMON[@]}" --worker=all --command="$1"
}

cmd=${1:-}
shift || true
case "$cmd" in
  create)
    run "${GCLOUD[@]}" create "$TPU_NAME" "${COMMON[@]}" --accelerator-type="$ACCELERATOR" --version="$RUNTIME"
    ;;
  setup)
    : "${BUCKET:?set BUCKET (a GCS bucket every worker mounts at $MOUNT)}"
    HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    on_all_workers "mkdir -p ~/$REMOTE_DIR"
    run "${GCLOUD[@]}" scp --recurse "$HERE/pyproject.toml" "$HERE/README.md" "$HERE/instructgpt_jax" "$HERE/configs" "$HERE/experiments" \
      "$TPU_NAME:~/$REMOTE_DIR/" "${COMMON[@]}" --worker=all
    on_all_workers "cd ~/$REMOTE_DIR && pip install -q -e . && pip install -q -U 'jax[tpu]' && \
sudo mkdir -p $MOUNT && sudo chown \$USER $MOUNT && (mountpoint -q $MOUNT || gcsfuse --implicit-dirs $BUCKET $MOUNT)"
    ;;
  run)
    [ "$#" -gt 0 ] || { echo "usage: $0 run <instructgpt command> [flags]" >&2; exit 2; }
    args=$(printf '%q ' "$@")
    # nohup + a log per worker: the ssh session may drop during a long run; `logs` reads worker 0's.
    on_all_workers "cd ~/$REMOTE_DIR && TQDM_DISABLE=1 nohup python experiments/multihost_worker.py -- $args > $LOG 2>&1 &"
    ;;
  logs)
    run "${GCLOUD[@]}" ssh "$TPU_NAME" "${COMMON[@]}" --worker=0 --command="tail -n 50 $LOG"
    ;;
  stop)
    on_all_workers "pkill -f experiments/multihost_worker.py || true"
    ;;
  delete)
    run "${GCLOUD[@]}" delete "$TPU_NAME" "${COMMON[@]}" --quiet
    ;;
  *)
    echo "usage: $0 create|setup|run <instructgpt args>|logs|stop|delete   (env: TPU_NAME ZONE ACCELERATOR BUCKET [PROJECT RUNTIME MOUNT DRY_RUN])" >&2
    exit 2
    ;;
esac
