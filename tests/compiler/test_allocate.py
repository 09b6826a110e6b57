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
def test_layout_is_consistent_or_refused(sizes: list[int], flatten_at: set[int], nb_words: int) -> None:
    layers, shapes = chain(sizes, flatten_at)
    arch = Architecture(neuron_buffer_bytes=2 * nb_words)
    ir = CompilerIR("m.onnx", "0" * 64, arch, layers=layers, shapes=shapes, input_format=F(8, 4))
    fits = sizes[0] <= nb_words and all(math.prod(shapes[i]) + math.prod(shapes[i + 1]) <= nb_words for i, l in enumerate(layers) if l.op != "flatten")
    if not fits:
        with pytest.raises(ConfigError, match="neuron buffer"):
            allocate(ir)
        return
    a = allocate(ir).allocation
    assert a is not None and len(a.layers) == len(layers)
    # Images: weighted layers back to back, in order, nothing else.
    weighted = [(p, l) for p, l in zip(a.layers, layers, strict=True) if l.has_weights]
    offsets = [p.weight_dram for p, _ in weighted]
    assert offsets == [sum(int(l.weight.size) for _, l in weighted[:i]) for i in range(len(weighted))]
    assert a.weight_words == sum(int(l.weight.size) for _, l in weighted) and a.bias_words == sum(sizes[1:])
    assert all(p.weight_dram is None and p.bias_dram is None for p, l in zip(a.layers, layers, strict=True) if not l.has_weights)
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
    layers, shapes = chain([50, 3], set())
    ir = CompilerIR("m.onnx", "0" * 64, Architecture(neuron_buffer_bytes=40), layers=layers, shapes=shapes, input_format=F(8, 4))
    with pytest.raises(ConfigError, match=r"the network input \(50 words\) does not fit the neuron buffer \(20 words\)"):
        allocate(ir)
