"""Softmax, LogSoftmax and ArgMax after the last layer run on the host (float32), recorded in the
manifest and shown by inspect; they agree with onnxruntime (ArgMax exactly, the float ops within a
stated tolerance: both compute in float32 with their own exp)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnx_graphs import build_model, mlp_specs

from axtrain.compiler.cli import summary
from axtrain.compiler.package import write_compiled_bundle
from axtrain.compiler.pipeline import compile_model
from axtrain.errors import OnnxError
from axtrain.formats.bundle import load_bundle
from axtrain.hwmodels.fixedpoint import dequantize
from axtrain.runtime.host_tail import apply_tail, tail_ops
from axtrain.runtime.interpreter import run_bundle

ATOL = 1e-6  # float32 softmax/log-softmax of outputs of a few LSB, two implementations of exp


def _with_tail(ops: list[tuple[str, dict[str, int]]], rng: np.random.Generator, tmp_path: Path) -> Path:
    model = build_model(mlp_specs(rng, [6, 5, 4]), ["N", 6])
    previous = "output"
    for node in model.graph.node:
        node.output[:] = ["z" if o == "output" else o for o in node.output]
    previous = "z"
    for i, (op, attrs) in enumerate(ops):
        out = "output" if i == len(ops) - 1 else f"t{i}"
        model.graph.node.append(helper.make_node(op, [previous], [out], name=f"tail{i}", **attrs))
        previous = out
    if ops[-1][0] == "ArgMax":
        model.graph.output[0].CopyFrom(helper.make_tensor_value_info("output", TensorProto.INT64, ["N"]))
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("ops", [
    [("Softmax", {"axis": -1})],
    [("LogSoftmax", {"axis": 1})],
    [("ArgMax", {"axis": 1, "keepdims": 0})],
    [("Softmax", {}), ("ArgMax", {"axis": -1, "keepdims": 0})],
])
def test_tail_runs_on_the_host_like_onnxruntime(ops: list[tuple[str, dict[str, int]]], rng: np.random.Generator, tmp_path: Path) -> None:
    path = _with_tail(ops, rng, tmp_path)
    ir = compile_model(path)
    write_compiled_bundle(ir, tmp_path / "b")
    bundle = load_bundle(tmp_path / "b")
    assert tail_ops(bundle) == [op for op, _ in ops]
    assert "host tail " + " -> ".join(f"{op} (tail{i})" for i, (op, _) in enumerate(ops)) in summary(tmp_path / "b")
    x = rng.uniform(-8, 8, (64, 6)).astype(np.float32)
    z = dequantize(run_bundle(bundle, x)[-1], ir.layers[-1].output_format)
    got = apply_tail(tail_ops(bundle), z)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    if ops[-1][0] == "ArgMax":
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, expected)
        assert len(set(got.tolist())) > 1  # not vacuous
    else:
        np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("op,attrs,message", [
    ("Softmax", {"axis": 0}, r"node 'tail0' \(Softmax\): axis=0 is not supported on a host tail op"),
    ("ArgMax", {"axis": 1}, r"node 'tail0' \(ArgMax\): keepdims=1 \(the default\) is not supported"),
])
def test_unsupported_tail_attributes_refused(op: str, attrs: dict[str, int], message: str, rng: np.random.Generator, tmp_path: Path) -> None:
    path = _with_tail([(op, attrs)], rng, tmp_path)
    with pytest.raises(OnnxError, match=message):
        compile_model(path)
