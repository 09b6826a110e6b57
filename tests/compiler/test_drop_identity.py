"""drop_identity: Identity nodes on activations disappear, including one that makes the graph output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ir_onnx import graph_to_model, load_graph, run
from onnx import TensorProto, helper

from axtrain.compiler.passes.drop_identity import drop_identities


def test_identities_removed_outputs_unchanged(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Identity", ["input"], ["a"]),
        helper.make_node("Relu", ["a"], ["b"], name="relu"),
        helper.make_node("Identity", ["b"], ["c"]),
        helper.make_node("MaxPool", ["c"], ["d"], kernel_shape=[2, 2], name="pool"),
        helper.make_node("Identity", ["d"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 4, 4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, 3, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    after = drop_identities(load_graph(model))
    assert [n.op for n in after.nodes] == ["Relu", "MaxPool"]
    assert after.nodes[0].inputs == ("input",) and after.nodes[1].outputs == ("y",)
    x = np.random.default_rng(0).normal(size=(2, 1, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(run(graph_to_model(after), x, tmp_path), run(model, x, tmp_path))
