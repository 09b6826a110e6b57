"""Pass ``host_tail`` (compiler/host_tail.py): trailing float ops become host-side tail ops."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_graphs import build_model, mlp_specs

from axtrain.compiler.host_tail import host_tail
from axtrain.compiler.ir import CompilerIR, HostOp
from axtrain.compiler.onnx_import import graph_from_model, import_onnx
from axtrain.errors import OnnxError
from axtrain.formats.arch import DEFAULT_ARCH


def with_sigmoid(model: onnx.ModelProto, extra_reader: bool = False) -> onnx.ModelProto:
    """``model`` with a Sigmoid after its output (and, optionally, a second reader of that output)."""
    out = model.graph.output[0].name
    for node in model.graph.node:
        for i, name in enumerate(node.output):
            if name == out:
                node.output[i] = "pre_sigmoid"
    model.graph.node.append(helper.make_node("Sigmoid", ["pre_sigmoid"], [out], name="sig"))
    if extra_reader:
        model.graph.node.append(helper.make_node("Relu", ["pre_sigmoid"], ["unused"], name="spy"))
    return model


def test_a_trailing_sigmoid_becomes_the_host_tail(save_model, rng: np.random.Generator) -> None:
    ir = import_onnx(save_model(with_sigmoid(build_model(mlp_specs(rng, [5, 4, 2]), ["N", 5]))))
    tailed = host_tail(ir)
    assert tailed.host_tail == (HostOp(op="Sigmoid", node="sig"),)
    assert tailed.graph.outputs[0][0] == "pre_sigmoid" and all(n.op != "Sigmoid" for n in tailed.graph.nodes)
    assert len(tailed.graph.nodes) == len(ir.graph.nodes) - 1 and ir.graph.outputs[0][0] != "pre_sigmoid"  # pure: ir untouched


def test_no_tail_leaves_the_ir_as_it_was(save_model, rng: np.random.Generator) -> None:
    ir = import_onnx(save_model(build_model(mlp_specs(rng, [5, 2]), ["N", 5])))
    assert host_tail(ir) is ir


def test_a_tail_whose_input_is_read_elsewhere_is_refused(rng: np.random.Generator) -> None:
    model = with_sigmoid(build_model(mlp_specs(rng, [5, 2]), ["N", 5]), extra_reader=True)
    # Built from the ModelProto directly: the file importer's checker is not what this test is about.
    ir = CompilerIR("m.onnx", "0" * 64, DEFAULT_ARCH, graph=graph_from_model(model))
    with pytest.raises(OnnxError, match="used elsewhere too"):
        host_tail(ir)
