"""Pass 0, host_tail: peel the graph's trailing float ops off into host-side tail ops of the bundle.

The accelerator computes the fixed-point network up to the last layer's final DequantizeLinear.
What follows it in the ONNX graph (the paper's Sigmoid output layer, trainer ``--output-layer
sigmoid``) is a float function of the outputs, which the host applies after the accelerator has
finished: the runtime (``runtime/host_tail.py``) applies each tail op in float32, in order, to the
dequantised outputs. The bundle records the ops in ``manifest.host_tail`` and ``axtrain inspect``
shows them (docs/bundle.md "Host tail").

The mechanism is general: :data:`TAIL_OPS` names the ONNX ops that may form a tail (Sigmoid,
Softmax, LogSoftmax, ArgMax) with the attributes each may carry; each op also has an entry in
``axtrain.formats.bundle.HostTailOp``'s ``op`` values and in the runtime's implementations. Only
elementwise-or-per-sample ops belong here: the tail must not change which class the accelerator's
outputs decide, or a tail op would have to move into the network.

Pure: the pass returns a copy of the IR whose graph ends at the tail's input, with ``host_tail`` set.
"""

from __future__ import annotations

from dataclasses import replace

from axtrain.compiler.ir import CompilerIR, Graph, HostOp, Node
from axtrain.errors import OnnxError

#: ONNX ops that may form the host tail, with the attribute values each may carry (a tuple of
#: allowed values). Softmax and LogSoftmax over the class axis of the [batch, classes] output
#: (-1 or 1: the same axis there); ArgMax over it, without keepdims, first index on ties
#: (onnxruntime's and numpy's rule) and only as the last op (its output is int64 indices).
TAIL_OPS: dict[str, dict[str, tuple[object, ...]]] = {
    "Sigmoid": {},
    "Softmax": {"axis": (-1, 1)},
    "LogSoftmax": {"axis": (-1, 1)},
    "ArgMax": {"axis": (-1, 1), "keepdims": (0,), "select_last_index": (0,)},
}


def is_tail_op(node: Node) -> bool:
    """Whether ``node`` is an op that may be part of a host tail."""
    return node.domain in ("", "ai.onnx") and node.op in TAIL_OPS


def host_tail(ir: CompilerIR) -> CompilerIR:
    """Strip the trailing chain of :data:`TAIL_OPS` nodes that ends at the graph output."""
    graph = ir.graph
    assert graph is not None
    if len(graph.outputs) != 1:
        return ir  # validate refuses it with its own message
    output, dtype = graph.outputs[0]
    nodes = list(graph.nodes)
    tail: list[HostOp] = []
    while True:
        producers = [n for n in nodes if output in n.outputs]
        if len(producers) != 1 or not is_tail_op(producers[0]):
            break
        node = producers[0]
        source = node.inputs[0] if node.inputs else ""
        if len(node.inputs) != 1 or len([o for o in node.outputs if o]) != 1:
            raise OnnxError(f"{node.label}: a host tail op must have one input and one output")
        for name, value in node.attrs.items():
            if name not in TAIL_OPS[node.op]:
                raise OnnxError(f"{node.label}: attribute {name} is not supported on a host tail op")
            if value not in TAIL_OPS[node.op][name]:
                raise OnnxError(f"{node.label}: {name}={value!r} is not supported on a host tail op (only {', '.join(map(repr, TAIL_OPS[node.op][name]))})")
        if node.op == "ArgMax" and node.attrs.get("keepdims", 1) != 0:
            raise OnnxError(f"{node.label}: keepdims=1 (the default) is not supported on a host tail op (only keepdims=0)")
        if node.op == "ArgMax" and tail:
            raise OnnxError(f"{node.label}: ArgMax must be the last host tail op (its output is class indices)")
        if any(source in other.inputs for other in nodes if other is not node):
            raise OnnxError(f"{node.label}: its input '{source}' is used elsewhere too; a host tail op must be the only reader of the network's output")
        tail.insert(0, HostOp(op=node.op, node=node.name))
        nodes.remove(node)
        output = source
    if not tail:
        return ir
    # Every tail op reads the network's float output (an ArgMax's own output is int64).
    stripped: Graph = replace(graph, nodes=tuple(nodes), outputs=((output, "float" if tail[-1].op == "ArgMax" else dtype),))
    return ir.update(graph=stripped, host_tail=tuple(tail))
