"""Pass ``tile_schedule`` (compiler/passes/tile_schedule.py): properties of ``schedule_layer`` over
random layer shapes and arrays (hypothesis), and the refusals of ``check_fits``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from axtrain.compiler.ir import CompilerIR
from axtrain.compiler.passes.tile_schedule import schedule_layer, tile_schedule
from axtrain.errors import ConfigError
from axtrain.formats.arch import DEFAULT_ARCH, Architecture
from axtrain.hwmodels.fixedpoint import FixedPointFormat as F
from axtrain.hwmodels.layers import QuantizedLayer


def dense(m: int, k: int) -> QuantizedLayer:
    return QuantizedLayer("d", "dense", F(8, 4), F(8, 4), np.zeros((m, k), dtype=np.int64), F(8, 7), np.zeros(m, dtype=np.int64))


def conv(oc: int, ic: int, kernel: int) -> QuantizedLayer:
    return QuantizedLayer("c", "conv", F(8, 4), F(8, 4), np.zeros((oc, ic, kernel, kernel), dtype=np.int64), F(8, 7), np.zeros(oc, dtype=np.int64))


archs = st.builds(
    Architecture,
    pe_rows=st.integers(1, 8), pe_cols=st.integers(1, 8),
    weight_buffer_bytes=st.integers(2, 512).map(lambda n: 2 * n),  # whole 16-bit words, at least two
    bias_buffer_words=st.integers(1, 64),
    pe_weight_memory_bytes=st.integers(1, 32).map(lambda n: 2 * n), pe_neuron_memory_bytes=st.integers(1, 32).map(lambda n: 2 * n),
)


def covers(total: int, piece: int) -> bool:
    """``piece`` splits ``total`` into ceil(total/piece) pieces, the last one not empty, and no
    other split into that many pieces has a smaller largest piece (balanced)."""
    pieces = -(-total // piece)
    return 1 <= piece <= total and (pieces - 1) * piece < total and piece == -(-total // pieces)


@settings(max_examples=150, deadline=None)
@given(m=st.integers(1, 300), k=st.integers(1, 400), arch=archs)
def test_dense_schedules_fit_cover_and_balance(m: int, k: int, arch: Architecture) -> None:
    s = schedule_layer(dense(m, k), (k,), (m,), arch)
    assert s.kind == "compute" and (s.m, s.k, s.positions) == (m, k, 1)
    assert 1 <= s.m_tile * s.p_tile <= arch.pe_count  # the tile fits the array
    assert s.m_tile <= arch.bias_buffer_words  # one bias (and mode) register per neuron of the tile
    assert s.k_chunk <= min(arch.pe_weight_memory_words, arch.pe_neuron_memory_words)  # a chunk fits a PE
    assert covers(m, s.m_tile) and covers(k, s.k_chunk) and covers(1, s.p_tile)
    need = {"layer": m * k, "block": s.m_tile * k, "chunk": s.m_tile * s.k_chunk}[s.weights_resident]
    assert need <= arch.weight_buffer_words  # what one LDW brings in fits the weight buffer
    if s.weights_resident == "layer":
        assert m * k <= arch.weight_buffer_words
    else:
        assert m * k > arch.weight_buffer_words  # never a smaller residency than needed
    assert s.bias_resident == ("layer" if m <= arch.bias_buffer_words else "block")


@settings(max_examples=100, deadline=None)
@given(oc=st.integers(1, 20), ic=st.integers(1, 6), kernel=st.integers(1, 4), hw=st.integers(4, 12), stride=st.integers(1, 3), arch=archs)
def test_conv_schedules_cover_every_position(oc: int, ic: int, kernel: int, hw: int, stride: int, arch: Architecture) -> None:
    out = (hw - kernel) // stride + 1
    layer = conv(oc, ic, kernel).with_changes(stride=stride)
    s = schedule_layer(layer, (ic, hw, hw), (oc, out, out), arch)
    assert s.positions == out * out and s.k == ic * kernel * kernel
    assert s.geometry == (ic, hw, hw, kernel, kernel, stride, stride, 0, 0, 0, 0, out, out)
    assert 1 <= s.m_tile * s.p_tile <= arch.pe_count
    assert covers(oc, s.m_tile) and covers(s.positions, s.p_tile) and covers(s.k, s.k_chunk)
    assert s.m_blocks * s.m_tile >= oc and s.p_tiles * s.p_tile >= s.positions and s.chunks * s.k_chunk >= s.k


def test_pool_and_flatten_use_no_pes() -> None:
    pool = QuantizedLayer("p", "maxpool", F(8, 2), F(8, 2), kernel=2, stride=2)
    assert schedule_layer(pool, (3, 4, 4), (3, 2, 2), Architecture()).kind == "pool"
    assert schedule_layer(QuantizedLayer("f", "flatten", F(8, 2), F(8, 2)), (3, 2, 2), (12,), Architecture()).kind == "flatten"


def _ir(layer: QuantizedLayer, shapes: tuple[tuple[int, ...], ...], arch: Architecture = DEFAULT_ARCH) -> CompilerIR:
    return CompilerIR("m.onnx", "0" * 64, arch, layers=(layer,), shapes=shapes, input_format=layer.input_format)


@pytest.mark.parametrize("layer, message", [
    (dense(3, 4).with_changes(weight_format=F(20, 7)), "wider than the 16-bit weight word"),
    (dense(3, 4).with_changes(input_format=F(20, 4)), "wider than the 16-bit neuron word"),
    (dense(3, 4).with_changes(input_format=F(8, 64), weight_format=F(8, 64), output_format=F(8, -64)), "shift 192 is outside"),
])
def test_what_does_not_fit_is_one_config_error_naming_the_layer(layer: QuantizedLayer, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        tile_schedule(_ir(layer, ((4,), (3,))))
    assert str(info.value).startswith("layer 0 'd'") and "\n" not in str(info.value)
