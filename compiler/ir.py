"""The compiler's intermediate representation: one frozen record that each pass fills in further.

Stages (each pass returns a copy with one more part set):

    import       graph          raw ONNX nodes as plain Python/numpy values (no onnx objects)
    host_tail    host_tail      trailing float ops (Sigmoid) peeled off for the host to apply
    validate     (checks only)  every node lies inside the supported subset
    fold_qdq     layers         Q/DQ pairs folded into formats: QuantizedLayer records + shapes
    tile_schedule schedule      how each layer maps onto the PE array
    allocate     allocation     DRAM images, neuron buffer addresses
    emit         program        ISA instructions, memory images, the layer table
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from axtrain.formats.arch import Architecture
from axtrain.formats.isa import Instruction
from axtrain.hwmodels.fixedpoint import FixedPointFormat
from axtrain.hwmodels.layers import QuantizedLayer


@dataclass(frozen=True)
class Node:
    """One ONNX node, stripped of protobuf: attribute values are Python values."""

    index: int
    name: str
    op: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any]
    metadata: dict[str, str]

    @property
    def label(self) -> str:
        """How error messages name the node."""
        return f"node '{self.name}' ({self.op})" if self.name else f"node #{self.index} ({self.op})"


@dataclass(frozen=True)
class HostOp:
    """A float op the host applies to the accelerator's dequantised outputs (compiler/host_tail.py)."""

    op: str  # ONNX op type, e.g. "Sigmoid"
    node: str  # the ONNX node it came from


@dataclass(frozen=True)
class Graph:
    """The imported ONNX graph: nodes in file order, initializers as numpy arrays."""

    nodes: tuple[Node, ...]
    initializers: dict[str, np.ndarray]
    inputs: tuple[tuple[str, str, tuple[int | str | None, ...]], ...]  # (name, dtype, dims)
    outputs: tuple[tuple[str, str], ...]  # (name, dtype)
    metadata: dict[str, str]
    opset: int
    # Per-tensor shapes from ONNX shape inference at import (dims: int, a symbolic name, or None).
    value_shapes: dict[str, tuple[int | str | None, ...]] = field(default_factory=dict)

    def replace(self, **changes: Any) -> "Graph":
        """A copy with some parts replaced (graph rewrites are pure)."""
        return replace(self, **changes)


def stores_accumulators(layer: QuantizedLayer, arch: Architecture) -> bool:
    """Whether the layer is a float graph output wider than the neuron word: its accumulators go to
    DRAM by STA (ISA 2, a 32-bit output format at the accumulator's scale) instead of through REQ."""
    return bool(layer.meta.get("float_output")) and layer.output_format.bits > arch.neuron_word_bits


