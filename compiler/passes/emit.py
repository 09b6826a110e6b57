"""Pass 5, emit: the ISA program and the weight and bias memory images.

Program shape (docs/compiler.md):

    LDN input                                   prologue (not when the first layer spills)
    per layer:  [LDN input | STN input]...      (maps kept in DRAM: allocate.py)
                CONV; LDB; MODE...; [LDW layer]
                per m-block: [LDB block; MODE...] [LDW block]
                  per position tile: per chunk: [LDW chunk] DISTW DISTN MAC
                                     [RELU] REQ
                SYNC layer                       (MaxPool: POOL SYNC; Flatten: SYNC)
    STN output; END                              epilogue

A spilled layer (its maps do not fit the neuron buffer together) runs in row bands: LDB/MODE/LDW
of the layer first, then per band ``LDN`` of its input rows (one per channel), ``CONV`` with the
band's geometry (its own top/bottom padding), the m-blocks and tiles as above, and ``STN`` of its
output rows (one per channel); its SYNC names the output in activation DRAM (``space=1``). A
spilled pool (max or average) is the same bands around one POOL/AVGPOOL each; a spilled add runs
in bands of words: ``LDN`` of both addends' words, ``ADD``, ``STN`` of the sums; a spilled dense
layer loads its input vector once and runs in bands of output neurons, each band's m-blocks
followed by one ``STN`` of its outputs.

A DISTW is left out when the previous DISTW had the same operands and no LDW came between (the PE
weight memories still hold those words): consecutive position tiles of a single-chunk convolution
reuse their weights, as FlexFlow's local memories intend.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from axtrain.compiler.ir import CompilerIR, Emitted, LayerPlacement, LayerSchedule, stores_accumulators
from axtrain.compiler.passes.allocate import band_input_rows
from axtrain.errors import BundleError, ConfigError
from axtrain.formats.isa import Instruction, mode_code, operand_range
from axtrain.hwmodels.layers import QuantizedLayer, add_shifts
from axtrain.hwmodels.multipliers import MultiplierMode

MAX_LDW_ROWS = operand_range("LDW", "rows")[1]  # a taller block is split into several LDWs


def mode_runs(modes: tuple[MultiplierMode, ...]) -> list[tuple[int, int, int]]:
    """Runs ``(start, count, code)`` of equal consecutive modes."""
    runs: list[tuple[int, int, int]] = []
    for index, mode in enumerate(modes):
        code = mode_code(mode)
        if runs and runs[-1][2] == code:
            start, count, _ = runs[-1]
            runs[-1] = (start, count + 1, code)
        else:
            runs.append((index, 1, code))
    return runs


class _Emitter:
    def __init__(self) -> None:
        self.program: list[Instruction] = []
        self.last_distw: Instruction | None = None

    def add(self, op: str, **operands: int) -> None:
        instruction = Instruction.of(op, **operands)
        if op == "LDW":
            self.last_distw = None  # the weight buffer changed: local memories must be refilled
        if op == "DISTW":
            if instruction == self.last_distw:
                return
            self.last_distw = instruction
        self.program.append(instruction)

    def load_weights(self, dram: int, rows: int, cols: int, stride: int, base: int = 0) -> None:
        """LDW of a ``rows x cols`` block into WB word ``base``, split where rows exceed the operand."""
        for first in range(0, rows, MAX_LDW_ROWS):
            count = min(MAX_LDW_ROWS, rows - first)
            self.add("LDW", wb=base + first * cols, dram=dram + first * stride, rows=count, cols=cols, stride=stride)


@dataclass(frozen=True)
class Band:
    """Output rows ``[oy0, oy1)`` of a layer computed at once: the CONV operands of the band's input
    map at ``nb_in`` (a spilled layer's band) or of the whole map, and where its outputs go."""

    oy0: int
    oy1: int
    geometry: dict[str, int]  # CONV operands (c h w kh kw sh sw pt pl pb pr padv oh ow)
    nb_in: int
    nb_out: int
    loads: tuple[tuple[int, int, int], ...] = ()  # (nb, dram, count) LDNs of the band's input rows
    stores: tuple[tuple[int, int, int], ...] = ()  # (dram, nb, count) STNs of the band's output rows
    neurons: tuple[int, int] | None = None  # a spilled dense layer's band: output neurons [n0, n1) (None: all)

    @property
    def positions(self) -> int:
        return self.geometry["oh"] * self.geometry["ow"]


def _geometry(s: LayerSchedule) -> dict[str, int]:
    c, h, w, kh, kw, sh, sw, pt, pl, pb, pr, oh, ow = s.geometry
    return {"c": c, "h": h, "w": w, "kh": kh, "kw": kw, "sh": sh, "sw": sw, "pt": pt, "pl": pl, "pb": pb, "pr": pr, "padv": 0, "oh": oh, "ow": ow}


def bands(layer: QuantizedLayer, geometry: dict[str, int], channels_out: int, place: LayerPlacement, c0: int = 0, m0: int = 0, full: tuple[int, int] = (0, 0)) -> list[Band]:
    """The bands of a layer (or of one channel group: input channels from ``c0``, output channels
    from ``m0``, ``full`` = the layer's input and output channel counts): one over the whole map,
    or a spilled layer's row bands (docs/compiler.md)."""
    oh, ow = geometry["oh"], geometry["ow"]
    c, h, w = geometry["c"], geometry["h"], geometry["w"]
    if not place.spilled:
        return [Band(0, oh, geometry, place.nb_input + c0 * h * w, place.nb_output + m0 * oh * ow)]
    assert place.dram_input is not None and place.dram_output is not None
    out: list[Band] = []
    for oy0 in range(0, oh, place.band_rows):
        oy1 = min(oy0 + place.band_rows, oh)
        r0, r1, pt, pb = band_input_rows(layer, h, oy0, oy1)
        rows = r1 - r0
        base_in = place.dram_input + c0 * h * w
        if rows == h:  # the whole map: one load
            loads: tuple[tuple[int, int, int], ...] = ((place.nb_input, base_in, c * h * w),)
        else:
            loads = tuple((place.nb_input + ci * rows * w, base_in + ci * h * w + r0 * w, rows * w) for ci in range(c))
        band_positions = (oy1 - oy0) * ow
        base_out = place.dram_output + m0 * oh * ow
        if oy1 - oy0 == oh:
            stores: tuple[tuple[int, int, int], ...] = ((base_out, place.nb_output, channels_out * oh * ow),)
        else:
            stores = tuple((base_out + co * oh * ow + oy0 * ow, place.nb_output + co * band_positions, band_positions) for co in range(channels_out))
        band_geometry = {**geometry, "h": rows, "pt": pt, "pb": pb, "oh": oy1 - oy0}
        out.append(Band(oy0, oy1, band_geometry, place.nb_input, place.nb_output, loads, stores))
    return out


def dense_bands(geometry: dict[str, int], neurons: int, place: LayerPlacement) -> list[Band]:
    """A spilled dense layer's bands of ``place.band_words`` output neurons: the input vector loaded
    once to ``nb_input`` (or, with ``piece_words``, piece by piece in every band: ``_emit_group``), each
    band's outputs computed at ``nb_output`` and stored to activation DRAM."""
    assert place.dram_input is not None and place.dram_output is not None
    out: list[Band] = []
    for n0 in range(0, neurons, place.band_words):
        n1 = min(n0 + place.band_words, neurons)
        loads = ((place.nb_input, place.dram_input, geometry["c"]),) if n0 == 0 and not place.piece_words else ()
        stores = ((place.dram_output + n0, place.nb_output, n1 - n0),)
        out.append(Band(0, 1, geometry, place.nb_input, place.nb_output, loads, stores, (n0, n1)))
    return out


def _band_io(em: "_Emitter", band: Band, before: bool) -> None:
    for nb, dram, count in band.loads if before else ():
        em.add("LDN", nb=nb, dram=dram, count=count)
    for dram, nb, count in band.stores if not before else ():
        em.add("STN", dram=dram, nb=nb, count=count)


def _emit_compute(
    em: _Emitter, index: int, layer: QuantizedLayer, s: LayerSchedule, place: LayerPlacement, acc_dram: int | None = None, rq_dram: int | None = None
) -> None:
    """A dense or conv layer; a grouped conv is one conv per channel group, each over its slice of
    the input channels, with its rows of the weight and bias images (no ISA change).

    ISA 2: ``acc_dram`` (a float graph output): its accumulators go to DRAM.A from that word by STA
    instead of REQ into the neuron buffer. ``rq_dram`` (a requantising layer): its requant entries
    start at that DRAM.Q entry, loaded beside the biases (LDQ, same table addresses), and every REQ
    scales by them (rq=1)."""
    assert place.weight_dram is not None and place.bias_dram is not None and layer.weight_format is not None
    all_modes = layer.neuron_modes()
    geometry = _geometry(s)
    for group in range(layer.groups):
        group_place = replace(place, weight_dram=place.weight_dram + group * s.m * s.k, bias_dram=place.bias_dram + group * s.m)
        if layer.op == "dense" and place.spilled:
            layer_bands = dense_bands(geometry, s.m, place)
        else:
            layer_bands = bands(layer, geometry, s.m, group_place, c0=group * geometry["c"], m0=group * s.m)
        if acc_dram is not None and place.spilled:
            raise BundleError("a float graph output whose maps are spilled to DRAM is not supported")
        group_acc = None if acc_dram is None else acc_dram + group * s.m * s.positions
        group_rq = None if rq_dram is None else rq_dram + group * s.m
        _emit_group(em, layer, s, group_place, all_modes[group * s.m : (group + 1) * s.m], layer_bands, group_acc, group_rq)


def _emit_group(
    em: _Emitter, layer: QuantizedLayer, s: LayerSchedule, place: LayerPlacement, modes: tuple[MultiplierMode, ...], layer_bands: list[Band],
    acc_dram: int | None = None, rq_dram: int | None = None,
) -> None:
    assert place.weight_dram is not None and place.bias_dram is not None
    shift = 0 if rq_dram is not None else layer.accumulator_frac - layer.output_format.frac
    bb, wbase = place.bb_base, place.wb_base  # the layer's bias/mode-table and weight-buffer regions (allocate)
    slot = 0  # double buffering: streamed blocks alternate between wb_slots regions

    def next_slot() -> int:
        nonlocal slot
        base = wbase + slot * place.wb_slot_words
        slot = (slot + 1) % place.wb_slots
        return base

    if not place.spilled:  # one band: CONV first, as the program shape above says
        em.add("CONV", **layer_bands[0].geometry)
    if s.bias_resident == "layer":
        em.add("LDB", bb=bb, dram=place.bias_dram, count=s.m)
        if rq_dram is not None:  # the requant table is addressed like the bias buffer
            em.add("LDQ", qa=bb, dram=rq_dram, count=s.m)
        for start, count, code in mode_runs(modes):
            em.add("MODE", mt=bb + start, count=count, code=code)
    if s.weights_resident == "layer":
        em.load_weights(place.weight_dram, s.m, s.k, s.k, wbase)
    for band in layer_bands:
        _band_io(em, band, before=True)
        if place.spilled and not (band.neurons is not None and place.piece_words):
            em.add("CONV", **band.geometry)
        positions = band.positions
        p_tile = _balanced(positions, s.p_tile)
        lo, hi = band.neurons or (0, s.m)
        for m0 in range(lo, hi, s.m_tile):
            mt = min(s.m_tile, hi - m0)
            if s.bias_resident == "block":
                em.add("LDB", bb=bb, dram=place.bias_dram + m0, count=mt)
                if rq_dram is not None:
                    em.add("LDQ", qa=bb, dram=rq_dram + m0, count=mt)
                for start, count, code in mode_runs(modes[m0 : m0 + mt]):
                    em.add("MODE", mt=bb + start, count=count, code=code)
            block_base = wbase
            if s.weights_resident == "block":
                block_base = next_slot()
                em.load_weights(place.weight_dram + m0 * s.k, mt, s.k, s.k, block_base)
            bias_base = bb + (m0 if s.bias_resident == "layer" else 0)
            for p0 in range(0, positions, p_tile):
                pt = min(p_tile, positions - p0)
                for chunk, k0 in enumerate(range(0, s.k, s.k_chunk)):
                    kc = min(s.k_chunk, s.k - k0)
                    piece = place.piece_words if band.neurons is not None else 0
                    if piece and k0 % piece == 0:  # a spilled dense layer's next piece of its input
                        assert place.dram_input is not None
                        count = min(piece, s.k - k0)
                        em.add("LDN", nb=band.nb_in, dram=place.dram_input + k0, count=count)
                        em.add("CONV", **{**band.geometry, "c": count})
                    if s.weights_resident == "chunk":
                        chunk_base = next_slot()
                        em.load_weights(place.weight_dram + m0 * s.k + k0, mt, kc, s.k, chunk_base)
                        wb, wstride = chunk_base, kc
                    elif s.weights_resident == "block":
                        wb, wstride = block_base + k0, s.k
                    else:
                        wb, wstride = wbase + m0 * s.k + k0, s.k
                    em.add("DISTW", wb=wb, stride=wstride, m=mt, p=pt, k=kc)
                    em.add("DISTN", nb=band.nb_in, p0=p0, m=mt, p=pt, k0=k0 % piece if piece else k0, k=kc)
                    em.add("MAC", m=mt, p=pt, k=kc, bb=bias_base, mt=bias_base, init=int(chunk == 0))
                if layer.relu:
                    em.add("RELU", m=mt, p=pt)
                if acc_dram is not None:
                    em.add("STA", dram=acc_dram + m0 * positions + p0, ostride=positions, m=mt, p=pt)
                elif rq_dram is not None:
                    em.add("REQ", nb=band.nb_out + (m0 - lo) * positions + p0, ostride=positions, m=mt, p=pt, shift=0,
                           bits=layer.output_format.bits, uns=int(not layer.output_format.signed), rq=1, qa=bias_base)
                else:
                    em.add("REQ", nb=band.nb_out + (m0 - lo) * positions + p0, ostride=positions, m=mt, p=pt, shift=shift, bits=layer.output_format.bits)
        _band_io(em, band, before=False)


def _emit_pool(em: _Emitter, layer: QuantizedLayer, in_shape: tuple[int, ...], out_shape: tuple[int, ...], place: LayerPlacement) -> None:
    c, h, w = in_shape
    kh, kw = layer.window_hw
    sh, sw = layer.stride_hw
    pt, pl, pb, pr = layer.pads_tlbr
    geometry = {"c": c, "h": h, "w": w, "kh": kh, "kw": kw, "sh": sh, "sw": sw, "pt": pt, "pl": pl, "pb": pb, "pr": pr, "padv": 0, "oh": out_shape[1], "ow": out_shape[2]}
    group = place.band_channels or c  # a spilled pool's channel groups (allocate.py); one group otherwise
    for c0 in range(0, c, group):
        n = min(group, c - c0)
        for band in bands(layer, {**geometry, "c": n}, n, place, c0=c0, m0=c0):
            _band_io(em, band, before=True)
            g = band.geometry
            if layer.op == "avgpool":  # a band's pads are the map's own (rows of the window outside it), so counts are right
                shift = layer.output_format.frac - layer.input_format.frac
                em.add("AVGPOOL", dst=band.nb_out, src=band.nb_in, c=n, h=g["h"], w=w, kh=kh, kw=kw, sh=sh, sw=sw, pt=g["pt"], pl=pl, pb=g["pb"], pr=pr, shift=shift, bits=layer.output_format.bits)
            else:
                em.add("POOL", dst=band.nb_out, src=band.nb_in, c=n, h=g["h"], w=w, kh=kh, kw=kw, sh=sh, sw=sw, pt=g["pt"], pl=pl, pb=g["pb"], pr=pr)
            _band_io(em, band, before=False)


def _emit_add(em: _Emitter, layer: QuantizedLayer, words: int, place: LayerPlacement) -> None:
    """ADD in place; a spilled add (allocate.py) runs over bands of ``band_words`` words: both addends'
    words loaded from activation DRAM, summed over the first, stored to the output."""
    sa, sb, shift = add_shifts(layer)
    operands = {"sa": sa, "sb": sb, "shift": shift, "bits": layer.output_format.bits, "relu": int(layer.relu)}
    if not place.spilled:
        em.add("ADD", dst=place.nb_output, a=place.nb_input, b=place.nb_other, count=words, **operands)
        return
    assert place.dram_input is not None and place.dram_other is not None and place.dram_output is not None
    for w0 in range(0, words, place.band_words):
        n = min(place.band_words, words - w0)
        em.add("LDN", nb=place.nb_input, dram=place.dram_input + w0, count=n)
        if place.nb_other != place.nb_input:
            em.add("LDN", nb=place.nb_other, dram=place.dram_other + w0, count=n)
        em.add("ADD", dst=place.nb_output, a=place.nb_input, b=place.nb_other, count=n, **operands)
        em.add("STN", dram=place.dram_output + w0, nb=place.nb_output, count=n)


def _balanced(total: int, limit: int) -> int:
    """The most even split of ``total`` into pieces of at most ``limit``."""
    pieces = -(-total // max(1, limit))
    return -(-total // pieces)


def emit(ir: CompilerIR) -> CompilerIR:
    """Instructions and memory images; an operand the encoding cannot hold is a ConfigError naming the layer."""
    assert ir.layers is not None and ir.shapes is not None and ir.schedule is not None and ir.allocation is not None
    alloc = ir.allocation
    em = _Emitter()
    input_words = int(np.prod(ir.shapes[0]))
    if not alloc.layers[0].spilled:  # a spilled first layer reads the input from DRAM itself
        em.add("LDN", nb=alloc.nb_network_input, dram=alloc.input_dram, count=input_words)
    ranges = []
    requant: list[tuple[int, int, int]] = []  # DRAM.Q: the requantising layers' entries, back to back
    last_sta = stores_accumulators(ir.layers[-1], ir.arch)  # a float graph output stored by STA (ISA 2)
    for index, (layer, schedule, place) in enumerate(zip(ir.layers, ir.schedule, alloc.layers, strict=True)):
        first = len(em.program)
        out_words = int(np.prod(ir.shapes[index + 1]))
        try:
            for kind, first_operand, second_operand, count in place.before:
                if kind == "LDN":
                    em.add("LDN", nb=first_operand, dram=second_operand, count=count)
                else:
                    em.add("STN", dram=first_operand, nb=second_operand, count=count)
            sta_here = last_sta and index == len(ir.layers) - 1
            if schedule.kind == "compute":
                rq_dram = len(requant) if layer.requant is not None else None
                requant.extend(layer.requant or ())
                _emit_compute(em, index, layer, schedule, place, alloc.output_dram if sta_here else None, rq_dram)
            elif schedule.kind == "pool":
                _emit_pool(em, layer, ir.input_shape(index), ir.shapes[index + 1], place)
            elif schedule.kind == "add":
                _emit_add(em, layer, out_words, place)
            for _, dram, nb, count in place.after:  # a copy for a later layer (a residual branch)
                em.add("STN", dram=dram, nb=nb, count=count)
            if sta_here:  # the accumulator words STA stored at the network output
                em.add("SYNC", layer=index, nb=alloc.output_dram, count=out_words, space=1)
            elif place.dram_output is not None:  # the output lives in activation DRAM (a spilled layer)
                em.add("SYNC", layer=index, nb=place.dram_output, count=out_words, space=1)
            else:
                em.add("SYNC", layer=index, nb=place.nb_output, count=out_words, space=0)
        except BundleError as exc:
            raise ConfigError(f"{ir.layer_label(index)}: cannot be encoded in the ISA: {exc}") from None
        ranges.append((first, len(em.program)))
    if alloc.layers[-1].dram_output is None and not last_sta:  # STA already wrote the output words
        em.add("STN", dram=alloc.output_dram, nb=alloc.layers[-1].nb_output, count=int(np.prod(ir.shapes[-1])))
    em.add("END")
    weights = [layer.weight.reshape(-1) for layer in ir.layers if layer.weight is not None]
    biases = [layer.bias.reshape(-1) for layer in ir.layers if layer.bias is not None]
    emitted = Emitted(
        program=tuple(em.program),
        layer_ranges=tuple(ranges),
        weight_image=np.concatenate(weights).astype(np.int64),
        bias_image=np.concatenate(biases).astype(np.int64),
        requant_image=np.asarray(requant, dtype=np.int64).reshape(-1, 3),
    )
    return ir.update(emitted=emitted)
