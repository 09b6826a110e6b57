"""Pass 5, emit: the ISA program and the weight and bias memory images.

Program shape (docs/compiler.md):

    LDN input                                   prologue
    per layer:  CONV; LDB; MODE...; [LDW layer]
                per m-block: [LDB block; MODE...] [LDW block]
                  per position tile: per chunk: [LDW chunk] DISTW DISTN MAC
                                     [RELU] REQ
                SYNC layer                       (MaxPool: POOL SYNC; Flatten: SYNC)
    STN output; END                              epilogue

A DISTW is left out when the previous DISTW had the same operands and no LDW came between (the PE
weight memories still hold those words): consecutive position tiles of a single-chunk convolution
reuse their weights, as FlexFlow's local memories intend.
"""

from __future__ import annotations

import numpy as np

from axtrain.compiler.ir import CompilerIR, Emitted, LayerPlacement, LayerSchedule, stores_accumulators
from axtrain.errors import BundleError, ConfigError
from axtrain.formats.isa import Instruction, mode_code, operand_range
from axtrain.hwmodels.layers import QuantizedLayer
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


def _emit_compute(
    em: _Emitter, index: int, layer: QuantizedLayer, s: LayerSchedule, place: LayerPlacement, acc_dram: int | None = None, rq_dram: int | None = None
) -> None:
    """One compute layer; ``acc_dram`` (a float graph output, ISA 2): its accumulators go to DRAM.A
    from that word by STA, and its SYNC names them there, instead of REQ into the neuron buffer.
    ``rq_dram`` (a requantising layer, ISA 2): its requant entries start at that DRAM.Q entry; they
    are loaded beside the biases (LDQ, same table addresses) and every REQ scales by them (rq=1)."""
    c, h, w, kh, kw, stride, pad, oh, ow = s.geometry
    em.add("CONV", c=c, h=h, w=w, kh=kh, kw=kw, stride=stride, pad=pad, oh=oh, ow=ow)
    assert place.weight_dram is not None and place.bias_dram is not None and layer.weight_format is not None
    modes = layer.neuron_modes()
    shift = 0 if rq_dram is not None else layer.accumulator_frac - layer.output_format.frac
    bb, wbase = place.bb_base, place.wb_base  # the layer's bias/mode-table and weight-buffer regions (allocate)
    slot = 0  # double buffering: streamed blocks alternate between wb_slots regions

    def next_slot() -> int:
        nonlocal slot
        base = wbase + slot * place.wb_slot_words
        slot = (slot + 1) % place.wb_slots
        return base

    if s.bias_resident == "layer":
        em.add("LDB", bb=bb, dram=place.bias_dram, count=s.m)
        if rq_dram is not None:  # the requant table is addressed like the bias buffer
            em.add("LDQ", qa=bb, dram=rq_dram, count=s.m)
        for start, count, code in mode_runs(modes):
            em.add("MODE", mt=bb + start, count=count, code=code)
    if s.weights_resident == "layer":
        em.load_weights(place.weight_dram, s.m, s.k, s.k, wbase)
    for m0 in range(0, s.m, s.m_tile):
        mt = min(s.m_tile, s.m - m0)
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
        for p0 in range(0, s.positions, s.p_tile):
            pt = min(s.p_tile, s.positions - p0)
            for chunk, k0 in enumerate(range(0, s.k, s.k_chunk)):
                kc = min(s.k_chunk, s.k - k0)
                if s.weights_resident == "chunk":
                    chunk_base = next_slot()
                    em.load_weights(place.weight_dram + m0 * s.k + k0, mt, kc, s.k, chunk_base)
                    wb, wstride = chunk_base, kc
                elif s.weights_resident == "block":
                    wb, wstride = block_base + k0, s.k
                else:
                    wb, wstride = wbase + m0 * s.k + k0, s.k
                em.add("DISTW", wb=wb, stride=wstride, m=mt, p=pt, k=kc)
                em.add("DISTN", nb=place.nb_input, p0=p0, m=mt, p=pt, k0=k0, k=kc)
                em.add("MAC", m=mt, p=pt, k=kc, bb=bias_base, mt=bias_base, init=int(chunk == 0))
            if layer.relu:
                em.add("RELU", m=mt, p=pt)
            if acc_dram is not None:
                em.add("STA", dram=acc_dram + m0 * s.positions + p0, ostride=s.positions, m=mt, p=pt)
            elif rq_dram is not None:
                em.add("REQ", nb=place.nb_output + m0 * s.positions + p0, ostride=s.positions, m=mt, p=pt, shift=0,
                       bits=layer.output_format.bits, uns=int(not layer.output_format.signed), rq=1, qa=bias_base)
            else:
                em.add("REQ", nb=place.nb_output + m0 * s.positions + p0, ostride=s.positions, m=mt, p=pt, shift=shift, bits=layer.output_format.bits)
    if acc_dram is not None:
        em.add("SYNC", layer=index, nb=acc_dram, count=s.m * s.positions, acc=1)
    else:
        em.add("SYNC", layer=index, nb=place.nb_output, count=s.m * s.positions)


def emit(ir: CompilerIR) -> CompilerIR:
    """Instructions and memory images; an operand the encoding cannot hold is a ConfigError naming the layer."""
    assert ir.layers is not None and ir.shapes is not None and ir.schedule is not None and ir.allocation is not None
    alloc = ir.allocation
    em = _Emitter()
    input_words = int(np.prod(ir.shapes[0]))
    em.add("LDN", nb=alloc.nb_network_input, dram=alloc.input_dram, count=input_words)
    ranges = []
    requant: list[tuple[int, int, int]] = []  # DRAM.Q: the requantising layers' entries, back to back
    for index, (layer, schedule, place) in enumerate(zip(ir.layers, ir.schedule, alloc.layers, strict=True)):
        first = len(em.program)
        out_words = int(np.prod(ir.shapes[index + 1]))
        try:
            if schedule.kind == "compute":
                last_sta = index == len(ir.layers) - 1 and stores_accumulators(layer, ir.arch)
                rq_dram = len(requant) if layer.requant is not None else None
                requant.extend(layer.requant or ())
                _emit_compute(em, index, layer, schedule, place, alloc.output_dram if last_sta else None, rq_dram)
            elif schedule.kind == "pool":
                c, h, w = ir.shapes[index]
                em.add("POOL", dst=place.nb_output, src=place.nb_input, c=c, h=h, w=w, k=layer.kernel, s=layer.stride)
                em.add("SYNC", layer=index, nb=place.nb_output, count=out_words)
            else:
                em.add("SYNC", layer=index, nb=place.nb_output, count=out_words)
        except BundleError as exc:
            raise ConfigError(f"{ir.layer_label(index)}: cannot be encoded in ISA v2: {exc}") from None
        ranges.append((first, len(em.program)))
    if not stores_accumulators(ir.layers[-1], ir.arch):  # else STA already wrote the output words
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
