"""Where a compiled program spends its time: XLA ops summed over a jax.profiler trace.

`instructgpt bench --config configs/bench.py:trl_tiny --config.profile.enabled=True` traces a few calls of each
stage's train step and of the PPO iteration's generate, score and update programs (jax.profiler with a
Perfetto trace, written under <out>/profile_<stage>/), then sums the time of every XLA op per call and per
device (`op_rows`) and names each op by what it computes, read off the compiled program's HLO
(`hlo_ops`): its output shape, the opcodes fused into it ("dot x2, tanh") and the JAX operation it came
from (the HLO metadata's op_name, e.g. "jit(generate)/while/body/dot_general"), and gives each program's
time by kind of work (`op_kind`: matmul, elementwise / reduce, data movement, collective). The table shows where a
step's time goes (the decode loop's unembedding, a transpose, the all-reduce) without an external viewer;
the trace itself opens in Perfetto or TensorBoard's profiler. Tracing slows each op a little: read the
shares, not the absolute times (bench's timed rows come from untraced calls).
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import gzip
import json
import os
import re
import shutil

import jax

# Opcodes that move no data or only name it: left out of an op's "what it computes" summary.
_QUIET = {"parameter", "constant", "bitcast", "get-tuple-element", "tuple", "broadcast", "iota"}
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.+?)\s+([a-z][\w\-]*)\((.*)$")
_HEADER = re.compile(r"^\s*(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")


@dataclasses.dataclass(frozen=True)
class HloOp:
    shape: str  # output shape, e.g. "f32[16,8192]{1,0}"
    opcode: str  # "fusion", "dot", "all-reduce", ...
    fused: str  # opcodes of a fusion's computation, most frequent first ("dot x2, tanh"); "" otherwise
    source: str  # the JAX operation it came from (HLO metadata op_name), "" if none


def hlo_ops(hlo_text: str) -> dict[str, HloOp]:
    """Every instruction of a compiled module's HLO text (`compiled.as_text()`) by name."""
    computations: dict[str, list[str]] = {}
    rows = []
    current = None
    for line in hlo_text.splitlines():
        m = _INSTRUCTION.match(line)
        if m is None:
            header = _HEADER.match(line)
            if header and " = " not in line:
                current = header.group(1)
                computations.setdefault(current, [])
            continue
        name, shape, opcode, rest = m.groups()
        if current is not None:
            computations[current].append(opcode)
        calls = re.search(r"calls=%?([\w.\-]+)", rest)
        source = re.search(r'op_name="([^"]*)"', rest)
        rows.append((name, shape, opcode, calls.group(1) if calls else None, source.group(1) if source else ""))
    ops = {}
    for name, shape, opcode, calls, source in rows:
        fused = ""
        if calls in computations:
            counts = collections.Counter(op for op in computations[calls] if op not in _QUIET)
            fused = ", ".join(f"{op} x{n}" if n > 1 else op for op, n in counts.most_common(4))
        ops[name] = HloOp(shape, opcode, fused, source)
    return ops


def module_ops(compiled) -> dict[str, dict[str, HloOp]]:
    """{module name: hlo_ops} of a compiled program (jax `Compiled`), the name as the trace's hlo_module."""
    text = compiled.as_text()
    header = re.match(r"\s*HloModule\s+([\w.\-]+)", text)
    return {header.group(1): hlo_ops(text)} if header else {}


def trace_events(trace_dir: str) -> list[dict]:
    """The complete ('X') events of the Perfetto trace jax.profiler wrote under `trace_dir`."""
    files = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)
    if not files:
        raise FileNotFoundError(f"{trace_dir}: no *.trace.json.gz (jax.profiler.trace with create_perfetto_trace)")
    with gzip.open(max(files, key=os.path.getmtime)) as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    return [e for e in events if e.get("ph") == "X"]


def op_rows(events: list[dict], calls: int, modules: dict[str, dict[str, HloOp]] | None = None) -> list[dict]:
    """Time per call of each XLA op, averaged over the devices that ran it, most expensive first.

    events: trace_events(); an op event carries args hlo_module, hlo_op and device_ordinal. calls: how many
    times the traced code ran each module. modules: hlo_ops() of each module by its name ("jit_generate"),
    to name the ops. Each row: module, op, ms (per call and device), per_call (executions per call and
    device: a while loop's body ops run once per iteration), share (of the module's op time), and the
    HloOp fields when known."""
    total = collections.Counter()
    count = collections.Counter()
    devices = collections.defaultdict(set)
    for e, self_us in _self_times([e for e in events if "hlo_op" in (e.get("args") or {})]):
        args = e["args"]
        key = (args.get("hlo_module", "?"), args["hlo_op"])
        total[key] += self_us
        count[key] += 1
        devices[key[0]].add(args.get("device_ordinal", "0"))
    module_total = collections.Counter()
    for (module, _), us in total.items():
        module_total[module] += us
    modules = dict(modules or {})
    for module, ops in list(modules.items()):
        if any(m == module and op not in ops for m, op in total):
            del modules[module]  # a different compilation of the module: its names would mislabel the ops
    rows = []
    for (module, op), us in total.most_common():
        n = calls * len(devices[module])
        info = modules.get(module, {}).get(op)
        rows.append({"module": module, "op": op, "ms": us / n / 1e3, "per_call": count[(module, op)] / n,
                     "share": us / module_total[module], **(dataclasses.asdict(info) if info else {})})
    return rows


