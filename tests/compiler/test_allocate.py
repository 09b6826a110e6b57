"""Pass ``allocate`` (compiler/passes/allocate.py): properties over random layer chains (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from axtrain.compiler.ir import CompilerIR
from axtrain.compiler.passes.allocate import allocate
from axtrain.errors import ConfigError
from axtrain.formats.arch import Architecture
from axtrain.hwmodels.fixedpoint import FixedPointFormat as F
from axtrain.hwmodels.layers import QuantizedLayer


def chain(sizes: list[int], flatten_at: set[int]) -> tuple[tuple[QuantizedLayer, ...], tuple[tuple[int, ...], ...]]:
    """Dense layers sizes[0] -> sizes[1] -> ..., with a flatten (same size) after the layers in ``flatten_at``."""
    layers, shapes = [], [(sizes[0],)]
    for i in range(len(sizes) - 1):
        w = np.zeros((sizes[i + 1], sizes[i]), dtype=np.int64)
        layers.append(QuantizedLayer(f"d{i}", "dense", F(8, 4), F(8, 4), w, F(8, 7), np.zeros(sizes[i + 1], dtype=np.int64)))
        shapes.append((sizes[i + 1],))
        if i in flatten_at:
            layers.append(QuantizedLayer(f"f{i}", "flatten", F(8, 4), F(8, 4)))
            shapes.append((sizes[i + 1],))
    return tuple(layers), tuple(shapes)


@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(st.integers(1, 300), min_size=2, max_size=7), flatten_at=st.sets(st.integers(0, 5)), nb_words=st.integers(4, 700))
def test_layout_is_consistent_or_spilled(sizes: list[int], flatten_at: set[int], nb_words: int) -> None:
    layers, shapes = chain(sizes, flatten_at)
    arch = Architecture(neuron_buffer_bytes=2 * nb_words)
    ir = CompilerIR("m.onnx", "0" * 64, arch, layers=layers, shapes=shapes, input_format=F(8, 4))
    spills = [l.op != "flatten" and math.prod(shapes[i]) + math.prod(shapes[i + 1]) > nb_words for i, l in enumerate(layers)]
    a = allocate(ir).allocation
    assert a is not None and len(a.layers) == len(layers)
    assert [p.spilled for p in a.layers] == spills
    # Images: weighted layers back to back, in order, nothing else.
    weighted = [(p, l) for p, l in zip(a.layers, layers, strict=True) if l.has_weights]
    offsets = [p.weight_dram for p, _ in weighted]
    assert offsets == [sum(int(l.weight.size) for _, l in weighted[:i]) for i in range(len(weighted))]
    assert a.weight_words == sum(int(l.weight.size) for _, l in weighted) and a.bias_words == sum(sizes[1:])
    assert all(p.weight_dram is None and p.bias_dram is None for p, l in zip(a.layers, layers, strict=True) if not l.has_weights)
    if any(spills):
        # A spilled dense layer: its bands (and pieces of its input) inside the buffer, its input and
        # output in disjoint regions of activation DRAM.
        for i, p in enumerate(a.layers):
            if not p.spilled:
                continue
            n_in, n_out = math.prod(shapes[i]), math.prod(shapes[i + 1])
            assert p.nb_input == 0 and p.nb_output == (p.piece_words or n_in) and p.nb_output + p.band_words <= nb_words
            assert 1 <= p.band_words <= n_out and (p.piece_words == 0 or p.piece_words < n_in)
            assert p.dram_input is not None and p.dram_output is not None
            assert p.dram_input + n_in <= p.dram_output or p.dram_output + n_out <= p.dram_input
            assert max(p.dram_input + n_in, p.dram_output + n_out) <= a.activation_words
        return
    # DRAM activations: input at 0, output right after it.
    assert (a.input_dram, a.output_dram, a.activation_words) == (0, sizes[0], sizes[0] + sizes[-1])
    # Neuron buffer: inside, each layer reads what the one before wrote, input and output disjoint.
    assert a.layers[0].nb_input == a.nb_network_input == 0
    for i, (p, layer) in enumerate(zip(a.layers, layers, strict=True)):
        n_in, n_out = math.prod(shapes[i]), math.prod(shapes[i + 1])
        assert 0 <= p.nb_input and p.nb_input + n_in <= nb_words and 0 <= p.nb_output and p.nb_output + n_out <= nb_words
        if i:
            assert p.nb_input == a.layers[i - 1].nb_output
        if layer.op == "flatten":
            assert p.nb_output == p.nb_input  # flatten moves no data
        else:
            assert p.nb_input + n_in <= p.nb_output or p.nb_output + n_out <= p.nb_input
            # A chain's layout (the paper's bundles): the output at the end opposite the input.
            assert p.nb_output == (nb_words - n_out if p.nb_input == 0 else 0)
        assert not p.before and not p.after  # nothing of a chain that fits goes through DRAM


def test_input_larger_than_the_buffer_is_refused() -> None:
    # A flatten first does not spill: the input must fit the buffer.
    dense, shapes = chain([50, 3], set())
    layers = (QuantizedLayer("f", "flatten", F(8, 4), F(8, 4)), *dense)
    ir = CompilerIR("m.onnx", "0" * 64, Architecture(neuron_buffer_bytes=40), layers=layers, shapes=(shapes[0], *shapes), input_format=F(8, 4))
    with pytest.raises(ConfigError, match=r"the network input \(50 words\) does not fit the neuron buffer \(20 words\)"):
        allocate(ir)


def test_a_dense_input_larger_than_the_buffer_runs_in_pieces() -> None:
    """50 inputs, 3 outputs, 20 words (no schedule: one-word tiles and chunks): bands of one output
    above pieces of 19 inputs read from the network input's DRAM region."""
    layers, shapes = chain([50, 3], set())
    ir = CompilerIR("m.onnx", "0" * 64, Architecture(neuron_buffer_bytes=40), layers=layers, shapes=shapes, input_format=F(8, 4))
    a = allocate(ir).allocation
    assert a is not None
    (p,) = a.layers
    assert (p.spilled, p.piece_words, p.band_words, p.nb_input, p.nb_output) == (True, 19, 1, 0, 19)
    assert p.dram_input == a.input_dram == 0 and p.dram_output == a.output_dram


