"""Fast cycle and event counts: the timing model of :mod:`simulator_reference` in closed form.

Per instruction, its duration and events are formulas of its operands (docs/runtime.md "Timing
model"); its start is the later of its unit becoming free and the end of the last earlier
instruction it conflicts with, found from per-word last-read / last-write times of the weight, bias
and neuron buffers instead of the reference's pairwise comparison. DISTN's distinct neuron-buffer
reads come from one vectorised address computation instead of the reference's walk. Equal to the
reference on every test case (tests/runtime/test_cycles.py), batches included.

A batch of ``B`` inferences is the first inference (every load) followed by ``B - 1`` inferences
without the resident loads (runtime/timing.py); END is a barrier, so each inference starts on an
idle machine and the later ones all take the same cycles: the batch is the first inference plus
``B - 1`` times the second, computed once each. Counts do not depend on data, so a bundle's events
are computed once per (program, architecture, modes, voltages, batch) and reused for every image
and Monte Carlo run.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from axtrain.formats.arch import Architecture
from axtrain.formats.isa import REQUANT_ENTRY_WORDS, Geometry, Instruction, mode_of_code, pool_output_shape
from axtrain.hwmodels.multipliers import MultiplierMode
from axtrain.runtime.events import Events, InstructionContext, access_key, instruction_context, multiply_key, voltage_key
from axtrain.runtime.overrides import override_program
from axtrain.runtime.timing import DMA_OPS, PE_OPS, MachineRun, dram_transfer, footprint, mac_cycles, resident_loads, synapse_split


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def dram_cycles(nbytes: int, arch: Architecture) -> int:
    """Cycles of one DRAM transfer on an idle channel: latency, then its whole bursts at the bus
    bandwidth; an empty one takes its issue cycle."""
    if nbytes == 0:
        return 1
    bus = _ceil(nbytes, arch.dram_burst_bytes) * arch.dram_burst_bytes
    return arch.dram_latency_cycles + _ceil(bus, arch.dram_bandwidth)


def distinct_reads(o: dict[str, int], g: Geometry) -> int:
    """Distinct, non-padding neuron-buffer words a DISTN tile reads (vectorised)."""
    offsets, inside = g.window(o["p0"], o["p"], o["k0"], o["k"])
    # Rows r of the tile repeat the same positions, so the m rows add no new words.
    return int(np.unique(offsets[inside]).size)


def _window_extents(size: int, k: int, s: int, pad: int, out: int) -> int:
    """Sum over the ``out`` windows along one axis of their positions inside the map."""
    start = np.arange(out) * s - pad
    return int((np.minimum(start + k, size) - np.maximum(start, 0)).sum())


def pool_reads(o: dict[str, int]) -> tuple[int, int]:
    """``(outputs, neuron-buffer reads)`` of a POOL or AVGPOOL: each window reads its positions
    inside the map."""
    oh, ow = pool_output_shape(o)
    rows = _window_extents(o["h"], o["kh"], o["sh"], o["pt"], oh)
    cols = _window_extents(o["w"], o["kw"], o["sw"], o["pl"], ow)
    return o["c"] * oh * ow, o["c"] * rows * cols


def _mode_rows(codes: np.ndarray) -> list[tuple[MultiplierMode, int]]:
    """``(mode, rows)`` of a MAC tile's mode-table entries, in order of first appearance (what
    ``Counter`` of the modes gives), vectorised: a tile has up to 256 rows and a large network
    thousands of MACs, so a Python call per row dominated the cycle count (784-4096-4096-10: 1.0 of
    1.5 s)."""
    if codes.size == 0:
        return []
    first_code = int(codes[0])
    if bool((codes == first_code).all()):
        return [(mode_of_code(first_code), int(codes.size))]
    values, first, counts = np.unique(codes, return_index=True, return_counts=True)
    return [(mode_of_code(int(values[i])), int(counts[i])) for i in np.argsort(first, kind="stable")]


class _Inference:
    """One inference of a program (some loads skipped): events per layer and its cycles."""

    def __init__(self, program: Sequence[Instruction], arch: Architecture, context: InstructionContext, skip: frozenset[int]) -> None:
        self.program, self.arch, self.context, self.skip = program, arch, context, skip
        self.layers: dict[int, Events] = defaultdict(Events)
        self.cycles = 0
        self.mode_table = np.zeros(arch.bias_buffer_words, dtype=np.int64)

    def _events(self, index: int) -> Events:
        return self.layers[self.context.layer_of(index)]

    def _work(self, index: int, ins: Instruction, geometry: Geometry | None) -> int:
        """Count ``ins``'s events; return its duration (PE array) or its bus cycles (DMA, 0: empty)."""
        a, ev, o, op = self.arch, self._events(index), ins.operands(), ins.op
        v, nominal = self.context.voltages[index], self.context.nominal_voltage
        if op in DMA_OPS:
            useful, bus = dram_transfer(ins, a)
            if op == "STA":  # accumulators straight to DRAM (32-bit words): no buffer access
                ev.dram_write_bytes += bus
                return _ceil(bus, a.dram_bandwidth)
            if op == "LDW":
                words, memory, weight = o["rows"] * o["cols"], "weight_buffer", True
            elif op == "LDB":
                words, memory, weight = o["count"], "bias_buffer", False
            elif op == "LDQ":  # the requant table sits beside the bias register file: 3 words an entry
                words, memory, weight = REQUANT_ENTRY_WORDS * o["count"], "bias_buffer", False
            else:
                words, memory, weight = o["count"], "neuron_buffer", False
            key = access_key(memory, v if weight else nominal)
            if op == "STN":
                ev.reads[key] += words
                ev.dram_write_bytes += bus
            else:
                ev.writes[key] += words
                ev.dram_read_bytes += bus
            return _ceil(bus, a.dram_bandwidth)
        wb_rate = max(1, a.weight_buffer_bandwidth // a.weight_word_bytes)
        nb_rate = max(1, a.neuron_buffer_bandwidth // a.neuron_word_bytes)
        if op == "MODE":
            self.mode_table[o["mt"] : o["mt"] + o["count"]] = o["code"]
            return 1
        if op in ("CONV", "RELU"):
            if op == "RELU":
                ev.comparisons += o["m"] * o["p"]
            return 1
        if op == "DISTW":
            words = o["m"] * o["k"]
            ev.reads[access_key("weight_buffer", v)] += words
            ev.writes[access_key("weight_local", nominal)] += words * o["p"]
            return _ceil(words, wb_rate)
        if op == "DISTN":
            assert geometry is not None
            reads = distinct_reads(o, geometry)
            ev.reads[access_key("neuron_buffer", nominal)] += reads
            ev.writes[access_key("neuron_local", nominal)] += o["m"] * o["p"] * o["k"]
            return max(1, _ceil(reads, nb_rate))
        if op == "MAC":
            m, p, k = o["m"], o["p"], o["k"]
            for mode, rows in _mode_rows(self.mode_table[o["mt"] : o["mt"] + m]):
                ev.multiplies[multiply_key(mode, self.context.operand_bits[index])] += rows * p * k
            ev.additions += m * p * k
            ev.partial_sum_additions += m * p * (synapse_split(m, p, k, a) - 1)
            ev.active_pe_cycles += m * p * k
            ev.reads[access_key("weight_local", nominal)] += m * p * k
            ev.reads[access_key("neuron_local", nominal)] += m * p * k
            if o["init"]:
                ev.reads[access_key("bias_buffer", nominal)] += m
            return mac_cycles(m, p, k, a)
        if op == "REQ":
            n = o["m"] * o["p"]
            ev.writes[access_key("neuron_buffer", nominal)] += n
            ev.requantizations += n
            if o["rq"]:  # one table entry read per output neuron, one multiply per output (pipelined)
                ev.reads[access_key("bias_buffer", nominal)] += REQUANT_ENTRY_WORDS * o["m"]
                ev.requant_multiplies += n
            return _ceil(n, nb_rate)
        if op in ("POOL", "AVGPOOL"):
            outputs, reads = pool_reads(o)
            combines = reads - outputs  # comparisons (max) or additions (average) of the PE array
            ev.reads[access_key("neuron_buffer", nominal)] += reads
            ev.writes[access_key("neuron_buffer", nominal)] += outputs
            if op == "POOL":
                ev.comparisons += combines
            else:
                ev.additions += combines
                ev.requantizations += outputs
            return max(1, _ceil(reads, nb_rate), _ceil(combines, a.pe_count)) + _ceil(outputs, nb_rate)
        if op == "ADD":
            n = o["count"]
            ev.reads[access_key("neuron_buffer", nominal)] += 2 * n
            ev.writes[access_key("neuron_buffer", nominal)] += n
            ev.additions += n
            ev.requantizations += n
            if o["relu"]:
                ev.comparisons += n
            return max(1, _ceil(2 * n, nb_rate), _ceil(n, a.pe_count)) + _ceil(n, nb_rate)
        if op in ("SYNC", "END"):
            return a.pipeline_drain_cycles
        assert op not in PE_OPS
        return 1  # an instruction this model does not know: one cycle, as a barrier

    def run(self) -> None:
        a = self.arch
        sizes = {"WB": a.weight_buffer_words, "BB": a.bias_buffer_words, "NB": a.neuron_buffer_words, "RQ": a.bias_buffer_words, "ACC": a.pe_count}
        last_write = {b: np.zeros(n + 1, dtype=np.int64) for b, n in sizes.items()}
        last_read = {b: np.zeros(n + 1, dtype=np.int64) for b, n in sizes.items()}
        pe_free = dma_issue = bus_free = barrier = latest = 0
        pe: list[tuple[int, int, int]] = []  # (start, end, index) on the PE array, in order
        bus: list[tuple[int, int, int]] = []  # (first, end, index) of data on the DRAM bus, in order
        geometry: Geometry | None = None
        for index, ins in enumerate(self.program):
            if index in self.skip:
                continue
            if ins.op == "CONV":
                geometry = Geometry(**ins.operands())
            fp = footprint(ins, geometry)
            self._events(index).instructions[ins.op] += 1
            duration = self._work(index, ins, geometry)
            if fp.barrier:
                ready = latest
            else:
                ready = barrier
                for b, first, end in fp.reads:
                    ready = max(ready, int(last_write[b][first:end].max(initial=0)))
                for b, first, end in fp.writes:
                    ready = max(ready, int(last_write[b][first:end].max(initial=0)), int(last_read[b][first:end].max(initial=0)))
            if ins.op in DMA_OPS:
                start = max(dma_issue, ready)
                dma_issue = start + 1
                if duration == 0:
                    finish = start + 1  # nothing to move: the issue cycle
                else:
                    first_data = max(start + a.dram_latency_cycles, bus_free)
                    finish = bus_free = first_data + duration
                    bus.append((first_data, finish, index))
            else:
                start = max(pe_free, ready)
                finish = pe_free = start + duration
                pe.append((start, finish, index))
            if fp.barrier:
                barrier = finish
            for b, first, end in fp.reads:
                np.maximum(last_read[b][first:end], finish, out=last_read[b][first:end])
            for b, first, end in fp.writes:
                np.maximum(last_write[b][first:end], finish, out=last_write[b][first:end])
            latest = max(latest, finish)
        self.cycles = latest
        self._attribute(pe, bus)

    def _charge(self, index: int, kind: str, cycles: int) -> None:
        if cycles <= 0:
            return
        ev = self._events(index)
        ev.cycles += cycles
        setattr(ev, kind, getattr(ev, kind) + cycles)
        ev.cycles_by_op[self.program[index].op] += cycles
        ev.cycles_by_voltage[voltage_key(self.context.voltages[index])] += cycles

    def _attribute(self, pe: list[tuple[int, int, int]], bus: list[tuple[int, int, int]]) -> None:
        """Every cycle to one instruction: the PE array's while it is busy (compute); else the bus's
        instruction while data moves (transfer); else the next PE-array instruction (stall)."""
        last_index = max((i for i in range(len(self.program)) if i not in self.skip), default=0)
        gaps = []
        previous = 0
        for start, end, index in pe:
            self._charge(index, "compute_cycles", end - start)
            gaps.append((previous, start, index))
            previous = end
        gaps.append((previous, self.cycles, last_index))  # after the last PE instruction (END: empty)
        j = 0
        for g0, g1, owner in gaps:
            if g1 <= g0:
                continue
            while j < len(bus) and bus[j][1] <= g0:
                j += 1
            moved = 0
            k = j
            while k < len(bus) and bus[k][0] < g1:
                overlap = min(g1, bus[k][1]) - max(g0, bus[k][0])
                if overlap > 0:
                    self._charge(bus[k][2], "transfer_cycles", overlap)
                    moved += overlap
                k += 1
            self._charge(owner, "stall_cycles", g1 - g0 - moved)


def simulate_machine(program: Sequence[Instruction], arch: Architecture, context: InstructionContext | None = None, batch: int = 1) -> MachineRun:
    """Events of a batch of ``batch`` inferences, per layer and in total (equal to
    :meth:`~axtrain.runtime.simulator_reference.ReferenceSimulator.run_batch`)."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    context = context or instruction_context(program, arch)
    program = override_program(program, context.mode_override)  # the run's MODE codes (runtime/overrides.py)
    first = _Inference(program, arch, context, frozenset())
    first.run()
    layers = {k: ev + Events() for k, ev in first.layers.items()}
    if batch > 1:
        later = _Inference(program, arch, context, resident_loads(program))
        later.run()
        for key, ev in later.layers.items():
            layers[key] = layers.get(key, Events()) + ev.times(batch - 1)
    total = Events()
    for ev in layers.values():
        total = total + ev
    return MachineRun(batch, total, dict(sorted(layers.items())), first.cycles)


def simulate_fast(program: Sequence[Instruction], arch: Architecture, context: InstructionContext | None = None) -> Events:
    """Events of one inference in closed form (equal to :func:`simulate_reference`)."""
    return simulate_machine(program, arch, context).total