def _self_times(events: list[dict]):
    """(event, its duration less that of the op events nested in it on its thread): a while loop's or a call's
    own time, apart from the body ops that the trace also lists."""
    out = []
    by_thread = collections.defaultdict(list)
    for e in events:
        by_thread[(e.get("pid"), e.get("tid"))].append(e)
    for thread in by_thread.values():
        thread.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack: list[list] = []  # [event, end, self time]
        for e in thread:
            while stack and stack[-1][1] <= e["ts"]:
                out.append(tuple(stack.pop()[::2]))
            if stack:
                stack[-1][2] -= e["dur"]
            stack.append([e, e["ts"] + e["dur"], e["dur"]])
        out.extend(tuple(item[::2]) for item in stack)
    return out


def profile(fn, calls: int, trace_dir: str) -> list[dict]:
    """Run fn() `calls` times (each call blocking until its results are ready) under jax.profiler.trace into
    `trace_dir` (emptied first); returns the trace's op events."""
    shutil.rmtree(trace_dir, ignore_errors=True)
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
        for _ in range(calls):
            fn()
    return trace_events(trace_dir)


_COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")
_MOVES = {"copy", "transpose", "concatenate", "slice", "dynamic-slice", "dynamic-update-slice", "pad", "reshape",
          "gather", "scatter"}


def op_kind(row: dict) -> str:
    """What an op row spends its time on: "matmul" (a dot, alone or fused), "collective", "data movement"
    (copies, transposes, slices), "control" (a loop's or call's own time) or "elementwise / reduce". Read from
    the HLO fields when the op is named, else from its name."""
    opcode = row.get("opcode") or row["op"].split(".")[0]
    parts = {p.split(" x")[0] for p in row.get("fused", "").split(", ") if p}  # "dot x2, tanh" -> {dot, tanh}
    if opcode in ("dot", "convolution") or parts & {"dot", "convolution"}:
        return "matmul"
    if opcode.startswith(_COLLECTIVES) or row["op"].startswith(_COLLECTIVES):
        return "collective"
    if opcode in ("while", "conditional", "call"):
        return "control"
    if opcode in _MOVES or (opcode == "fusion" and parts and parts <= _MOVES):
        return "data movement"
    return "elementwise / reduce"


def kind_shares(rows: list[dict]) -> dict[str, dict[str, float]]:
    """{module: {kind: share of the module's op time}} (op_kind), largest first."""
    out = collections.defaultdict(collections.Counter)
    for r in rows:
        out[r["module"]][op_kind(r)] += r["share"]
    return {m: dict(c.most_common()) for m, c in out.items()}


def format_ops(rows: list[dict], top: int) -> list[str]:
    """Markdown table of the `top` most expensive ops of each module, the modules by their time (those under 1%
    of the largest, such as an eager fold_in, left out)."""
    lines = ["| module | op | ms / call | runs / call | share | output | fuses | from |",
             "|---|---|---|---|---|---|---|---|"]
    module_ms = collections.Counter()
    for r in rows:
        module_ms[r["module"]] += r["ms"]
    largest = max(module_ms.values(), default=0.0)
    order = {m: i for i, (m, ms) in enumerate(module_ms.most_common()) if ms >= 0.01 * largest}
    shares = kind_shares(rows)
    lines = [f"{m}: {module_ms[m]:.1f} ms of ops a call and device: "
              + ", ".join(f"{kind} {100 * share:.0f}%" for kind, share in shares[m].items() if share >= 0.005)
             for m in order] + lines
    shown = collections.Counter()
    for r in sorted((r for r in rows if r["module"] in order), key=lambda r: (order[r["module"]], -r["ms"])):
        if shown[r["module"]] >= top:
            continue
        shown[r["module"]] += 1
        shape = re.sub(r"\{[^}]*\}", "", r.get("shape", ""))
        shape = shape if len(shape) <= 40 else shape[:37] + "..."
        lines.append(f"| {r['module']} | {r['op']} | {r['ms']:.3f} | {r['per_call']:g} | {100 * r['share']:.1f}% | "
                     f"{shape} | {r.get('fused', '')} | {r.get('source', '')[-60:]} |")
    return lines
