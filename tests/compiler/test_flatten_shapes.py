"""flatten_shapes: Reshapes that flatten each sample (x.view(B, -1) as both torch exporters write it,
a constant [-1, n]) become Flatten; other Reshapes stay (validate refuses them by name)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ir_onnx import graph_to_model, load_graph, run
from onnx import TensorProto, helper, numpy_helper

from axtrain.compiler.passes.flatten_shapes import flatten_reshapes


def _i64(name: str, values: list[int]) -> object:
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def _model(style: str, batch: int | str = "N") -> object:
    nodes = [helper.make_node("MaxPool", ["input"], ["p"], kernel_shape=[2, 2], strides=[2, 2])]
    inits = []
    if style == "torchscript":  # Shape -> Gather(0) -> Unsqueeze -> Concat([B], [-1]) -> Reshape
        nodes += [
            helper.make_node("Shape", ["p"], ["s"]),
            helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
            helper.make_node("Unsqueeze", ["b", "axes"], ["b1"]),
            helper.make_node("Concat", ["b1", "minus1"], ["shape"], axis=0),
        ]
        inits += [numpy_helper.from_array(np.array(0, dtype=np.int64), "zero"), _i64("axes", [0]), _i64("minus1", [-1])]
    elif style == "dynamo":  # Shape(start=0, end=1) -> Concat([B], [-1])
        nodes += [helper.make_node("Shape", ["p"], ["b1"], start=0, end=1), helper.make_node("Concat", ["b1", "minus1"], ["shape"], axis=0)]
        inits += [_i64("minus1", [-1])]
    elif style == "constant":
        inits += [_i64("shape", [-1, 2 * 3 * 3])]
    else:  # not a flatten: [B, 2, 9]
        inits += [_i64("shape", [-1, 2, 9])]
    nodes.append(helper.make_node("Reshape", ["p", "shape"], ["y"], name="reshape", allowzero=1 if style == "dynamo" else 0))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 2, 6, 6])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", None])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("style", ["torchscript", "dynamo", "constant"])
@pytest.mark.parametrize("batch", ["N", 3])
def test_flatten_chains_become_flatten(style: str, batch: int | str, tmp_path: Path) -> None:
    model = _model(style, batch)
    after = flatten_reshapes(load_graph(model))
    assert [n.op for n in after.nodes] == ["MaxPool", "Flatten"]  # the shape computation is gone
    assert after.nodes[1].name == "reshape" and after.nodes[1].attrs == {"axis": 1}
    x = np.random.default_rng(2).normal(size=(3, 2, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(run(graph_to_model(after), x, tmp_path), run(model, x, tmp_path))


def test_other_reshapes_are_left_alone() -> None:
    graph = load_graph(_model("other"))
    assert flatten_reshapes(graph) == graph
