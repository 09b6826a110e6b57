"""Pass 1, validate: every node, the graph input/output and the model metadata lie inside the subset.

Local checks only (one node at a time); the structure (the chain of layers) is fold_qdq's job.
"""

from __future__ import annotations

from typing import cast

import numpy as np

from axtrain.compiler.host_tail import TAIL_OPS
from axtrain.compiler.ir import CompilerIR, Graph, Node
from axtrain.compiler.onnx_import import UNSUPPORTED_ATTRIBUTE
from axtrain.compiler.subset import (
    MIN_OPSET,
    SUPPORTED_OPS,
    WEIGHT_DTYPES,
    activation_format_any,
    initializer,
    refuse,
    scale_value,
    zero_point_dtype,
)
from axtrain.errors import OnnxError
from axtrain.formats.onnx_schema import KEY_SCHEMA, SCHEMA_VERSION
from axtrain.limits import element_count

# Attributes each op may carry, with the only values we support (None: any value, checked below).
_ALLOWED_ATTRS: dict[str, dict[str, object]] = {
    "QuantizeLinear": {"axis": None, "saturate": 1, "block_size": 0, "output_dtype": None},
    "DequantizeLinear": {"axis": None, "block_size": 0, "output_dtype": None},
    "Gemm": {"transA": 0, "transB": None, "alpha": 1.0, "beta": 1.0},
    "MatMul": {},
    "Add": {},
    "Relu": {},
    "Clip": {},
    "Flatten": {"axis": 1},
    "Conv": {"group": None, "dilations": None, "strides": None, "pads": None, "kernel_shape": None, "auto_pad": None},
    "AveragePool": {"kernel_shape": None, "strides": None, "pads": None, "dilations": None, "ceil_mode": None, "count_include_pad": None, "auto_pad": None},
    "GlobalAveragePool": {},
    "MaxPool": {"kernel_shape": None, "strides": None, "pads": None, "dilations": None, "ceil_mode": None, "storage_order": 0, "auto_pad": None},
}


AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")  # fold_qdq.node_pads turns them into pads


def _check_attrs(node: Node) -> None:
    allowed = _ALLOWED_ATTRS[node.op]
    for name, value in node.attrs.items():
        if name not in allowed:
            raise refuse(node, f"attribute {name} is not supported")
        if value == UNSUPPORTED_ATTRIBUTE:
            raise refuse(node, f"attribute {name} holds a tensor or graph, which is not supported")
        required = allowed[name]
        if required is not None and value != required:
            raise refuse(node, f"attribute {name}={value!r} is not supported (only {required!r})")
    if node.op == "Gemm" and node.attrs.get("transB", 0) not in (0, 1):
        raise refuse(node, f"transB={node.attrs['transB']!r} is not 0 or 1")
    if node.op in ("Conv", "MaxPool", "AveragePool"):
        dilations = node.attrs.get("dilations", [1, 1])
        if node.op == "Conv" and (len(dilations) != 2 or min(dilations) < 1):
            raise refuse(node, f"dilations {dilations} are not two positive values")
        if node.op != "Conv" and any(d != 1 for d in dilations):
            raise refuse(node, f"dilations {dilations} are not supported on a pool (only 1)")
        strides = node.attrs.get("strides", [1, 1])
        if len(strides) != 2 or min(strides) < 1:
            raise refuse(node, f"strides {strides} are not two positive values")
        pads = node.attrs.get("pads", [0, 0, 0, 0])
        if len(pads) != 4 or min(pads) < 0:
            raise refuse(node, f"pads {pads} are not four values >= 0 (top, left, bottom, right)")
        auto_pad = node.attrs.get("auto_pad", "NOTSET")
        if auto_pad not in AUTO_PADS:
            raise refuse(node, f"auto_pad={auto_pad!r} is not one of {', '.join(AUTO_PADS)}")
        if auto_pad != "NOTSET" and any(pads):
            raise refuse(node, f"pads {pads} given with auto_pad={auto_pad!r} (ONNX: one or the other)")
        if auto_pad.startswith("SAME") and any(d != 1 for d in dilations):
            raise refuse(node, f"dilations {dilations} with auto_pad={auto_pad!r} are not supported (nor by onnxruntime)")
        kernel = node.attrs.get("kernel_shape")
        if kernel is not None and len(kernel) != 2:
            raise refuse(node, f"kernel_shape {kernel} is not 2-D")
    if node.op == "Conv" and (not isinstance(node.attrs.get("group", 1), int) or node.attrs.get("group", 1) < 1):
        raise refuse(node, f"group={node.attrs['group']!r} is not a positive integer")
    if node.op in ("MaxPool", "AveragePool"):
        for flag in ("ceil_mode", "count_include_pad"):
            if node.attrs.get(flag, 0) not in (0, 1):
                raise refuse(node, f"attribute {flag}={node.attrs[flag]!r} is not 0 or 1")
        kernel = node.attrs.get("kernel_shape")
        if kernel is None:
            raise refuse(node, "kernel_shape is missing")
        pads = node.attrs.get("pads", [0, 0, 0, 0])
        if max(pads[0], pads[2]) >= kernel[0] or max(pads[1], pads[3]) >= kernel[1]:
            raise refuse(node, f"pads {pads} are not smaller than the window {kernel}")
        if len([o for o in node.outputs if o]) != 1:
            raise refuse(node, "the Indices output is not supported")