def _dag(width: int, reads: list[tuple[int, ...]]) -> tuple[tuple[QuantizedLayer, ...], tuple[tuple[int, ...], ...]]:
    """Maps of ``width`` words: layer ``i`` is a dense layer reading ``reads[i][0]`` or, given two
    sources, a residual add of them (-1: the network input)."""
    layers = []
    for i, sources in enumerate(reads):
        if len(sources) == 2:
            layers.append(QuantizedLayer(f"a{i}", "add", F(8, 4), F(8, 4), other_format=F(8, 4), sources=sources))
        else:
            w = np.zeros((width, width), dtype=np.int64)
            layers.append(QuantizedLayer(f"d{i}", "dense", F(8, 4), F(8, 4), w, F(8, 7), np.zeros(width, dtype=np.int64), sources=sources if sources != (i - 1,) else ()))
    return tuple(layers), tuple((width,) for _ in range(len(reads) + 1))


@st.composite
def dags(draw: st.DrawFn) -> list[tuple[int, ...]]:
    count = draw(st.integers(1, 8))
    reads: list[tuple[int, ...]] = []
    for i in range(count):
        earlier = st.integers(-1, i - 1)
        reads.append(draw(st.tuples(earlier, earlier) if draw(st.booleans()) else st.tuples(earlier)))
    return reads


@settings(max_examples=200, deadline=None)
@given(reads=dags(), width=st.integers(1, 40), slack=st.integers(1, 8))
def test_kept_maps_are_never_clobbered_in_a_dag(reads: list[tuple[int, ...]], width: int, slack: int) -> None:
    """Random DAGs of dense layers and residual adds on buffers from one map and a word to more than
    every map: the layout passes verify_ir's replay (every layer reads each input unclobbered), and a
    buffer that holds every map at once keeps every map (no STN or LDN beyond the program's own)."""
    from axtrain.compiler.ir import Graph
    from axtrain.compiler.verify_ir import verify_ir

    layers, shapes = _dag(width, reads)
    nb_words = width * slack + 1 if slack < 8 else width * (len(layers) + 1)
    graph = Graph(nodes=(), initializers={}, inputs=(), outputs=(), metadata={}, opset=13)
    ir = CompilerIR("m.onnx", "0" * 64, Architecture(neuron_buffer_bytes=2 * nb_words), graph=graph, layers=layers, shapes=shapes, input_format=F(8, 4))
    out = allocate(ir)
    verify_ir(out, "allocate")
    assert out.allocation is not None
    if slack == 8:
        assert all(not p.before and not p.spilled for p in out.allocation.layers)
    stores = [t for p in out.allocation.layers for t in p.before if t[0] == "STN"]
    assert len(stores) <= len(layers)  # a map is stored at most once
