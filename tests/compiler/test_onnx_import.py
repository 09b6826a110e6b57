"""Stage ``import`` (compiler/onnx_import.py): protobuf -> plain Graph, refusing what cannot be read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx_graphs import build_model, mlp_specs

from axtrain.compiler.onnx_import import import_onnx
from axtrain.errors import OnnxError


def test_graph_is_plain_python_and_numpy(save_model, rng: np.random.Generator) -> None:
    specs = mlp_specs(rng, [5, 4, 3])
    specs[0].metadata = {"axtrain.multiplier": "drum:2", "axtrain.layer": "fc1"}
    path = save_model(build_model(specs, ["N", 5]))
    ir = import_onnx(path)
    g = ir.graph
    assert g is not None and ir.layers is None  # only the graph so far
    assert [n.op for n in g.nodes if n.op in ("Gemm", "Relu")] == ["Gemm", "Relu", "Gemm"]
    gemm = next(n for n in g.nodes if n.op == "Gemm")
    assert gemm.metadata["axtrain.multiplier"] == "drum:2" and isinstance(gemm.attrs.get("transB", 0), int)
    weights = [a for a in g.initializers.values() if a.shape == (4, 5)]
    assert len(weights) == 1 and isinstance(weights[0], np.ndarray)
    np.testing.assert_array_equal(weights[0], specs[0].weight)
    assert g.inputs[0][:2] == ("input", "float") and g.inputs[0][2][1:] == (5,)
    assert ir.source_name == "model.onnx" and len(ir.source_sha256) == 64


def test_unreadable_bytes_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07not a protobuf at all\xff\xff")
    with pytest.raises(OnnxError) as info:
        import_onnx(path)
    assert "\n" not in str(info.value) and "broken.onnx" in str(info.value)


def test_checker_runs_before_conversion(save_model, rng: np.random.Generator) -> None:
    model = build_model(mlp_specs(rng, [5, 3]), ["N", 5])
    model.graph.node[0].input[0] = "no_such_tensor"  # a dangling edge: onnx.checker refuses it
    path = save_model(model)
    with pytest.raises(OnnxError):
        import_onnx(path)
    assert onnx.load(path).graph.node[0].input[0] == "no_such_tensor"  # the file was not touched
