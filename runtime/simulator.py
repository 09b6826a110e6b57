"""Fast cycle and event counts: the timing model of :mod:`simulator_reference` in closed form.

Per instruction, cycles and events are formulas of its operands (docs/runtime.md); DISTN's distinct
neuron-buffer reads come from one vectorised address computation instead of the reference's walk.
Equal to the reference on every test case (tests/runtime/test_cycles.py). Counts do not depend on
data, so a bundle's latency and events are computed once per (program, architecture, modes,
voltages) and reused for every image and Monte Carlo run.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from axtrain.formats.arch import Architecture
from axtrain.formats.isa import ACC_OUT_WORD_BYTES, BIAS_WORD_BYTES, REQUANT_ENTRY_WORDS, Geometry, Instruction, mode_of_code, pool_output_size
from axtrain.hwmodels.multipliers import MultiplierMode
from axtrain.runtime.events import Events, InstructionContext, access_key, instruction_context, multiply_key, voltage_key
from axtrain.runtime.overrides import override_program


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def dram_cycles(nbytes: int, arch: Architecture) -> int:
    """Cycles of a DRAM transfer: latency, then ``ceil(bytes / bandwidth)``; an empty one takes 1."""
    if nbytes == 0:
        return 1
    return arch.dram_latency_cycles + _ceil(nbytes, arch.dram_bandwidth)


def distinct_reads(o: dict[str, int], g: Geometry) -> int:
    """Distinct, non-padding neuron-buffer words a DISTN tile reads (vectorised)."""
    offsets, inside = g.window(o["p0"], o["p"], o["k0"], o["k"])
    # Rows r of the tile repeat the same positions, so the m rows add no new words.
    return int(np.unique(offsets[inside]).size)


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


def simulate_fast(program: Sequence[Instruction], arch: Architecture, context: InstructionContext | None = None) -> Events:
    """Events of one inference in closed form (equal to :func:`simulate_reference`)."""
    context = context or instruction_context(program, arch)
    program = override_program(program, context.mode_override)  # the run's MODE codes (runtime/overrides.py)
    ev = Events()
    wb_rate = max(1, arch.weight_buffer_bandwidth // arch.weight_word_bytes)
    nb_rate = max(1, arch.neuron_buffer_bandwidth // arch.neuron_word_bytes)
    nominal = context.nominal_voltage
    mode_table = np.zeros(arch.bias_buffer_words, dtype=np.int64)
    geometry: Geometry | None = None
    for index, ins in enumerate(program):
        o = ins.operands()
        op = ins.op
        v = context.voltages[index]
        cycles = 1
        if op in ("LDW", "LDB", "LDQ", "LDN", "STN"):
            if op == "LDW":
                words, word_bytes, memory, weight = o["rows"] * o["cols"], arch.weight_word_bytes, "weight_buffer", True
            elif op == "LDB":
                words, word_bytes, memory, weight = o["count"], BIAS_WORD_BYTES, "bias_buffer", False
            elif op == "LDQ":  # the requant table sits beside the bias register file: 3 words an entry
                words, word_bytes, memory, weight = REQUANT_ENTRY_WORDS * o["count"], BIAS_WORD_BYTES, "bias_buffer", False
            else:
                words, word_bytes, memory, weight = o["count"], arch.neuron_word_bytes, "neuron_buffer", False
            nbytes = words * word_bytes
            cycles = dram_cycles(nbytes, arch)
            if nbytes:
                ev.stall_cycles += arch.dram_latency_cycles
            key = access_key(memory, v if weight else nominal)
            if op == "STN":
                ev.reads[key] += words
                ev.dram_write_bytes += nbytes
            else:
                ev.writes[key] += words
                ev.dram_read_bytes += nbytes
        elif op == "STA":  # accumulators straight to DRAM: 4 bytes an output, no buffer access
            nbytes = o["m"] * o["p"] * ACC_OUT_WORD_BYTES
            cycles = dram_cycles(nbytes, arch)
            ev.stall_cycles += arch.dram_latency_cycles
            ev.dram_write_bytes += nbytes
        elif op == "MODE":
            mode_table[o["mt"] : o["mt"] + o["count"]] = o["code"]
        elif op == "CONV":
            geometry = Geometry(**o)
        elif op == "DISTW":
            words = o["m"] * o["k"]
            cycles = _ceil(words, wb_rate)
            ev.reads[access_key("weight_buffer", v)] += words
            ev.writes[access_key("weight_local", nominal)] += words * o["p"]
        elif op == "DISTN":
            assert geometry is not None
            reads = distinct_reads(o, geometry)
            cycles = max(1, _ceil(reads, nb_rate))
            ev.reads[access_key("neuron_buffer", nominal)] += reads
            ev.writes[access_key("neuron_local", nominal)] += o["m"] * o["p"] * o["k"]
        elif op == "MAC":
            m, p, k = o["m"], o["p"], o["k"]
            cycles = k
            for mode, rows in _mode_rows(mode_table[o["mt"] : o["mt"] + m]):
                ev.multiplies[multiply_key(mode, context.operand_bits[index])] += rows * p * k
            ev.additions += m * p * k
            ev.active_pe_cycles += m * p * k
            ev.reads[access_key("weight_local", nominal)] += m * p * k
            ev.reads[access_key("neuron_local", nominal)] += m * p * k
            if o["init"]:
                ev.reads[access_key("bias_buffer", nominal)] += m
        elif op == "RELU":
            ev.comparisons += o["m"] * o["p"]
        elif op == "REQ":
            n = o["m"] * o["p"]
            cycles = _ceil(n, nb_rate)
            ev.writes[access_key("neuron_buffer", nominal)] += n
            ev.requantizations += n
            if o["rq"]:  # one table entry read per output neuron, one multiply per output
                ev.reads[access_key("bias_buffer", nominal)] += REQUANT_ENTRY_WORDS * o["m"]
                ev.requant_multiplies += n
        elif op == "POOL":
            c, h, w, k, s = o["c"], o["h"], o["w"], o["k"], o["s"]
            outputs = c * pool_output_size(h, k, s) * pool_output_size(w, k, s)
            reads, compares = outputs * k * k, outputs * (k * k - 1)
            cycles = max(1, _ceil(reads, nb_rate), _ceil(compares, arch.pe_count)) + _ceil(outputs, nb_rate)
            ev.reads[access_key("neuron_buffer", nominal)] += reads
            ev.writes[access_key("neuron_buffer", nominal)] += outputs
            ev.comparisons += compares
        ev.instructions[op] += 1
        ev.cycles += cycles
        ev.cycles_by_op[op] += cycles
        ev.cycles_by_voltage[voltage_key(v)] += cycles
        if op == "END":
            break
    return ev