@dataclass(frozen=True)
class LayerSchedule:
    """How one layer runs on the PE array (compute layers) or which unit does it (pool, flatten, add).

    A compute layer is ``m`` output neurons x ``positions`` output positions, each a dot product of
    ``k`` inputs; tiles are ``m_tile x p_tile`` PEs and the dot product runs in chunks of ``k_chunk``
    words (one PE local memory). ``weights_resident`` says what one LDW brings into the weight buffer:
    the whole layer, one m-block (all chunks), or one (m-block, chunk) block.
    """

    kind: Literal["compute", "pool", "flatten", "add"]
    m: int = 0
    k: int = 0
    positions: int = 0
    geometry: tuple[int, ...] = ()  # CONV operands: c h w kh kw sh sw pt pl pb pr oh ow (padv is emit's)
    m_tile: int = 0
    p_tile: int = 0
    k_chunk: int = 0
    weights_resident: Literal["layer", "block", "chunk", ""] = ""
    bias_resident: Literal["layer", "block", ""] = ""

    @property
    def m_blocks(self) -> int:
        return -(-self.m // self.m_tile) if self.m_tile else 0

    @property
    def p_tiles(self) -> int:
        return -(-self.positions // self.p_tile) if self.p_tile else 0

    @property
    def chunks(self) -> int:
        return -(-self.k // self.k_chunk) if self.k_chunk else 0


Transfer = tuple[str, int, int, int]  # ("LDN", nb, dram, count) or ("STN", dram, nb, count)


@dataclass(frozen=True)
class LayerPlacement:
    """Where a layer's data lives: weight/bias image offsets (words), neuron buffer addresses, and its
    weight-buffer and bias-buffer regions (``wb_base``, ``bb_base``; the mode table follows the bias
    buffer). ``wb_slots`` 2: the layer's streamed weight blocks alternate between two regions of
    ``wb_slot_words`` each (double buffering, docs/runtime.md "Weights resident").

    A *spilled* layer (its input and output maps do not fit the neuron buffer together) reads its
    input from activation DRAM at ``dram_input`` and writes its output there at ``dram_output``,
    ``band_rows`` output rows at a time: each band's input rows are loaded to ``nb_input`` and its
    output rows computed at ``nb_output`` and stored. ``before`` moves inputs before the layer runs
    (LDN of an input that lives only in DRAM, STN of one a spilled layer reads from DRAM); ``after``
    stores the output for a later layer that is not the next one (unused since maps stay in the
    buffer while they fit: a map that must leave it is stored by the ``before`` of the layer that
    needs its words). An add reads its second input at ``nb_other``. ``dram_output`` is set wherever
    the output lives in DRAM only. A spilled add runs in bands of ``band_words`` words, its addends
    read from ``dram_input`` and ``dram_other``."""

    weight_dram: int | None
    bias_dram: int | None
    nb_input: int
    nb_output: int
    wb_base: int = 0
    bb_base: int = 0
    wb_slots: int = 1
    wb_slot_words: int = 0
    spilled: bool = False
    band_rows: int = 0
    dram_input: int | None = None
    dram_output: int | None = None
    before: tuple[Transfer, ...] = ()
    after: tuple[Transfer, ...] = ()
    nb_other: int = 0
    dram_other: int | None = None
    band_words: int = 0
    piece_words: int = 0
    band_channels: int = 0


@dataclass(frozen=True)
class Allocation:
    """The memory plan of the whole program."""

    layers: tuple[LayerPlacement, ...]
    weight_words: int
    bias_words: int
    input_dram: int
    output_dram: int
    activation_words: int
    nb_network_input: int


@dataclass(frozen=True)
class Emitted:
    """The emitted program and memory images."""

    program: tuple[Instruction, ...]
    layer_ranges: tuple[tuple[int, int], ...]  # [first, end) instruction index per layer
    weight_image: np.ndarray  # int64 words
    bias_image: np.ndarray  # int64 words
    requant_image: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int64))  # DRAM.Q [entries, (M, n, z)]


@dataclass(frozen=True)
class CompilerIR:
    """Everything the compiler knows about one model; passes return updated copies."""

    source_name: str
    source_sha256: str
    arch: Architecture
    graph: Graph | None = None
    layers: tuple[QuantizedLayer, ...] | None = None
    shapes: tuple[tuple[int, ...], ...] | None = None  # per-sample shape of the input, then of each layer's output
    input_format: FixedPointFormat | None = None
    model_info: dict[str, str | None] = field(default_factory=dict)  # schema, app, method, seed
    schedule: tuple[LayerSchedule, ...] | None = None
    allocation: Allocation | None = None
    emitted: Emitted | None = None
    host_tail: tuple[HostOp, ...] = ()  # applied by the host after the last layer, in order

    def update(self, **changes: Any) -> "CompilerIR":
        """A copy with some parts replaced."""
        return replace(self, **changes)

    def sources(self, index: int) -> tuple[int, ...]:
        """The layers layer ``index`` reads (-1: the network input): a DAG in topological order."""
        assert self.layers is not None
        return self.layers[index].source_layers(index)

    def input_shape(self, index: int) -> tuple[int, ...]:
        """The per-sample shape of layer ``index``'s (first) input."""
        assert self.shapes is not None
        return self.shapes[self.sources(index)[0] + 1]

    def layer_label(self, index: int) -> str:
        """How error messages name a layer: its name and ONNX node."""
        assert self.layers is not None
        layer = self.layers[index]
        node = layer.meta.get("onnx_node")
        return f"layer {index} '{layer.name}'" + (f" (node '{node}')" if node and node != layer.name else "")
