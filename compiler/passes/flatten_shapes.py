"""Normalisation pass flatten_shapes: a ``Reshape`` that flattens each sample becomes ``Flatten``.

``x.view(x.size(0), -1)`` exports as ``Shape -> Gather -> Unsqueeze -> Concat -> Reshape`` (the
TorchScript exporter) or ``Shape(start=0, end=1) -> Concat -> Reshape`` (the dynamo exporter);
``x.view(-1, n)`` as a Reshape by a constant. This pass evaluates the Reshape's shape input with the
batch dimension as a symbol (every other dimension of ``x`` comes from ONNX shape inference, run at
import) and, where the target is ``[batch, features]`` with ``features`` the product of the per-sample
dimensions, replaces the Reshape by ``Flatten(axis=1)`` and drops the shape computation that fed it.
A Reshape that is anything else is left for validate to refuse by name.
"""

from __future__ import annotations

import math

import numpy as np

from axtrain.compiler.ir import CompilerIR, Graph, Node
from axtrain.compiler.passes.fold_constants import _evaluate
from axtrain.compiler.passes.graph_edit import producers, remove_dead

SHAPE_OPS = {"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Constant", "Slice", "Identity"}
BATCH = -987_654_321  # stands for the batch dimension inside a shape computation


def _slice(x: np.ndarray, args: list[np.ndarray | None]) -> np.ndarray | None:
    if x.ndim != 1 or len(args) < 3 or args[1] is None or args[2] is None or (len(args) > 3 and args[3] is not None and list(args[3].reshape(-1)) != [0]):
        return None
    step = int(args[4].reshape(-1)[0]) if len(args) > 4 and args[4] is not None else 1
    return x[int(args[1].reshape(-1)[0]):int(args[2].reshape(-1)[0]):step]


def _shape_value(graph: Graph, name: str, producer: dict[str, Node], depth: int = 0) -> np.ndarray | None:
    """The int64 value of a shape tensor, the batch dimension as :data:`BATCH`; None if unknown."""
    if name in graph.initializers:
        return graph.initializers[name]
    node = producer.get(name)
    if node is None or node.op not in SHAPE_OPS or depth > 32:
        return None
    if node.op == "Shape":
        dims = graph.value_shapes.get(node.inputs[0])
        if dims is None or not dims:
            return None
        values = [BATCH if axis == 0 and not isinstance(d, int) else d for axis, d in enumerate(dims)]
        if not all(isinstance(v, int) for v in values):
            return None
        shape = np.array(values, dtype=np.int64)
        start, end = node.attrs.get("start", 0), node.attrs.get("end", len(values))
        return shape[int(start):int(end)]
    args = [_shape_value(graph, n, producer, depth + 1) if n else None for n in node.inputs]
    if any(a is None for a, n in zip(args, node.inputs, strict=True) if n):
        return None
    if node.op == "Slice":
        return _slice(args[0], args) if args[0] is not None else None
    value = _evaluate(node, args)
    return None if value is None else np.asarray(value)


def _flattens(target: np.ndarray, dims: tuple[int | str | None, ...]) -> bool:
    """Is a Reshape of a tensor with ``dims`` to ``target`` a flatten to [batch, features]?"""
    if target.ndim != 1 or target.size != 2 or len(dims) < 2 or not all(isinstance(d, int) for d in dims[1:]):
        return False
    features = math.prod(d for d in dims[1:] if isinstance(d, int))
    batch, rest = int(target[0]), int(target[1])
    batch_ok = batch in (BATCH, 0) or (isinstance(dims[0], int) and batch == dims[0]) or (batch == -1 and rest == features)
    return batch_ok and rest in (-1, features) and not (batch == -1 and rest == -1)


def flatten_reshapes(graph: Graph) -> Graph:
    """``graph`` with its flattening Reshapes as Flatten nodes (pure)."""
    producer = producers(graph)
    nodes: list[Node] = []
    changed = False
    for node in graph.nodes:
        if node.op == "Reshape" and node.domain in ("", "ai.onnx") and len(node.inputs) == 2:
            dims = graph.value_shapes.get(node.inputs[0])
            target = _shape_value(graph, node.inputs[1], producer)
            # allowzero=1 (the dynamo exporter) reads a 0 as an empty axis: only a target without 0s flattens then.
            literal_zero = bool(node.attrs.get("allowzero", 0)) and target is not None and bool(np.any(target == 0))
            if dims is not None and target is not None and not literal_zero and _flattens(target, dims):
                nodes.append(Node(index=node.index, name=node.name, op="Flatten", domain="", inputs=(node.inputs[0],), outputs=node.outputs, attrs={"axis": 1}, metadata=node.metadata))
                changed = True
                continue
        nodes.append(node)
    if not changed:
        return graph
    return remove_dead(graph.replace(nodes=tuple(nodes)), SHAPE_OPS)


def flatten_shapes(ir: CompilerIR) -> CompilerIR:
    """Replace flattening Reshapes by Flatten (see the module docstring)."""
    assert ir.graph is not None
    return ir.update(graph=flatten_reshapes(ir.graph))
