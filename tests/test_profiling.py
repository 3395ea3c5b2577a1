"""profiling.py: XLA ops of a traced program, their self time per call and device, and their names read off the
compiled HLO; the bench's profile on the smoke config. Times are never asserted, only the bookkeeping."""

import json
import os

import jax
import jax.numpy as jnp
import pytest

from instructgpt_jax import bench, profiling

from test_pretrain import load_config


def _op(module, op, ts, dur, device="0", tid=1):
    return {"ph": "X", "pid": 1, "tid": tid, "ts": ts, "dur": dur, "name": op,
            "args": {"hlo_module": module, "hlo_op": op, "device_ordinal": device}}


def test_self_time_subtracts_nested_ops_on_the_same_thread_only():
    events = [_op("m", "while", 0, 10), _op("m", "body_a", 2, 3), _op("m", "body_b", 6, 2),
              _op("m", "other", 3, 4, tid=2)]
    self_us = {e["args"]["hlo_op"]: us for e, us in profiling._self_times(events)}
    assert self_us == {"while": 5, "body_a": 3, "body_b": 2, "other": 4}


def test_op_rows_average_over_calls_and_devices():
    # Two calls on two devices: op a takes 1 ms on device 0 and 3 ms on device 1 each call; op b runs twice a call.
    events = []
    for call in range(2):
        t = call * 100_000
        events += [_op("m", "a", t, 1000, "0", tid=1), _op("m", "a", t, 3000, "1", tid=2)]
        events += [_op("m", "b", t + 5000 + k * 1000, 500, d, tid=int(d) + 1) for k in range(2) for d in "01"]
    rows = {r["op"]: r for r in profiling.op_rows(events, calls=2)}
    assert rows["a"]["ms"] == pytest.approx(2.0) and rows["a"]["per_call"] == 1
    assert rows["b"]["ms"] == pytest.approx(1.0) and rows["b"]["per_call"] == 2
    assert rows["a"]["share"] + rows["b"]["share"] == pytest.approx(1.0)
    assert rows["a"]["share"] == pytest.approx(2 / 3)


def test_hlo_ops_name_a_compiled_programs_ops():
    def f(x, w):
        return jnp.tanh(x @ w).sum(-1)

    compiled = jax.jit(f).lower(jnp.ones((16, 8)), jnp.ones((8, 32))).compile()
    modules = profiling.module_ops(compiled)
    assert list(modules) == ["jit_f"]
    ops = modules["jit_f"]
    dots = [op for op in ops.values() if op.opcode == "dot" or "dot" in op.fused]
    assert dots and all(op.source.startswith("jit(f)") for op in dots)
    assert any("[16,32]" in op.shape for op in dots) or any("[16]" in op.shape for op in dots)


def test_op_rows_drop_names_of_another_compilation():
    named = {"m": {"a": profiling.HloOp("f32[2]", "dot", "", "jit(m)/dot_general")}}
    rows = profiling.op_rows([_op("m", "a", 0, 10)], 1, named)
    assert rows[0]["opcode"] == "dot"
    # An op the HLO does not hold: the module was compiled differently, so none of its names are trusted.
    rows = profiling.op_rows([_op("m", "a", 0, 10), _op("m", "z", 20, 10)], 1, named)
    assert all("opcode" not in r for r in rows)


def test_smoke_bench_profile_names_each_programs_ops(tmp_path):
    config = load_config("configs/bench.py", "smoke")
    config.steps = 1
    config.stages = ("sft",)
    config.real_lengths.enabled = False
    config.profile.update({"enabled": True, "calls": 1})
    bench.run(config, str(tmp_path))
    result = json.load(open(os.path.join(tmp_path, "bench_smoke.json")))
    sft_ops = result["steps"][0]["ops"]
    assert sft_ops and sum(r["share"] for r in sft_ops) == pytest.approx(1.0)
    assert any(r.get("opcode") == "dot" or "dot" in r.get("fused", "") for r in sft_ops)
    ppo_ops = result["ppo"]["ops"]
    for module in ("jit_generate", "jit_score", "jit_update"):
        rows = [r for r in ppo_ops if r["module"] == module]
        assert rows and all("opcode" in r for r in rows), module
    # The decode loop's ops run once per generated token after the first (fewer if every row ended early).
    body = [r for r in ppo_ops if r["module"] == "jit_generate" and "while/body" in r["source"]]
    assert body and all(1 <= r["per_call"] <= config.ppo.ppo.max_new_tokens - 1 for r in body)
    assert os.path.isdir(os.path.join(tmp_path, "profile_ppo")) and "jit_generate" in result["table"]
    for stage in ("sft", "ppo"):  # each op table names its own trace folder
        assert f"trace in {os.path.join(tmp_path, 'profile_' + stage)})" in result["table"], stage


@pytest.mark.parametrize("row, kind", [
    ({"op": "ynn_fusion.3", "opcode": "fusion", "fused": "multiply x2, add, dot, reduce"}, "matmul"),
    ({"op": "ynn_fusion.4", "opcode": "fusion", "fused": "tanh, dot x2"}, "matmul"),
    ({"op": "dot.7", "opcode": "dot", "fused": ""}, "matmul"),
    ({"op": "all-reduce.7"}, "collective"),
    ({"op": "while.2", "opcode": "while", "fused": ""}, "control"),
    ({"op": "copy_fusion", "opcode": "fusion", "fused": "transpose, copy"}, "data movement"),
    ({"op": "transpose.3", "opcode": "transpose", "fused": ""}, "data movement"),
    ({"op": "loop_fusion", "opcode": "fusion", "fused": "exponential, reduce"}, "elementwise / reduce"),
])
def test_op_kind(row, kind):
    assert profiling.op_kind(row) == kind


def test_kind_shares_sum_each_modules_shares():
    rows = [{"module": "m", "op": "dot.1", "opcode": "dot", "share": 0.6},
            {"module": "m", "op": "all-reduce.1", "share": 0.1},
            {"module": "m", "op": "add.1", "opcode": "add", "share": 0.3},
            {"module": "n", "op": "dot.2", "opcode": "dot", "share": 1.0}]
    assert profiling.kind_shares(rows) == {"m": {"matmul": 0.6, "elementwise / reduce": 0.3, "collective": 0.1},
                                           "n": {"matmul": 1.0}}
