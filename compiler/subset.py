"""The supported ONNX subset (docs/onnx-schema.md) and the readers the passes share.

Every refusal is an ``OnnxError`` whose one line names the node (or tensor) and the reason.
"""

from __future__ import annotations

import math

import numpy as np

from axtrain.compiler.ir import Graph, Node
from axtrain.errors import OnnxError
from axtrain.hwmodels.fixedpoint import FixedPointFormat

SUPPORTED_OPS = ("QuantizeLinear", "DequantizeLinear", "Clip", "Gemm", "MatMul", "Add", "Conv", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten")
COMPUTE_OPS = ("Gemm", "MatMul", "Conv")
MIN_OPSET = 13  # QuantizeLinear/DequantizeLinear with scalar scales and Gemm as we read them
ACTIVATION_DTYPES = {"int8": 8, "int16": 16}
WEIGHT_DTYPES = {"int8": 8, "int16": 16}
BIAS_DTYPE = "int32"


def refuse(node: Node, reason: str) -> OnnxError:
    """The one-line error for ``node``."""
    return OnnxError(f"{node.label}: {reason}")


def initializer(graph: Graph, node: Node, position: int, what: str) -> np.ndarray:
    """Input ``position`` of ``node``, which must be an initializer (a constant)."""
    if position >= len(node.inputs) or not node.inputs[position]:
        raise refuse(node, f"missing {what}")
    name = node.inputs[position]
    if name not in graph.initializers:
        raise refuse(node, f"{what} '{name}' must be a constant initializer")
    return graph.initializers[name]


def scale_value(graph: Graph, node: Node) -> float:
    """A Q/DQ node's scalar float32 scale, any positive finite value (ISA 2 requantises
    non-power-of-two scales by multipliers)."""
    scale = initializer(graph, node, 1, "scale")
    if scale.size != 1:
        raise refuse(node, f"per-channel scales ({scale.size} values) are only supported on weights")
    if scale.dtype != np.float32:
        raise refuse(node, f"scale is {scale.dtype}, expected float32")
    value = float(scale.reshape(-1)[0])
    if not math.isfinite(value) or value <= 0:
        raise refuse(node, f"scale {value!r} is not a positive finite number")
    return value


def pow2_frac(value: float) -> int | None:
    """``f`` when ``value == 2**-f`` (within the supported range), else None."""
    mantissa, exponent = math.frexp(value)
    return 1 - exponent if mantissa == 0.5 and abs(1 - exponent) <= 64 else None


def scale_frac(graph: Graph, node: Node) -> int:
    """The fractional length ``f`` of a Q/DQ node's scale, which must be a scalar ``2**-f`` (where
    only power-of-two scales are supported: an integer bias's DequantizeLinear, a residual Add's
    inputs); :func:`scale_value`'s checks first."""
    value = scale_value(graph, node)
    mantissa, exponent = math.frexp(value)
    if mantissa != 0.5:
        raise refuse(node, f"scale {value!r} is not a power of two (only power-of-two scales are supported here)")
    frac = 1 - exponent  # value = 2**(exponent - 1) = 2**-frac
    if abs(frac) > 64:
        raise refuse(node, f"scale 2**{-frac} is outside the supported range 2**-64 .. 2**64")
    return frac


def zero_point_dtype(graph: Graph, node: Node) -> str | None:
    """The dtype name of a Q/DQ node's zero point (None if absent); it must be a zero scalar."""
    if len(node.inputs) < 3 or not node.inputs[2]:
        return None
    zero = initializer(graph, node, 2, "zero point")
    if zero.size != 1:
        raise refuse(node, f"zero point has {zero.size} values: per-channel quantisation is not supported")
    if int(zero.reshape(-1)[0]) != 0:
        raise refuse(node, f"zero point is {int(zero.reshape(-1)[0])}, only 0 is supported")
    return str(zero.dtype)


def activation_format(graph: Graph, node: Node) -> FixedPointFormat:
    """The activation format a QuantizeLinear produces (or a DequantizeLinear of an activation reads)."""
    frac = scale_frac(graph, node)
    dtype = zero_point_dtype(graph, node)
    if dtype is None and node.op == "QuantizeLinear":
        output_dtype = node.attrs.get("output_dtype", 0)
        if output_dtype in (3, 5):  # TensorProto.INT8, INT16
            dtype = "int8" if output_dtype == 3 else "int16"
        else:
            raise refuse(node, "no zero point: the output would be uint8; give an int8 or int16 zero point of 0")
    if dtype not in ACTIVATION_DTYPES:
        raise refuse(node, f"activation type {dtype} is not supported (int8 or int16)")
    return FixedPointFormat(ACTIVATION_DTYPES[dtype], frac)


def activation_format_any(graph: Graph, node: Node) -> FixedPointFormat:
    """:func:`activation_format`, also for a non-power-of-two scale (ISA 2: ``scale_value``) and a
    nonzero zero point (``zero_point``: the stored integers keep it; int8/uint8/int16/uint16)."""
    value = scale_value(graph, node)
    zero = graph.initializers.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    if zero is not None and zero.size == 1 and (int(zero.reshape(-1)[0]) != 0 or zero.dtype.kind == "u"):
        bits = {"int8": 8, "uint8": 8, "int16": 16, "uint16": 16}.get(str(zero.dtype))
        if bits is None:
            raise refuse(node, f"activation type {zero.dtype} is not supported (int8, uint8, int16 or uint16)")
        frac = pow2_frac(value)
        return FixedPointFormat(bits, frac if frac is not None else 0, zero.dtype.kind == "i", None if frac is not None else value, int(zero.reshape(-1)[0]))
    if pow2_frac(value) is not None:
        return activation_format(graph, node)
    dtype = zero_point_dtype(graph, node)
    if dtype is None and node.op == "QuantizeLinear":
        dtype = {3: "int8", 5: "int16"}.get(int(node.attrs.get("output_dtype", 0) or 0))
    if dtype not in ACTIVATION_DTYPES:
        raise refuse(node, f"activation type {dtype} is not supported (int8 or int16)")
    return FixedPointFormat(ACTIVATION_DTYPES[dtype], 0, True, value)


def parse_format(node: Node, key: str) -> FixedPointFormat | None:
    """A format from the node's metadata (None if absent)."""
    text = node.metadata.get(key)
    if text is None:
        return None
    try:
        return FixedPointFormat.parse(text)
    except Exception:  # noqa: BLE001 - HardwareModelError, re-raised as the node's error
        raise refuse(node, f"metadata {key}={text!r} is not a fixed-point format like 's8.6'") from None
