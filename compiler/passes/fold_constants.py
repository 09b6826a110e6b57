"""Normalisation pass fold_constants: evaluate every node whose inputs are all constants.

Real exporters compute weights, scales and zero points inside the graph: ``Constant`` nodes, float
weights behind a ``QuantizeLinear`` (Brevitas, QONNX after QuantToQCDQ, torch fake-quant), a
narrow-range integer ``Clip`` before the weight's DequantizeLinear (Brevitas' default weight
quantizer), ``Transpose`` of a bias-less Linear's weight, ``Cast``, ``Identity``,
``ConstantOfShape``. This pass replaces each such node by an initializer holding its value,
computed in numpy exactly as onnxruntime computes it:

- ``QuantizeLinear``: ``saturate(round_half_even(x / scale) + zero_point)`` with the division in
  float32 (onnxruntime's kernel), per tensor or per axis; the output type is the zero point's (or
  ``output_dtype``, or uint8).
- ``Cast`` is folded only where it is exact (integral floats to integers in range, integers to
  float32 below 2**24, widening); anything else is left for validate to refuse by name.
- ``Transpose`` of a ``DequantizeLinear`` of an integer initializer with a per-tensor scale becomes a
  DequantizeLinear of the transposed integers (the weights stay integers the compiler can read).

A ``DequantizeLinear`` of an integer initializer is kept: it is how fold_qdq reads weights and biases.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from axtrain.compiler.ir import CompilerIR, Graph, Node
from axtrain.compiler.onnx_import import UNSUPPORTED_ATTRIBUTE
from axtrain.compiler.passes.graph_edit import producers, prune_initializers, remove_dead
from axtrain.errors import OnnxError
from axtrain.limits import MAX_TENSOR_ELEMENTS

# ONNX TensorProto element types -> numpy (the ones a quantized graph's constants use).
ONNX_DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.float32), 2: np.dtype(np.uint8), 3: np.dtype(np.int8), 4: np.dtype(np.uint16),
    5: np.dtype(np.int16), 6: np.dtype(np.int32), 7: np.dtype(np.int64), 9: np.dtype(np.bool_),
    11: np.dtype(np.float64), 12: np.dtype(np.uint32), 13: np.dtype(np.uint64),
}
_INT_KINDS = "iub"


def _constant(node: Node) -> np.ndarray | None:
    attrs = node.attrs
    if "value" in attrs and isinstance(attrs["value"], np.ndarray):
        return attrs["value"]
    if "value_float" in attrs:
        return np.array(attrs["value_float"], dtype=np.float32)
    if "value_floats" in attrs:
        return np.array(attrs["value_floats"], dtype=np.float32)
    if "value_int" in attrs:
        return np.array(attrs["value_int"], dtype=np.int64)
    if "value_ints" in attrs:
        return np.array(attrs["value_ints"], dtype=np.int64)
    return None  # sparse or string constants: left for validate to refuse


def quantize_linear(x: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int = 1, output_dtype: int = 0) -> np.ndarray | None:
    """onnxruntime's QuantizeLinear of a float tensor: ``x / scale`` in float32, round half to even,
    add the zero point, saturate to the output type. None where the output type is not an integer
    type we read (float8 and 4-bit types are left unfolded)."""
    if zero is not None:
        dtype = zero.dtype
    elif output_dtype:
        if output_dtype not in ONNX_DTYPES:
            return None
        dtype = ONNX_DTYPES[output_dtype]
    else:
        dtype = np.dtype(np.uint8)
    if dtype.kind not in "iu" or dtype.itemsize > 2 and dtype != np.int32:
        return None
    x32 = x.astype(np.float32)
    s = scale.astype(np.float32)
    z = zero.astype(np.float64) if zero is not None else np.zeros(s.shape)
    if s.size != 1:
        if s.ndim != 1 or x32.ndim == 0:
            return None
        axis = axis % x32.ndim
        shape = [1] * x32.ndim
        shape[axis] = s.size
        s, z = s.reshape(shape), z.reshape(shape)
    else:
        s, z = s.reshape(()), z.reshape(())
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = np.rint(x32 / s).astype(np.float64) + z
    if not np.all(np.isfinite(q)):
        return None
    info = np.iinfo(dtype)
    result: np.ndarray = np.clip(q, info.min, info.max).astype(dtype)
    return result


def _cast(x: np.ndarray, to: int) -> np.ndarray | None:
    if to not in ONNX_DTYPES:
        return None
    target = ONNX_DTYPES[to]
    if target.kind in "iu":
        if x.dtype.kind == "f" and not np.all(np.floor(x) == x):
            return None
        info = np.iinfo(target)
        if x.size and (np.min(x) < info.min or np.max(x) > info.max):
            return None
    if target == np.float32 and x.dtype.kind in _INT_KINDS and x.size and np.max(np.abs(x.astype(np.int64))) >= 1 << 24:
        return None
    if target == np.float32 and x.dtype == np.float64 and not np.all(x.astype(np.float32).astype(np.float64) == x):
        return None
    return x.astype(target)


def _attr_axes(node: Node, inputs: list[np.ndarray | None]) -> list[int] | None:
    if len(inputs) > 1 and inputs[1] is not None:
        return [int(a) for a in inputs[1].reshape(-1)]
    axes = node.attrs.get("axes")
    return None if axes is None else [int(a) for a in axes]


def _evaluate(node: Node, args: list[np.ndarray | None]) -> np.ndarray | None:
    """The value of ``node`` given constant inputs (None for an absent optional input), or None where
    this pass does not fold it."""
    op, attrs = node.op, node.attrs
    x = args[0] if args else None
    if op == "Constant":
        return _constant(node)
    if x is None:
        return None
    if op == "Identity":
        return x
    if op == "Cast":
        return _cast(x, int(attrs.get("to", 0)))
    if op == "Transpose":
        perm = attrs.get("perm")
        return np.transpose(x, perm if perm is None else [int(p) for p in perm])
    if op == "QuantizeLinear":
        if x.dtype.kind != "f" or args[1] is None or attrs.get("block_size", 0) or attrs.get("saturate", 1) != 1:
            return None
        zero = args[2] if len(args) > 2 else None
        return quantize_linear(x, args[1], zero, int(attrs.get("axis", 1)), int(attrs.get("output_dtype", 0)))
    if op == "Clip":
        low = args[1] if len(args) > 1 else None
        high = args[2] if len(args) > 2 else None
        if any(b is not None and (b.size != 1 or b.dtype != x.dtype) for b in (low, high)):
            return None
        result = x
        if low is not None:
            result = np.maximum(result, low.reshape(()))
        if high is not None:
            result = np.minimum(result, high.reshape(()))
        return result.astype(x.dtype)
    if op == "ConstantOfShape":
        shape = [int(d) for d in x.reshape(-1)]
        if any(d < 0 for d in shape) or int(np.prod(shape, dtype=np.int64)) > MAX_TENSOR_ELEMENTS:
            return None
        value = attrs.get("value")
        fill = value.reshape(-1)[0] if isinstance(value, np.ndarray) and value.size == 1 else np.float32(0)
        return np.full(shape, fill, dtype=fill.dtype)
    if op == "Reshape":
        if len(args) < 2 or args[1] is None or attrs.get("allowzero", 0):
            return None
        shape = [int(d) for d in args[1].reshape(-1)]
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
        try:
            return x.reshape(shape)
        except ValueError:
            return None
    if op == "Unsqueeze":
        axes = _attr_axes(node, args)
        return None if axes is None else np.expand_dims(x, tuple(a % (x.ndim + len(axes)) for a in axes))
    if op == "Squeeze":
        axes = _attr_axes(node, args)
        return np.squeeze(x) if axes is None else np.squeeze(x, tuple(a % x.ndim for a in axes))
    if op == "Concat":
        if any(a is None for a in args):
            return None
        return np.concatenate([a for a in args if a is not None], axis=int(attrs.get("axis", 0)))
    if op == "Gather":
        if len(args) < 2 or args[1] is None:
            return None
        return np.take(x, args[1].astype(np.int64), axis=int(attrs.get("axis", 0)))
    if op == "Shape":
        return np.array(x.shape, dtype=np.int64)
    return None


FOLDABLE = ("Constant", "Identity", "Cast", "Transpose", "QuantizeLinear", "Clip", "ConstantOfShape", "Reshape", "Unsqueeze", "Squeeze", "Concat", "Gather", "Shape")


def _transpose_dq(graph: Graph, node: Node, made: dict[str, np.ndarray], producer: dict[str, Node]) -> tuple[Node, str, np.ndarray] | None:
    """``Transpose(DequantizeLinear(w_int))`` with a per-tensor scale -> the DQ node rewritten to read
    the transposed integers (returned with the new initializer's name and value)."""
    dq = producer.get(node.inputs[0])
    if dq is None or dq.op != "DequantizeLinear" or dq.inputs[0] not in made:
        return None
    if any(name and name in made and made[name].size != 1 for name in dq.inputs[1:]):
        return None  # per-axis: the axis would move with the transpose; not worth the risk
    w = made[dq.inputs[0]]
    perm = node.attrs.get("perm")
    name = f"{dq.inputs[0]}.transposed_by.{node.name or node.index}"
    value = np.ascontiguousarray(np.transpose(w, perm if perm is None else [int(p) for p in perm]))
    rewritten = Node(index=node.index, name=node.name or dq.name, op="DequantizeLinear", domain="", inputs=(name, *dq.inputs[1:]), outputs=node.outputs, attrs=dict(dq.attrs), metadata=dq.metadata)
    return rewritten, name, value


def _is_marker(value: object) -> bool:
    return isinstance(value, str) and value == UNSUPPORTED_ATTRIBUTE


def fold_graph(graph: Graph, evaluate: Callable[[Node, list[np.ndarray | None]], np.ndarray | None] = _evaluate) -> Graph:
    """One sweep in file order (ONNX keeps nodes topologically sorted): fold each foldable node whose
    inputs are all constant into an initializer named by its output."""
    made = dict(graph.initializers)
    producer = producers(graph)
    graph_outputs = {name for name, _ in graph.outputs}
    kept: list[Node] = []
    value: np.ndarray | None
    for node in graph.nodes:
        if node.domain in ("", "ai.onnx") and node.op in FOLDABLE and len([o for o in node.outputs if o]) == 1 and node.outputs[0] not in graph_outputs:
            if node.op == "Transpose" and node.inputs and node.inputs[0] not in made:
                moved = _transpose_dq(graph, node, made, producer)
                if moved is not None:
                    rewritten, name, transposed = moved
                    made[name] = transposed
                    kept.append(rewritten)
                    continue
            if all(not name or name in made for name in node.inputs) and not _is_marker(node.attrs.get("value")):
                args = [made[name] if name else None for name in node.inputs]
                try:
                    value = evaluate(node, args)
                except (ValueError, TypeError, IndexError, np.exceptions.AxisError):
                    value = None  # malformed constants: left in place for validate to name
                if value is not None:
                    if value.size > MAX_TENSOR_ELEMENTS:
                        raise OnnxError(f"{node.label}: folds to {value.size} elements, more than the limit of {MAX_TENSOR_ELEMENTS}")
                    made[node.outputs[0]] = np.asarray(value)
                    continue
        kept.append(node)
    # A Transpose moved into a weight's DequantizeLinear leaves the original DQ unread: drop it.
    return remove_dead(graph.replace(nodes=tuple(kept), initializers=prune_initializers(made, kept)), {"DequantizeLinear"})


def fold_constants(ir: CompilerIR) -> CompilerIR:
    """Replace every all-constant node by its value (see the module docstring)."""
    assert ir.graph is not None
    return ir.update(graph=fold_graph(ir.graph))

