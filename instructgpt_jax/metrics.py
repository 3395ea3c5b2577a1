"""Metric writers: one JSON line per log step (`metrics.jsonl`), TensorBoard events, and a progress bar.

`metrics.jsonl` is the source of truth for notebooks and the report: each line is
{"step": int, "time": unix seconds, "<stage>/<name>": float, ...}. On resume, lines past the restored
step are dropped, so the file reads as one uninterrupted run. Only process 0 writes. Text (a Markdown table,
TensorBoard's text tab) goes to TensorBoard only.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import jax
import numpy as np


def _scalar(v):
    v = np.asarray(jax.device_get(v))
    return float(v) if v.size == 1 else v.tolist()


class MetricWriter:
    def __init__(self, workdir: str, tensorboard: bool = True):
        self.enabled = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if self.enabled:
            os.makedirs(workdir, exist_ok=True)
            if tensorboard:
                try:
                    from tensorboardX import SummaryWriter

                    # tensorboardX names event files by the second: without a suffix a second writer in the
                    # same second (SFT's step-0 figures, then its training loop) would overwrite the first.
                    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), filename_suffix=f".{time.time_ns()}")
                except ImportError:  # TensorBoard is optional; metrics.jsonl is always written
                    self._tb = None

    def truncate_after(self, step: int) -> None:
        """Drop lines with step > `step` (written after the checkpoint a resumed run restarts from)."""
        if not (self.enabled and os.path.exists(self.path)):
            return
        with open(self.path) as f:
            keep = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= step]
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(keep)
        os.replace(tmp, self.path)

    def write(self, step: int, metrics: dict) -> dict:
        values = {k: _scalar(v) for k, v in metrics.items()}
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": int(step), "time": time.time(), **values}) + "\n")
            if self._tb is not None:
                for k, v in values.items():
                    if isinstance(v, float) and math.isfinite(v):
                        self._tb.add_scalar(k, v, step)
                self._tb.flush()
        return values

    def write_text(self, step: int, tag: str, text: str) -> None:
        """Markdown for TensorBoard's text tab (tables render there); metrics.jsonl holds numbers only."""
        if self._tb is not None:
            self._tb.add_text(tag, text, step)
            self._tb.flush()

    def close(self):
        if self._tb is not None:
            self._tb.close()


def read_metrics(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _events(workdir: str):
    """The Event protos of `workdir/tensorboard`'s event files, in the order written.

    Event files are TFRecords (length, its CRC, an Event proto, its CRC); the CRCs are not checked here.
    """
    import struct

    from tensorboardX.proto import event_pb2

    folder = os.path.join(workdir, "tensorboard")
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        with open(os.path.join(folder, name), "rb") as f:
            data = f.read()
        at = 0
        while at + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            yield event_pb2.Event.FromString(data[at + 12:at + 12 + length])
            at += 12 + length + 4


def read_tensorboard(workdir: str) -> list[tuple[int, str, float]]:
    """(step, tag, value) of every scalar in `workdir/tensorboard`'s event files, in the order written."""
    return [(e.step, v.tag, v.simple_value) for e in _events(workdir) for v in e.summary.value
            if v.WhichOneof("value") == "simple_value"]


def read_tensorboard_text(workdir: str) -> list[tuple[int, str, str]]:
    """(step, tag, text) of every text summary (`MetricWriter.write_text`) in `workdir/tensorboard`."""
    return [(e.step, v.tag.removesuffix("/text_summary"), v.tensor.string_val[0].decode()) for e in _events(workdir)
            for v in e.summary.value if v.metadata.plugin_data.plugin_name == "text"]


def progress(total: int, initial: int, desc: str):
    """tqdm bar on process 0 (stderr); a plain no-op object elsewhere or when disabled by TQDM_DISABLE=1."""
    from tqdm.auto import tqdm

    disable = jax.process_index() != 0 or os.environ.get("TQDM_DISABLE") == "1"
    return tqdm(total=total, initial=initial, desc=desc, disable=disable, file=sys.stderr, dynamic_ncols=True,
                mininterval=1.0)


def final_figures(workdir: str, stage: str, base: bool = True) -> dict:
    """Each metric's last value in `workdir/metrics.jsonl`, plus (`base`) the step-0 figures as `<name>_base`."""
    out = {}
    for row in read_metrics(workdir):
        for key, value in row.items():
            if key.startswith(f"{stage}/"):
                out[key] = value
                if base and row["step"] == 0:
                    out[f"{key}_base"] = value
    return out
