"""fold_constants: all-constant nodes become initializers, computed as onnxruntime computes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ir_onnx import graph_to_model, load_graph, run
from onnx import TensorProto, helper, numpy_helper

from axtrain.compiler.passes.fold_constants import fold_graph, quantize_linear


def _f(name: str, value: float | list[float]) -> object:
    return numpy_helper.from_array(np.array(value, dtype=np.float32), name)


def _model() -> object:
    """input -> Q -> DQ -> Gemm(W, b) -> Q -> DQ, with W = DQ(Clip(Q(Transpose(Constant)))) and
    b = DQ(Cast(ConstantOfShape)) + Identity: every weight computed inside the graph."""
    rng = np.random.default_rng(5)
    w_t = (rng.normal(0, 0.5, (6, 4)).astype(np.float32))  # [in, out]: Transpose gives [out, in]
    w_t[0, 0] = 2.5 * 2**-6  # a tie: rounds to even (2)
    w_t[1, 0] = 300 * 2**-6  # saturates, then the narrow Clip takes it to 127
    nodes = [
        helper.make_node("Constant", [], ["w_t"], value=numpy_helper.from_array(w_t)),
        helper.make_node("Transpose", ["w_t"], ["w_f"], perm=[1, 0]),
        helper.make_node("QuantizeLinear", ["w_f", "sw", "zw"], ["w_q"], name="qw"),
        helper.make_node("Clip", ["w_q", "cmin", "cmax"], ["w_c"], name="narrow"),
        helper.make_node("Identity", ["w_c"], ["w_i"]),
        helper.make_node("DequantizeLinear", ["w_i", "sw", "zw"], ["w"], name="dqw"),
        helper.make_node("ConstantOfShape", ["bshape"], ["b0"], value=helper.make_tensor("v", TensorProto.INT64, [1], [3])),
        helper.make_node("Cast", ["b0"], ["b_q"], to=TensorProto.INT32),
        helper.make_node("DequantizeLinear", ["b_q", "sb"], ["b"], name="dqb"),
        helper.make_node("QuantizeLinear", ["input", "si", "zi"], ["xq"], name="qin"),
        helper.make_node("DequantizeLinear", ["xq", "si", "zi"], ["x"], name="dqin"),
        helper.make_node("Gemm", ["x", "w", "b"], ["acc"], name="gemm", transB=1),
        helper.make_node("QuantizeLinear", ["acc", "so", "zi"], ["yq"], name="qout"),
        helper.make_node("DequantizeLinear", ["yq", "so", "zi"], ["y"], name="dqout"),
    ]
    inits = [
        _f("sw", 2**-6), helper.make_tensor("zw", TensorProto.INT8, [], [0]),
        helper.make_tensor("cmin", TensorProto.INT8, [], [-127]), helper.make_tensor("cmax", TensorProto.INT8, [], [127]),
        numpy_helper.from_array(np.array([4], dtype=np.int64), "bshape"), _f("sb", 2**-10),
        _f("si", 2**-4), helper.make_tensor("zi", TensorProto.INT8, [], [0]), _f("so", 2**-3),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 6])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_folds_every_constant_and_onnxruntime_agrees(tmp_path: Path) -> None:
    model = _model()
    before = load_graph(model)
    after = fold_graph(before)
    left = sorted(n.op for n in after.nodes)
    # Only the weights' DQs (read by fold_qdq) and the activation chain remain.
    assert left == sorted(["DequantizeLinear"] * 4 + ["QuantizeLinear"] * 2 + ["Gemm"])
    weights = after.initializers[next(n for n in after.nodes if n.name == "dqw").inputs[0]]
    assert weights.dtype == np.int8 and weights.shape == (4, 6)
    assert weights[0, 0] == 2 and weights[0, 1] == 127  # tie to even; saturated then narrow-clipped
    x = np.random.default_rng(1).uniform(-6, 6, (32, 6)).astype(np.float32)
    np.testing.assert_array_equal(run(graph_to_model(after), x, tmp_path), run(model, x, tmp_path))


def test_pass_is_pure() -> None:
    before = load_graph(_model())
    nodes, inits = before.nodes, dict(before.initializers)
    fold_graph(before)
    assert before.nodes == nodes and before.initializers.keys() == inits.keys()


@pytest.mark.parametrize("dtype,zero", [(TensorProto.INT8, 0), (TensorProto.INT8, -3), (TensorProto.UINT8, 128), (TensorProto.INT16, 5)])
def test_quantize_linear_equals_onnxruntime(dtype: int, zero: int, tmp_path: Path) -> None:
    """The fold's QuantizeLinear against onnxruntime's kernel on ties, saturation and both signs."""
    x = np.array([[0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 1000.0, -1000.0, 0.3, 0.7, -7.3, 3.49999]], dtype=np.float32) * np.float32(0.37)
    scale = np.float32(0.37 / 1.0)  # a scale that is not a power of two: the division's float32 rounding matters
    node = helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"])
    z = helper.make_tensor("z", dtype, [], [zero])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 12])], [helper.make_tensor_value_info("q", dtype, [1, 12])], [_f("s", float(scale)), z])
    expected = run(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), x, tmp_path)
    got = quantize_linear(x, np.array(scale), numpy_helper.to_array(z))
    assert got is not None and got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
