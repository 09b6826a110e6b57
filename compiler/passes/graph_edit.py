"""Helpers the normalisation passes share: tensor producers and consumers, building a rewritten graph.

The normalisation passes (docs/importing.md) rewrite what real quantizers export into the dialect the
later passes read (docs/onnx-schema.md). Each is pure: it returns a new :class:`Graph` and never
changes the one it was given. Nodes a pass keeps keep their index (error messages name nodes as the
file numbers them); nodes a pass creates get fresh indices after the file's and a name that says
which node they came from.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from axtrain.compiler.ir import Graph, Node


def producers(graph: Graph) -> dict[str, Node]:
    """The node that produces each tensor."""
    return {name: node for node in graph.nodes for name in node.outputs if name}


def consumers(graph: Graph) -> dict[str, list[Node]]:
    """The nodes that read each tensor, in file order."""
    users: dict[str, list[Node]] = {}
    for node in graph.nodes:
        for name in node.inputs:
            if name:
                users.setdefault(name, []).append(node)
    return users


def graph_outputs(graph: Graph) -> set[str]:
    return {name for name, _ in graph.outputs}


def fresh_index(graph: Graph) -> int:
    """An index no node of ``graph`` uses."""
    return max((node.index for node in graph.nodes), default=-1) + 1


def fresh_name(graph: Graph, base: str) -> str:
    """A tensor or initializer name not used in ``graph``."""
    used = set(graph.initializers) | {n for node in graph.nodes for n in (*node.inputs, *node.outputs)}
    used |= {name for name, *_ in graph.inputs}
    name, count = base, 0
    while name in used:
        count += 1
        name = f"{base}_{count}"
    return name


def make_node(index: int, name: str, op: str, inputs: Iterable[str], outputs: Iterable[str], **attrs: object) -> Node:
    """A node created by a pass (default domain, no metadata)."""
    return Node(index=index, name=name, op=op, domain="", inputs=tuple(inputs), outputs=tuple(outputs), attrs=dict(attrs), metadata={})


def rename_input(node: Node, old: str, new: str) -> Node:
    """``node`` reading ``new`` wherever it read ``old``."""
    return Node(
        index=node.index, name=node.name, op=node.op, domain=node.domain,
        inputs=tuple(new if name == old else name for name in node.inputs),
        outputs=node.outputs, attrs=node.attrs, metadata=node.metadata,
    )


def prune_initializers(initializers: dict[str, np.ndarray], nodes: Iterable[Node]) -> dict[str, np.ndarray]:
    """The initializers some node still reads (folding leaves the originals of folded values unused)."""
    read = {name for node in nodes for name in node.inputs}
    return {name: array for name, array in initializers.items() if name in read}


def remove_dead(graph: Graph, candidates: set[str]) -> Graph:
    """Drop nodes whose op is in ``candidates`` and whose outputs nobody reads, repeatedly (the
    remains of a folded shape computation). Other unused nodes stay, for fold_qdq to name."""
    nodes = list(graph.nodes)
    outputs = graph_outputs(graph)
    while True:
        read = {name for node in nodes for name in node.inputs} | outputs
        dead = [n for n in nodes if n.op in candidates and not any(o in read for o in n.outputs if o)]
        if not dead:
            break
        gone = {n.index for n in dead}
        nodes = [n for n in nodes if n.index not in gone]
    return graph.replace(nodes=tuple(nodes), initializers=prune_initializers(graph.initializers, nodes))
