"""Pass 3, tile_schedule: map every compute layer onto the PE array.

A compute layer is ``m`` output neurons x ``P`` output positions (P = 1 for a dense layer), each a
dot product over ``k`` inputs. A tile puts ``m_tile x p_tile <= pe_rows * pe_cols`` of them on the
array at once (output-neuron parallelism first, then positions: FlexFlow's feature-map and neuron
parallelism); the dot product runs in chunks of ``k_chunk`` words, one PE local memory each. Tile
and chunk sizes are balanced (``ceil(n / ceil(n / max))``) so the last tile is not a sliver.
The weight buffer holds the whole layer if it fits, else one m-block, else one block per chunk.
"""

from __future__ import annotations

from typing import Literal

from axtrain.compiler.ir import CompilerIR, LayerSchedule, stores_accumulators
from axtrain.errors import ConfigError
from axtrain.formats.arch import Architecture
from axtrain.formats.isa import operand_range
from axtrain.hwmodels.layers import QuantizedLayer

# The geometry a CONV instruction can encode and the shifts a REQ can: ISA field widths.
GEOMETRY_OPERANDS = ("c", "h", "w", "kh", "kw", "sh", "sw", "pt", "pl", "pb", "pr")
SHIFT_RANGE = operand_range("REQ", "shift")


def _balanced(total: int, limit: int) -> int:
    """The most even split of ``total`` into pieces of at most ``limit``."""
    pieces = -(-total // limit)
    return -(-total // pieces)


def schedule_layer(layer: QuantizedLayer, in_shape: tuple[int, ...], out_shape: tuple[int, ...], arch: Architecture) -> LayerSchedule:
    """The schedule of one layer."""
    if layer.op in ("maxpool", "avgpool"):
        return LayerSchedule(kind="pool")
    if layer.op == "flatten":
        return LayerSchedule(kind="flatten")
    if layer.op == "add":
        return LayerSchedule(kind="add")
    assert layer.weight is not None
    # A grouped conv runs as one conv per channel group (emit.py): the schedule is one group's.
    m = layer.out_features // layer.groups
    if layer.op == "conv":
        _, _, kh, kw = layer.weight.shape
        c, h, w = in_shape
        c //= layer.groups
        oh, ow = out_shape[1], out_shape[2]
        geometry = (c, h, w, kh, kw, *layer.stride_hw, *layer.pads_tlbr, oh, ow)
    else:
        c = in_shape[0]
        geometry = (c, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1)
    k = int(layer.weight[0].size)  # one output neuron's fan-in (a group's channels)
    positions = geometry[-2] * geometry[-1]
    pes = arch.pe_count
    m_tile = _balanced(m, min(pes, arch.bias_buffer_words))
    p_tile = _balanced(positions, max(1, pes // m_tile))
    k_chunk = _balanced(k, min(arch.pe_weight_memory_words, arch.pe_neuron_memory_words))
    wb = arch.weight_buffer_words
    resident: Literal["layer", "block", "chunk"]
    if m * k <= wb:
        resident = "layer"
    elif m_tile * k <= wb:
        resident = "block"
    else:
        resident = "chunk"
        if m_tile * k_chunk > wb:
            # Even one block of a chunk overflows the weight buffer: shorten the chunk, then the tile.
            k_chunk = _balanced(k, max(1, wb // m_tile))
            if m_tile * k_chunk > wb:
                m_tile = _balanced(m, wb)
                p_tile = _balanced(positions, max(1, pes // m_tile))
    bias: Literal["layer", "block"] = "layer" if m <= arch.bias_buffer_words else "block"
    return LayerSchedule(
        kind="compute", m=m, k=k, positions=positions, geometry=geometry,
        m_tile=m_tile, p_tile=p_tile, k_chunk=k_chunk, weights_resident=resident, bias_resident=bias,
    )


def check_fits(ir: CompilerIR, index: int, layer: QuantizedLayer) -> None:
    """The layer's word widths, shift and accumulator fit the architecture (else ConfigError)."""
    arch = ir.arch
    where = ir.layer_label(index)
    for what, fmt in (("input", layer.input_format), ("output", layer.output_format)):
        if fmt.bits > arch.neuron_word_bits and not (what == "output" and stores_accumulators(layer, arch)):
            raise ConfigError(f"{where}: {what} format {fmt} is wider than the {arch.neuron_word_bits}-bit neuron word")
    if layer.weight_format is None:
        return
    assert layer.weight is not None and layer.bias is not None
    if layer.weight_format.bits > arch.weight_word_bits:
        raise ConfigError(f"{where}: weight format {layer.weight_format} is wider than the {arch.weight_word_bits}-bit weight word")
    shift = 0 if layer.requant is not None else layer.accumulator_frac - layer.output_format.frac
    if not SHIFT_RANGE[0] <= shift <= SHIFT_RANGE[1]:
        raise ConfigError(f"{where}: requantisation shift {shift} is outside ISA v2's range [{SHIFT_RANGE[0]}, {SHIFT_RANGE[1]}]")
    # Worst case |acc| with every operand at its largest magnitude (DRUM never enlarges an operand).
    k = layer.weight.reshape(layer.out_features, -1).shape[1]
    bound = k * (1 << (layer.input_format.bits - 1)) * (1 << (layer.weight_format.bits - 1)) + int(abs(layer.bias).max(initial=0))
    if bound >= 1 << (arch.accumulator_bits - 1):
        raise ConfigError(f"{where}: the accumulator may reach {bound}, beyond {arch.accumulator_bits}-bit accumulators")


def tile_schedule(ir: CompilerIR) -> CompilerIR:
    """Schedule every layer; a layer the architecture or ISA cannot hold is a ConfigError naming it."""
    assert ir.layers is not None and ir.shapes is not None
    schedules = []
    for index, layer in enumerate(ir.layers):
        check_fits(ir, index, layer)
        schedule = schedule_layer(layer, ir.input_shape(index), ir.shapes[index + 1], ir.arch)
        if schedule.kind == "compute":
            for name, value in zip(GEOMETRY_OPERANDS, schedule.geometry, strict=False):  # geometry ends with oh, ow: not CONV operands
                limit = operand_range("CONV", name)[1]
                if value > limit:
                    raise ConfigError(f"{ir.layer_label(index)}: {name}={value} exceeds ISA v2's limit of {limit}")
        schedules.append(schedule)
    return ir.update(schedule=tuple(schedules))
