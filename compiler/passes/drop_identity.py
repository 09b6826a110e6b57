"""Normalisation pass drop_identity: remove ``Identity`` nodes on activations (the constant ones are
fold_constants'). Readers of an Identity's output read its input instead; an Identity that produces
the graph output hands the graph output's name to the tensor it copies."""

from __future__ import annotations

from axtrain.compiler.ir import CompilerIR, Graph, Node
from axtrain.compiler.passes.graph_edit import producers, rename_input


def drop_identities(graph: Graph) -> Graph:
    """``graph`` without its Identity nodes (pure)."""
    nodes: list[Node] = list(graph.nodes)
    outputs = list(graph.outputs)
    input_names = {name for name, *_ in graph.inputs}
    for identity in [n for n in graph.nodes if n.op == "Identity" and n.domain in ("", "ai.onnx")]:
        if len(identity.inputs) != 1 or len(identity.outputs) != 1:
            continue  # malformed: validate names it
        source, target = identity.inputs[0], identity.outputs[0]
        is_output = any(name == target for name, _ in outputs)
        if is_output:
            if source in input_names or source in graph.initializers or source in {name for name, _ in outputs}:
                continue  # input -> Identity -> output: nothing to compile; validate refuses it by name
            # The producer of ``source`` now writes the graph output's name directly.
            producer = producers(graph.replace(nodes=tuple(nodes))).get(source)
            if producer is None:
                continue
            nodes = [
                Node(index=n.index, name=n.name, op=n.op, domain=n.domain, inputs=n.inputs,
                     outputs=tuple(target if o == source else o for o in n.outputs), attrs=n.attrs, metadata=n.metadata)
                if n.index == producer.index else rename_input(n, source, target)
                for n in nodes if n.index != identity.index
            ]
        else:
            nodes = [rename_input(n, target, source) for n in nodes if n.index != identity.index]
    return graph.replace(nodes=tuple(nodes))


def drop_identity(ir: CompilerIR) -> CompilerIR:
    """Remove Identity nodes (see the module docstring)."""
    assert ir.graph is not None
    return ir.update(graph=drop_identities(ir.graph))
