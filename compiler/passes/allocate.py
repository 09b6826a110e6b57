"""Pass 4, allocate: lay out the DRAM images, the neuron buffer and the activation spill space.

- Weight image: each weighted layer's matrix ``[m, k]`` (row-major, ``k`` in ONNX order
  ``c*kh*kw``), layers back to back. Bias image likewise. These are what the runtime faults (weights)
  and what RTL test benches load.
- DRAM activations: the network input at word 0, the network output right after it, then two spill
  regions (ping-pong, each as large as the largest map that lives in DRAM).
- Neuron buffer: the input map of the network at word 0; each layer writes its output at the other
  end of the buffer from its input (bottom <-> top), so a layer's input and output never overlap
  and the buffer needs only ``max(input + output)`` words. Flatten moves no data.
- Activation spill: a convolution or max pool whose input and output maps do not fit the buffer
  together is *spilled*: its input lives in activation DRAM (stored there first if its producer left
  it in the buffer), and it runs in bands of output rows, each band's input rows (with the window's
  halo) loaded to word 0 and its output rows computed above them and stored to DRAM. A layer after a
  spilled one loads its input back (``stage="load"``). Bands hold as many rows as fit.
- The weight buffer is staging space reused by every layer from word 0 (tile_schedule sized it).
"""

from __future__ import annotations

import math

from axtrain.compiler.ir import Allocation, CompilerIR, LayerPlacement
from axtrain.errors import ConfigError
from axtrain.hwmodels.layers import QuantizedLayer


def band_window(layer: QuantizedLayer, in_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """``(kh, sh, pt, pb)``: the vertical window of a spillable layer (conv or max pool)."""
    kh = layer.weight.shape[2] if layer.op == "conv" and layer.weight is not None else layer.window_hw[0]
    pt, _, pb, _ = layer.pads_tlbr
    return kh, layer.stride_hw[0], pt, pb


def band_input_rows(layer: QuantizedLayer, in_shape: tuple[int, ...], oy0: int, oy1: int) -> tuple[int, int, int, int]:
    """Input rows ``[r0, r1)`` that output rows ``[oy0, oy1)`` read, and the band's own top and
    bottom padding (the rows of the window outside the map)."""
    kh, sh, pt, _ = band_window(layer, in_shape)
    h = in_shape[1]
    lo, hi = oy0 * sh - pt, (oy1 - 1) * sh - pt + kh
    r0, r1 = max(lo, 0), min(hi, h)
    return r0, r1, r0 - lo, hi - r1


def _band_rows(layer: QuantizedLayer, in_shape: tuple[int, ...], out_shape: tuple[int, ...], nb_words: int) -> int:
    """The most output rows per band whose input rows and output rows fit the buffer (0: none do)."""
    kh, sh, _, _ = band_window(layer, in_shape)
    c, h, w = in_shape
    m, oh, ow = out_shape
    best = 0
    for rows in range(1, oh + 1):
        need = c * min(h, (rows - 1) * sh + kh) * w + m * rows * ow
        if need > nb_words:
            break
        best = rows
    if best:
        best = -(-oh // -(-oh // best))  # the most even split into that many bands
    return best


def allocate(ir: CompilerIR) -> CompilerIR:
    """Assign every address; a layer that cannot run even one output row at a time is a ConfigError."""
    assert ir.layers is not None and ir.shapes is not None
    arch = ir.arch
    nb_words = arch.neuron_buffer_words
    sizes = [math.prod(s) for s in ir.shapes]
    spill = [
        layer.op in ("conv", "maxpool") and sizes[i] + sizes[i + 1] > nb_words for i, layer in enumerate(ir.layers)
    ]
    # DRAM: input, output, then two spill regions as large as the largest map kept there.
    in_dram, out_dram = 0, sizes[0]
    region_words = max([sizes[i + 1] for i, s in enumerate(spill) if s] + [sizes[i] for i, s in enumerate(spill) if s and i > 0] + [0])
    # (a spilled layer's input is the network input or a map already in DRAM, or stored there first)
    regions = (sizes[0] + sizes[-1], sizes[0] + sizes[-1] + region_words)
    if not spill[0] and sizes[0] > nb_words:
        raise ConfigError(f"the network input ({sizes[0]} words) does not fit the neuron buffer ({nb_words} words)")
    weight_offset = bias_offset = 0
    # Where the current map lives: in the buffer at `nb_at`, and/or in DRAM at `dram_at`.
    nb_at: int | None = None if spill[0] else 0
    dram_at: int | None = in_dram
    region: int | None = None  # the spill region holding the map in DRAM (None: the network input's place)
    placements = []
    for index, layer in enumerate(ir.layers):
        in_size, out_size = sizes[index], sizes[index + 1]
        stage = ""
        band_rows = 0
        dram_input: int | None = None
        dram_output: int | None = None
        if layer.op == "flatten":
            nb_in = nb_out = nb_at if nb_at is not None else 0
            dram_output = dram_at if nb_at is None else None
            if nb_at is None:
                dram_input = dram_at
        elif spill[index]:
            band_rows = _band_rows(layer, ir.shapes[index], ir.shapes[index + 1], nb_words)
            if not band_rows:
                raise ConfigError(
                    f"{ir.layer_label(index)}: even one output row with its input rows does not fit the neuron buffer "
                    f"({nb_words} words); raise neuron_buffer_bytes"
                )
            if dram_at is None:  # the producer left the map in the buffer: store it first
                region = 0 if region is None else 1 - region
                dram_at, stage = regions[region], "store"
            dram_input = dram_at
            region = 0 if region is None else 1 - region
            dram_output = regions[region]
            c, _, w = ir.shapes[index]
            kh, sh, _, _ = band_window(layer, ir.shapes[index])
            nb_in, nb_out = 0, c * min(ir.shapes[index][1], (band_rows - 1) * sh + kh) * w
            nb_at, dram_at = None, dram_output
        else:
            if in_size + out_size > nb_words:
                raise ConfigError(
                    f"{ir.layer_label(index)}: input ({in_size} words) and output ({out_size} words) do not fit the "
                    f"neuron buffer ({nb_words} words) together; raise neuron_buffer_bytes"
                )
            if nb_at is None:  # the producer spilled: load the map back
                assert dram_at is not None
                stage, dram_input, nb_in = "load", dram_at, 0
                region = None
            else:
                nb_in = nb_at
            nb_out = nb_words - out_size if nb_in == 0 else 0
            nb_at, dram_at = nb_out, None
        weight_dram = bias_dram = None
        if layer.has_weights:
            assert layer.weight is not None
            weight_dram, bias_dram = weight_offset, bias_offset
            weight_offset += int(layer.weight.size)
            bias_offset += layer.out_features
        placements.append(LayerPlacement(weight_dram, bias_dram, nb_in, nb_out, spill[index], band_rows, dram_input, dram_output, stage))  # type: ignore[arg-type]
    last = placements[-1]
    output_dram = last.dram_output if last.dram_output is not None else out_dram
    allocation = Allocation(
        layers=tuple(placements),
        weight_words=weight_offset,
        bias_words=bias_offset,
        input_dram=in_dram,
        output_dram=output_dram,
        activation_words=sizes[0] + sizes[-1] + (2 * region_words if any(spill) else 0),
        nb_network_input=0,
    )
    return ir.update(allocation=allocation)
