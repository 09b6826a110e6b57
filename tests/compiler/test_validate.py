"""Pass ``validate`` (compiler/passes/validate.py): node-local checks against the supported subset."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from onnx_graphs import build_model, mlp_specs

from axtrain.compiler.onnx_import import import_onnx
from axtrain.compiler.passes.validate import validate
from axtrain.errors import OnnxError


@pytest.fixture
def ir(save_model, rng: np.random.Generator):
    return import_onnx(save_model(build_model(mlp_specs(rng, [6, 4, 2]), ["N", 6])))


def test_accepts_the_subset_and_changes_nothing(ir) -> None:
    assert validate(ir) == ir  # checks only: the same IR back


def _with_node(ir, index: int, **changes):
    nodes = list(ir.graph.nodes)
    nodes[index] = dataclasses.replace(nodes[index], **changes)
    return ir.update(graph=dataclasses.replace(ir.graph, nodes=tuple(nodes)))


def test_unknown_operator_is_refused_by_node(ir) -> None:
    index = next(i for i, n in enumerate(ir.graph.nodes) if n.op == "Relu")
    bad = _with_node(ir, index, op="Sigmoid")
    with pytest.raises(OnnxError, match=r"\(Sigmoid\)") as info:
        validate(bad)
    assert "\n" not in str(info.value)


def test_unsupported_attribute_value_is_refused(ir) -> None:
    index = next(i for i, n in enumerate(ir.graph.nodes) if n.op == "Gemm")
    node = ir.graph.nodes[index]
    with pytest.raises(OnnxError, match="alpha"):
        validate(_with_node(ir, index, attrs={**node.attrs, "alpha": 2.0}))
