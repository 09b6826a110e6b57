"""lower_qonnx: QONNX Quant nodes become QuantizeLinear -> [Clip] -> DequantizeLinear with the same
values (checked against qonnx's own Quant where qonnx is installed, and against the formula by hand)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from ir_onnx import graph_to_model, load_graph, run
from onnx import TensorProto, helper, numpy_helper

from axtrain.compiler.passes.lower_qonnx import lower_graph
from axtrain.errors import OnnxError

DOMAIN = "qonnx.custom_op.general"


def _model(bits: int, signed: int, narrow: int, zero: float = 0.0, scale: float = 2**-4, mode: str = "ROUND", op: str = "Quant") -> onnx.ModelProto:
    node = helper.make_node(op, ["input", "s", "z", "b"], ["y"], name="quant", domain=DOMAIN, signed=signed, narrow=narrow, rounding_mode=mode)
    inits = [numpy_helper.from_array(np.array(v, dtype=np.float32), n) for n, v in (("s", scale), ("z", zero), ("b", float(bits)))]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 9])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 9])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)])


def _by_hand(x: np.ndarray, bits: int, signed: int, narrow: int, zero: float, scale: float) -> np.ndarray:
    low = -(2 ** (bits - 1)) + narrow if signed else 0
    high = 2 ** (bits - 1) - 1 if signed else 2**bits - 1 - narrow
    return ((np.clip(np.rint(x.astype(np.float64) / scale + zero), low, high) - zero) * scale).astype(np.float32)


X = (np.array([[-1000, -9.5, -8.5, -0.03125, 0, 0.03125, 0.09375, 7.5, 1000]], dtype=np.float32) * np.float32(0.125)).repeat(2, axis=0)


@pytest.mark.parametrize("bits,signed,narrow,zero", [(8, 1, 0, 0.0), (4, 1, 1, 0.0), (4, 0, 0, 0.0), (8, 0, 0, 128.0), (12, 1, 0, 0.0), (3, 1, 0, 1.0)])
def test_lowered_quant_equals_the_definition(bits: int, signed: int, narrow: int, zero: float, tmp_path: Path) -> None:
    model = _model(bits, signed, narrow, zero)
    lowered = lower_graph(load_graph(model))
    assert {n.op for n in lowered.nodes} <= {"QuantizeLinear", "Clip", "DequantizeLinear"} and all(n.domain == "" for n in lowered.nodes)
    if bits <= 8:
        got = run(graph_to_model(lowered), X, tmp_path)
    else:  # onnxruntime has no int16 Clip kernel: onnx's reference evaluator runs the lowered graph
        from onnx.reference import ReferenceEvaluator

        got = ReferenceEvaluator(graph_to_model(lowered)).run(None, {"input": X})[0]
    np.testing.assert_array_equal(got, _by_hand(X, bits, signed, narrow, zero, 2**-4))
    if importlib.util.find_spec("qonnx") is not None:
        from qonnx.custom_op.general.quant import quant

        expected = quant(X, np.float32(2**-4), np.float32(zero), np.float32(bits), signed, narrow, "ROUND")
        np.testing.assert_array_equal(got, expected.astype(np.float32))


@pytest.mark.parametrize("kwargs,message", [
    ({"mode": "FLOOR"}, r"node 'quant' \(Quant\): QONNX Quant rounding_mode FLOOR is not supported"),
    ({"bits": 1}, r"node 'quant' \(Quant\): QONNX Quant of 1 bits is not supported"),
    ({"zero": 0.5}, r"node 'quant' \(Quant\): QONNX Quant zero point is not an integer"),
    ({"op": "Trunc"}, r"node 'quant' \(Trunc\): QONNX operator Trunc is not supported \(only Quant\)"),
])
def test_other_qonnx_refused_by_name(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"bits": 8, "signed": 1, "narrow": 0, **kwargs}
    with pytest.raises(OnnxError, match=message):
        lower_graph(load_graph(_model(**args)))  # type: ignore[arg-type]
