"""Normalisation pass lower_qonnx: QONNX ``Quant`` nodes (domain ``qonnx.custom_op.general``) become
``QuantizeLinear -> [Clip] -> DequantizeLinear``, natively (the qonnx package is not needed).

``Quant(x, scale, zeropt, bitwidth)`` with ``rounding_mode=ROUND`` is
``(clip(round_half_even(x / scale + zeropt), lo, hi) - zeropt) * scale`` with ``[lo, hi]`` the
signed (``[-2**(b-1) + narrow, 2**(b-1) - 1]``) or unsigned (``[0, 2**b - 1 - narrow]``) range of
``b`` bits: the same as QuantizeLinear with that zero point into an 8- or 16-bit container, an integer
Clip to ``[lo, hi]`` and the DequantizeLinear back, which is what onnxruntime runs and what
canonical_qdq and fold_constants then read. Widths 2..16, integral zero points and constant
parameters are lowered; anything else is refused naming the node (other QONNX ops, other rounding
modes, wider formats). Scales are checked later like any Q/DQ scale (docs/importing.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from axtrain.compiler.ir import CompilerIR, Graph, Node
from axtrain.compiler.passes.fold_constants import fold_graph
from axtrain.compiler.passes.graph_edit import fresh_index, make_node, prune_initializers
from axtrain.compiler.subset import refuse

QONNX_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general")


def _constant(graph: Graph, node: Node, position: int, what: str) -> np.ndarray:
    name = node.inputs[position] if position < len(node.inputs) else ""
    if name not in graph.initializers:
        raise refuse(node, f"QONNX Quant {what} '{name}' must be a constant")
    return graph.initializers[name]


def _per_axis(node: Node, value: np.ndarray, what: str) -> tuple[np.ndarray, int]:
    """A QONNX broadcastable parameter as ONNX wants it: a scalar, or 1-D with its axis."""
    if value.size == 1:
        return value.reshape(()), 1
    axes = [i for i, d in enumerate(value.shape) if d != 1]
    if len(axes) != 1:
        raise refuse(node, f"QONNX Quant {what} of shape {list(value.shape)} varies along more than one axis")
    return value.reshape(-1), axes[0]


def _quant_constant(graph: Graph, node: Node, bits: int) -> np.ndarray:
    """QONNX Quant of a constant, evaluated: ``(clip(round(x / s + z), lo, hi) - z) * s`` in float64
    (exact for power-of-two scales), as float32."""
    x = graph.initializers[node.inputs[0]].astype(np.float64)
    scale = _constant(graph, node, 1, "scale").astype(np.float64)
    zero = _constant(graph, node, 2, "zero point").astype(np.float64)
    signed, narrow = int(node.attrs.get("signed", 1)), int(node.attrs.get("narrow", 0))
    low = -(2.0 ** (bits - 1)) + narrow if signed else 0.0
    high = 2.0 ** (bits - 1) - 1 if signed else 2.0**bits - 1 - narrow
    return ((np.clip(np.rint(x / scale + zero), low, high) - zero) * scale).astype(np.float32)


def lower_graph(graph: Graph) -> Graph:
    """``graph`` with its QONNX Quant nodes lowered (pure)."""
    if not any(n.domain in QONNX_DOMAINS for n in graph.nodes):
        return graph
    initializers = dict(graph.initializers)
    nodes: list[Node] = []
    index = fresh_index(graph)
    for node in graph.nodes:
        if node.domain not in QONNX_DOMAINS:
            nodes.append(node)
            continue
        if node.op != "Quant":
            raise refuse(node, f"QONNX operator {node.op} is not supported (only Quant)")
        mode = str(node.attrs.get("rounding_mode", "ROUND")).upper()
        if mode not in ("ROUND", "HALF_EVEN"):
            raise refuse(node, f"QONNX Quant rounding_mode {mode} is not supported (QuantizeLinear rounds half to even: ROUND)")
        bits_value = _constant(graph, node, 3, "bitwidth")
        if bits_value.size != 1 or not float(bits_value.reshape(-1)[0]).is_integer():
            raise refuse(node, f"QONNX Quant bitwidth {bits_value.reshape(-1)[:4].tolist()} is not one integer")
        bits = int(bits_value.reshape(-1)[0])
        if bits > 16 and node.inputs[0] in graph.initializers:
            # A wide Quant of a constant (Brevitas' Int32Bias): its value, a float on the grid, which
            # fold_qdq reads as a float bias (exact: every value is a multiple of the scale).
            initializers[node.outputs[0]] = _quant_constant(graph, node, bits)
            continue
        if not 2 <= bits <= 16:
            raise refuse(node, f"QONNX Quant of {bits} bits is not supported (2 to 16 bits)")
        signed, narrow = int(node.attrs.get("signed", 1)), int(node.attrs.get("narrow", 0))
        scale, axis = _per_axis(node, _constant(graph, node, 1, "scale").astype(np.float32), "scale")
        zero_value, zero_axis = _per_axis(node, _constant(graph, node, 2, "zero point"), "zero point")
        if not np.all(np.floor(zero_value) == zero_value):
            raise refuse(node, "QONNX Quant zero point is not an integer")
        if zero_value.size > 1 and scale.size > 1 and zero_axis != axis:
            raise refuse(node, "QONNX Quant scale and zero point vary along different axes")
        if zero_value.size > 1 and scale.size == 1:
            scale, axis = np.full(zero_value.shape, scale, dtype=np.float32), zero_axis
        container: type[np.integer[Any]]
        if signed:
            low, high, container = -(1 << (bits - 1)) + narrow, (1 << (bits - 1)) - 1, np.int8 if bits <= 8 else np.int16
        else:
            low, high, container = 0, (1 << bits) - 1 - narrow, np.uint8 if bits <= 8 else np.uint16
        info = np.iinfo(container)
        zero = zero_value.astype(np.int64)
        if zero.size and (zero.min() < info.min or zero.max() > info.max):
            raise refuse(node, f"QONNX Quant zero point outside the {np.dtype(container).name} range")
        tag = node.name or f"quant{node.index}"
        names = {k: f"{tag}.lowered_{k}" for k in ("scale", "zero", "min", "max", "q", "clip")}
        initializers[names["scale"]] = scale
        initializers[names["zero"]] = zero.astype(container) if scale.size == 1 or zero.size > 1 else np.full(scale.shape, int(zero.reshape(-1)[0]), dtype=container)
        attrs = {"axis": axis} if scale.size > 1 else {}
        nodes.append(Node(index=node.index, name=f"{tag}/QuantizeLinear", op="QuantizeLinear", domain="", inputs=(node.inputs[0], names["scale"], names["zero"]), outputs=(names["q"],), attrs=dict(attrs), metadata=node.metadata))
        tensor = names["q"]
        if (low, high) != (int(info.min), int(info.max)):
            initializers[names["min"]] = np.array(low, dtype=container)
            initializers[names["max"]] = np.array(high, dtype=container)
            nodes.append(make_node(index, f"{tag}/Clip", "Clip", [tensor, names["min"], names["max"]], [names["clip"]]))
            tensor, index = names["clip"], index + 1
        nodes.append(make_node(index, f"{tag}/DequantizeLinear", "DequantizeLinear", [tensor, names["scale"], names["zero"]], [node.outputs[0]], **attrs))
        index += 1
    return fold_graph(graph.replace(nodes=tuple(nodes), initializers=prune_initializers(initializers, nodes)))


def lower_qonnx(ir: CompilerIR) -> CompilerIR:
    """Lower QONNX Quant nodes to QuantizeLinear/Clip/DequantizeLinear (module docstring)."""
    assert ir.graph is not None
    return ir.update(graph=lower_graph(ir.graph))