def _check_qdq(graph: Graph, node: Node) -> None:
    source = node.inputs[0] if node.inputs else ""
    if node.op == "DequantizeLinear" and source in graph.initializers:
        # Weights and biases (ISA 2): any positive float32 scales, per tensor or per output axis;
        # fold_qdq checks the axis and that per-axis zero points are 0.
        scale = initializer(graph, node, 1, "scale")
        if scale.dtype != np.float32 or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise refuse(node, "scale must be positive finite float32 values")
        zero = graph.initializers.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        if zero is not None and zero.size > 1:
            if np.any(zero != 0):
                raise refuse(node, "per-axis zero points must be 0 (symmetric weights)")
            zero_dtype: str | None = str(zero.dtype)
        else:
            zero_dtype = zero_point_dtype(graph, node)
    else:
        scale_value(graph, node)  # activations: one positive scale, a power of two or not
        if node.op == "QuantizeLinear" or source not in graph.initializers:
            activation_format_any(graph, node)  # any zero point of an 8/16-bit type (ISA 2)
            return
        zero_dtype = zero_point_dtype(graph, node)
    if source in graph.initializers:
        dtype = str(graph.initializers[source].dtype)
        if dtype not in (*WEIGHT_DTYPES, "int32"):
            raise refuse(node, f"dequantises a {dtype} initializer: weights must be int8/int16 and biases int32")
        if zero_dtype is not None and zero_dtype != dtype:
            raise refuse(node, f"zero point type {zero_dtype} differs from the data type {dtype}")
    elif zero_dtype is not None and zero_dtype not in ("int8", "int16"):
        raise refuse(node, f"activation type {zero_dtype} is not supported (int8 or int16)")


def _check_io(graph: Graph) -> None:
    if len(graph.inputs) != 1:
        raise OnnxError(f"the graph has {len(graph.inputs)} inputs, expected exactly one")
    name, dtype, dims = graph.inputs[0]
    if dtype != "float":
        raise OnnxError(f"input '{name}' is {dtype}, expected float32")
    if len(dims) not in (2, 4):
        raise OnnxError(f"input '{name}' has rank {len(dims)}, expected [batch, features] or [batch, channels, height, width]")
    for axis, dim in enumerate(dims[1:], start=1):
        if not isinstance(dim, int) or dim <= 0:
            raise OnnxError(f"input '{name}': dimension {axis} is dynamic ({dim!r}); only the batch dimension may be")
    element_count(cast(tuple[int, ...], dims[1:]), f"input '{name}' (per sample)", OnnxError)  # before golden inputs are drawn
    if len(graph.outputs) != 1:
        raise OnnxError(f"the graph has {len(graph.outputs)} outputs, expected exactly one")
    out_name, out_dtype = graph.outputs[0]
    if out_dtype != "float":
        raise OnnxError(f"output '{out_name}' is {out_dtype}, expected float32")


def _is_bias_input(node: Node, name: str) -> bool:
    """Is ``name`` the bias input of ``node`` (Gemm/Conv input C/B, or an Add after a MatMul)?"""
    if node.op in ("Gemm", "Conv"):
        return len(node.inputs) > 2 and node.inputs[2] == name and node.inputs[1] != name
    return node.op == "Add"


def validate(ir: CompilerIR) -> CompilerIR:
    """Refuse anything outside the supported subset (one line naming the node and the reason)."""
    graph = ir.graph
    assert graph is not None
    schema = graph.metadata.get(KEY_SCHEMA)
    if schema is not None and schema != SCHEMA_VERSION:
        raise OnnxError(f"model metadata {KEY_SCHEMA}={schema!r}: unknown AxTrain ONNX schema version (this compiler reads {SCHEMA_VERSION})")
    if graph.opset < MIN_OPSET:
        raise OnnxError(f"the model imports opset {graph.opset}; opset {MIN_OPSET} or newer is required")
    _check_io(graph)
    for node in graph.nodes:
        if node.domain not in ("", "ai.onnx"):
            raise refuse(node, f"operator domain {node.domain!r} is not supported (QONNX Quant is read natively; other custom ops are not)")
        if node.op in TAIL_OPS:
            # host_tail (the pass before) took every tail op that ends the graph; this one does not.
            raise refuse(node, f"operator {node.op} is not supported inside the network, only as a host tail op at the end of the graph after the last DequantizeLinear")
        if node.op == "Reshape":
            raise refuse(node, "a Reshape that is not a flatten to [batch, features] is not supported (a flatten's shape must be known from ONNX shape inference)")
        if node.op not in SUPPORTED_OPS:
            raise refuse(node, f"operator {node.op} is not supported (supported: {', '.join(SUPPORTED_OPS)})")
        _check_attrs(node)
        if node.op in ("QuantizeLinear", "DequantizeLinear"):
            _check_qdq(graph, node)
    for name, array in graph.initializers.items():
        if array.dtype.kind == "f" and array.size != 1:
            users = [n for n in graph.nodes if name in n.inputs]
            if users and all(_is_bias_input(n, name) for n in users):
                continue  # a float bias: fold_qdq quantises it at s_a * s_w (docs/importing.md)
            if users and all(n.op == "DequantizeLinear" and n.inputs[0] in graph.initializers and n.inputs.index(name) == 1 for n in users):
                continue  # per-axis weight scales (ISA 2: one requant entry per output neuron)
            where = users[0].label if users else f"initializer '{name}'"
            raise OnnxError(f"{where}: float initializer '{name}' {list(array.shape)}: weights must be int8/int16 behind a DequantizeLinear")
        if array.dtype == np.dtype("O"):
            raise OnnxError(f"initializer '{name}' has an unsupported data type")
    return ir
