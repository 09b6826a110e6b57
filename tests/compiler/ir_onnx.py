"""Test helper: the compiler's plain Graph back as an ONNX model, so onnxruntime can run a graph before
and after a normalisation pass (each pass must leave onnxruntime's outputs unchanged)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from axtrain.compiler.ir import Graph
from axtrain.compiler.onnx_import import graph_from_model

_TYPES = {"float": TensorProto.FLOAT, "int8": TensorProto.INT8, "uint8": TensorProto.UINT8, "int16": TensorProto.INT16, "int32": TensorProto.INT32, "int64": TensorProto.INT64}


def graph_to_model(graph: Graph) -> onnx.ModelProto:
    """A ModelProto with ``graph``'s nodes, initializers, input and output."""
    nodes = []
    for node in graph.nodes:
        attrs = {k: (numpy_helper.from_array(v) if isinstance(v, np.ndarray) else v) for k, v in node.attrs.items()}
        nodes.append(helper.make_node(node.op, list(node.inputs), list(node.outputs), name=node.name, domain=node.domain or None, **attrs))
    inputs = [helper.make_tensor_value_info(name, _TYPES[dtype], [d if isinstance(d, (int, str)) else None for d in dims]) for name, dtype, dims in graph.inputs]
    outputs = [helper.make_tensor_value_info(name, _TYPES[dtype], [d if isinstance(d, (int, str)) else None for d in graph.value_shapes.get(name, ("N",))]) for name, dtype in graph.outputs]
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in graph.initializers.items()]
    body = helper.make_graph(nodes, "g", inputs, outputs, inits)
    # Opset 21 at least: a rewrite may hold int16 QuantizeLinear (same semantics as before, more types).
    opsets = [helper.make_opsetid("", max(graph.opset, 21))]
    if any(n.domain for n in graph.nodes):
        opsets += [helper.make_opsetid(d, 1) for d in sorted({n.domain for n in graph.nodes if n.domain})]
    return helper.make_model(body, opset_imports=opsets)


def load_graph(model: onnx.ModelProto) -> Graph:
    """The compiler's Graph of a model (after onnx.checker), as import_onnx reads it."""
    onnx.checker.check_model(model)
    return graph_from_model(model)


def run(model: onnx.ModelProto, x: np.ndarray, tmp: Path) -> np.ndarray:
    """onnxruntime's output, QDQ fusions off (docs/onnx-schema.md)."""
    path = tmp / f"m{abs(hash(model.SerializeToString())) % 10**8}.onnx"
    onnx.save(model, path)
    options = ort.SessionOptions()
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]
