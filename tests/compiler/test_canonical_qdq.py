"""canonical_qdq: quantiser chains of real quantizers rewritten into the compiler's dialect, exactly
(onnxruntime's outputs unchanged), or refused naming the node and the pattern."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from ir_onnx import graph_to_model, load_graph, run
from onnx import TensorProto, helper, numpy_helper

from axtrain.compiler.passes.canonical_qdq import canonical_graph
from axtrain.compiler.pipeline import compile_model
from axtrain.errors import OnnxError
from axtrain.hwmodels.fixedpoint import FixedPointFormat

U8, I8 = TensorProto.UINT8, TensorProto.INT8


def _f(name: str, value: float) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value, dtype=np.float32), name)


def _model(chain: list[tuple], frac: int = 3) -> onnx.ModelProto:
    """input -> Q -> DQ -> Gemm -> <chain> ; chain items: ("q", dtype, zero), ("clip_int", lo, hi),
    ("dq",), ("relu",), ("clip", lo, hi) (floats)."""
    rng = np.random.default_rng(4)
    w = rng.integers(-60, 60, (5, 8)).astype(np.int8)
    inits = [_f("si", 2**-4), helper.make_tensor("zi", I8, [], [0]), numpy_helper.from_array(w, "w"), _f("sw", 2**-6), _f("s", 2**-frac)]
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "si", "zi"], ["xq"], name="qin"),
        helper.make_node("DequantizeLinear", ["xq", "si", "zi"], ["x"], name="dqin"),
        helper.make_node("DequantizeLinear", ["w", "sw"], ["wf"], name="dqw"),
        helper.make_node("Gemm", ["x", "wf"], ["t0"], name="gemm", transB=1),
    ]
    tensor, zero = "t0", "z"
    for i, item in enumerate(chain):
        out = f"t{i + 1}"
        if item[0] == "q":
            zero = f"z{i}"
            inits.append(helper.make_tensor(zero, item[1], [], [item[2]]))
            nodes.append(helper.make_node("QuantizeLinear", [tensor, "s", zero], [out], name=f"q{i}"))
        elif item[0] == "dq":
            nodes.append(helper.make_node("DequantizeLinear", [tensor, "s", zero], [out], name=f"dq{i}"))
        elif item[0] == "clip_int":
            dtype = next(t for t in inits if t.name == zero).data_type
            inits += [helper.make_tensor(f"lo{i}", dtype, [], [item[1]]), helper.make_tensor(f"hi{i}", dtype, [], [item[2]])]
            nodes.append(helper.make_node("Clip", [tensor, f"lo{i}", f"hi{i}"], [out], name=f"clipi{i}"))
        elif item[0] == "clip":
            inits += [_f(f"lo{i}", item[1]), _f(f"hi{i}", item[2])]
            nodes.append(helper.make_node("Clip", [tensor, f"lo{i}", f"hi{i}"], [out], name=f"clip{i}"))
        else:
            nodes.append(helper.make_node("Relu", [tensor], [out], name=f"relu{i}"))
        tensor = out
    nodes[-1].output[0] = "y"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 8])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


ACCEPTED = {
    # onnxruntime's pattern: Gemm -> Q -> DQ -> Relu -> Q -> DQ
    "ort relu between": ([("q", I8, 0), ("dq",), ("relu",), ("q", I8, 0), ("dq",)], FixedPointFormat(8, 3), True),
    "uint8 zero point 0 after relu is int9": ([("relu",), ("q", U8, 0), ("dq",)], FixedPointFormat(9, 3), True),
    "uint8 zero point 128 is int8": ([("q", U8, 128), ("dq",)], FixedPointFormat(8, 3), False),
    "brevitas 4-bit integer clip": ([("q", I8, 0), ("clip_int", -8, 7), ("dq",)], FixedPointFormat(4, 3), False),
    "relu6 inactive at this scale, before Q": ([("clip", 0.0, 6.0), ("q", I8, 0), ("dq",)], FixedPointFormat(8, 5), True),
    "relu6 after DQ": ([("q", I8, 0), ("dq",), ("clip", 0.0, 6.0), ("q", I8, 0), ("dq",)], FixedPointFormat(8, 5), True),
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_accepted_chains_keep_onnxruntime_outputs(case: str, tmp_path: Path) -> None:
    chain, fmt, relu = ACCEPTED[case]
    model = _model(chain, frac=fmt.frac)
    after = canonical_graph(load_graph(model))
    x = np.random.default_rng(8).uniform(-8, 8, (64, 8)).astype(np.float32)
    expected = run(model, x, tmp_path)
    np.testing.assert_array_equal(run(graph_to_model(after), x, tmp_path), expected)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    layer = compile_model(path).layers[0]
    assert (layer.output_format, layer.relu) == (fmt, relu)
    assert np.mean(expected > 0) > 0.2  # not all clipped away


REFUSED = {
    "relu6 active": ([("clip", 0.0, 6.0), ("q", I8, 0), ("dq",)], r"node 'q1' \(QuantizeLinear\): activation range \[0, 48\] LSB \(zero point 0\) is neither a signed format"),
}


@pytest.mark.parametrize("case", ["relu6 active"])
def test_refused_chains_name_node_and_pattern(case: str) -> None:
    chain, message = REFUSED[case]
    with pytest.raises(OnnxError, match=message):
        canonical_graph(load_graph(_model(chain)))
