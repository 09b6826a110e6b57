"""Per-instruction trace of one input: what each instruction wrote and when it ran (``axtrain trace``).

Built on the two reference models, without changing them: the ISA interpreter's
:func:`~axtrain.runtime.interpreter.step` executes one instruction at a time on a one-image
:class:`~axtrain.runtime.interpreter.MachineState` (the values), and the reference cycle simulator
steps the clock through the same program (the times: each instruction's first and last cycle, on the
unit that executes it). The written locations follow docs/isa.md's semantics from the operands, so a
write of an unchanged value is still listed.

Units (the DMA engine's transfers overlap the other units' work, docs/runtime.md "Timing model"; the
others run one instruction at a time):
``dram`` (LDW LDB LDQ LDN STN STA), ``control`` (MODE CONV SYNC END), ``distribute`` (DISTW DISTN),
``pe_array`` (MAC RELU POOL AVGPOOL ADD), ``requantize`` (REQ).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from axtrain.formats.arch import Architecture
from axtrain.formats.bundle import Bundle
from axtrain.formats.isa import Instruction, pool_output_shape
from axtrain.runtime.events import InstructionContext, instruction_context
from axtrain.runtime.interpreter import MachineState, local_words_used, step
from axtrain.runtime.simulator_reference import ReferenceSimulator

UNITS = ("dram", "control", "distribute", "pe_array", "requantize")
UNIT_OF = {
    "LDW": "dram", "LDB": "dram", "LDQ": "dram", "LDN": "dram", "STN": "dram", "STA": "dram",
    "MODE": "control", "CONV": "control", "SYNC": "control", "END": "control",
    "DISTW": "distribute", "DISTN": "distribute",
    "MAC": "pe_array", "RELU": "pe_array", "POOL": "pe_array", "AVGPOOL": "pe_array", "ADD": "pe_array",
    "REQ": "requantize",
}


@dataclass(frozen=True)
class Writes:
    """The words one instruction wrote into one memory: ``target[addresses[i]] = values[i]``.

    Targets: ``WB``, ``BB``, ``MT``, ``NB``, ``DRAM.A`` (word addresses), ``ACC`` (PE index),
    ``WLM`` / ``NLM`` (``pe * local_words + word``)."""

    target: str
    addresses: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class TraceRecord:
    """One instruction: its index and text, the unit and cycles ``[start, end)`` it occupied, its writes."""

    index: int
    instruction: Instruction
    unit: str
    start: int
    end: int
    writes: tuple[Writes, ...]


def instruction_spans(program: Sequence[Instruction], arch: Architecture, context: InstructionContext | None = None) -> list[tuple[int, int]]:
    """``[start, end)`` cycles of every instruction, in program order, stepping the reference
    simulator's clock (its public :attr:`~axtrain.runtime.simulator_reference.ReferenceSimulator.spans`)."""
    sim = ReferenceSimulator(arch, context or instruction_context(program, arch))
    events = sim.run(program)
    spans = {index: (start, end) for index, start, end in sim.spans}
    assert len(spans) == len(program) and max(end for _, end in spans.values()) == events.cycles
    return [spans[index] for index in range(len(program))]


def _written(state: MachineState, ins: Instruction) -> tuple[Writes, ...]:
    """The locations ``ins`` wrote (docs/isa.md) with their values after it ran (image 0)."""
    o = ins.operands()
    op = ins.op

    def span(target: str, memory: np.ndarray, start: int, count: int) -> Writes:
        addresses = np.arange(start, start + count)
        return Writes(target, addresses, memory[addresses].copy())

    if op == "LDW":
        return (span("WB", state.wb, o["wb"], o["rows"] * o["cols"]),)
    if op == "LDB":
        return (span("BB", state.bb, o["bb"], o["count"]),)
    if op == "LDQ":  # RQ entry i's three words at addresses 3i, 3i+1, 3i+2 (M, n, z)
        return (span("RQ", state.rq.reshape(-1), 3 * o["qa"], 3 * o["count"]),)
    if op == "LDN":
        return (span("NB", state.nb[0], o["nb"], o["count"]),)
    if op == "STN":
        return (span("DRAM.A", state.dram_a[0], o["dram"], o["count"]),)
    if op == "STA":
        e = np.arange(o["m"] * o["p"])
        addresses = o["dram"] + (e // o["p"]) * o["ostride"] + e % o["p"]
        return (Writes("DRAM.A", addresses, state.dram_a[0, addresses].copy()),)
    if op == "MODE":
        return (span("MT", state.mt, o["mt"], o["count"]),)
    if op in ("DISTW", "DISTN"):
        pes, k = o["m"] * o["p"], o["k"]
        local = state.wlm if op == "DISTW" else state.nlm[0]
        pe, word = np.divmod(np.arange(pes * k), k)
        return (Writes("WLM" if op == "DISTW" else "NLM", pe * local.shape[1] + word, local[pe, word].copy()),)
    if op in ("MAC", "RELU"):
        return (span("ACC", state.acc[0], 0, o["m"] * o["p"]),)
    if op == "REQ":
        e = np.arange(o["m"] * o["p"])
        addresses = o["nb"] + (e // o["p"]) * o["ostride"] + e % o["p"]
        return (Writes("NB", addresses, state.nb[0, addresses].copy()),)
    if op == "ADD":
        return (span("NB", state.nb[0], o["dst"], o["count"]),)
    if op in ("POOL", "AVGPOOL"):
        oh, ow = pool_output_shape(o)
        count = o["c"] * oh * ow
        return (span("NB", state.nb[0], o["dst"], count),)
    return ()


def trace(bundle: Bundle, q_input: np.ndarray) -> list[TraceRecord]:
    """The trace of one quantised input (integers, the bundle's input shape) through ``bundle``."""
    m = bundle.manifest
    flat = np.asarray(q_input, dtype=np.int64).reshape(-1)
    dram = np.zeros((1, m.activation_words), dtype=np.int64)
    dram[0, m.input.dram : m.input.dram + flat.size] = flat
    state = MachineState(bundle.arch, bundle.weights, bundle.bias, dram, bundle.requant, local_words=local_words_used(bundle.program))
    context = instruction_context(bundle.program, bundle.arch, bundle.layers)
    spans = instruction_spans(bundle.program, bundle.arch, context)
    records: list[TraceRecord] = []
    outputs: dict[int, np.ndarray] = {}
    for index, ins in enumerate(bundle.program):
        running = step(state, ins, index, outputs)
        start, end = spans[index]
        records.append(TraceRecord(index, ins, UNIT_OF[ins.op], start, end, _written(state, ins)))
        if not running:
            break
    return records


# ---------------------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------------------


def format_text(records: Sequence[TraceRecord], show: int = 8) -> str:
    """One line per instruction: index, cycles, unit, instruction, then up to ``show`` written values per memory."""
    lines = []
    for r in records:
        parts = []
        for w in r.writes:
            if w.addresses.size == 0:
                continue
            values = " ".join(str(int(v)) for v in w.values[:show]) + (" ..." if w.values.size > show else "")
            parts.append(f"{w.target}[{int(w.addresses[0])}..{int(w.addresses[-1])}] ({w.values.size}): {values}")
        tail = ("  | " + "; ".join(parts)) if parts else ""
        lines.append(f"{r.index:>5}  [{r.start:>8}, {r.end:>8})  {r.unit:<10} {r.instruction}{tail}")
    return "\n".join(lines) + "\n"


def format_csv(records: Sequence[TraceRecord]) -> str:
    """One row per written word (an instruction without writes: one row, empty target)."""
    out = io.StringIO()
    out.write("index,op,unit,start_cycle,end_cycle,target,address,value\n")
    for r in records:
        head = f"{r.index},{r.instruction.op},{r.unit},{r.start},{r.end}"
        rows = [(w.target, a, v) for w in r.writes for a, v in zip(w.addresses.tolist(), w.values.tolist(), strict=True)]
        if not rows:
            out.write(f"{head},,,\n")
        for target, address, value in rows:
            out.write(f"{head},{target},{address},{value}\n")
    return out.getvalue()


def format_vcd(records: Sequence[TraceRecord], clock_hz: float) -> str:
    """A VCD timeline: per unit a ``<unit>_busy`` bit and ``<unit>_instr`` (the index it last started),
    and ``pc`` (the highest index started so far); one clock period is ``1e12 / clock_hz`` ps."""
    period = max(1, round(1e12 / clock_hz))
    ids = {"pc": "!"}
    for i, unit in enumerate(UNITS):
        ids[f"{unit}_busy"] = chr(35 + 2 * i)
        ids[f"{unit}_instr"] = chr(36 + 2 * i)
    head = ["$version axtrain trace $end", "$timescale 1ps $end", "$scope module axtrain $end", f"$var wire 32 {ids['pc']} pc $end"]
    for unit in UNITS:
        head += [f"$var wire 1 {ids[unit + '_busy']} {unit}_busy $end", f"$var wire 32 {ids[unit + '_instr']} {unit}_instr $end"]
    head += ["$upscope $end", "$enddefinitions $end", "#0", "$dumpvars", f"b0 {ids['pc']}"]
    head += [f"0{ids[u + '_busy']}" for u in UNITS] + [f"b0 {ids[u + '_instr']}" for u in UNITS] + ["$end"]
    # Per cycle where something starts or ends: how many instructions each unit runs (the DMA engine
    # overlaps its requests), the latest started on each unit and the highest index started (pc).
    deltas: dict[int, dict[str, int]] = {}
    started: dict[int, list[TraceRecord]] = {}
    for r in records:
        deltas.setdefault(r.start, {}).setdefault(r.unit, 0)
        deltas[r.start][r.unit] += 1
        deltas.setdefault(r.end, {}).setdefault(r.unit, 0)
        deltas[r.end][r.unit] -= 1
        started.setdefault(r.start, []).append(r)
    active = dict.fromkeys(UNITS, 0)
    shown = {**{f"{u}_busy": "0" for u in UNITS}, **{f"{u}_instr": "b0" for u in UNITS}, "pc": "b0"}
    pc = 0
    body = []
    for cycle in sorted(deltas):
        now = dict(shown)
        for unit, delta in deltas[cycle].items():
            active[unit] += delta
            now[f"{unit}_busy"] = "1" if active[unit] else "0"
        for r in sorted(started.get(cycle, []), key=lambda r: r.index):
            now[f"{r.unit}_instr"] = f"b{r.index:b}"
            pc = max(pc, r.index)
        now["pc"] = f"b{pc:b}"
        changed = [(name, value) for name, value in now.items() if value != shown[name]]
        if changed:
            body.append(f"#{cycle * period}")
            body += [f"{value} {ids[name]}" if value.startswith("b") else f"{value}{ids[name]}" for name, value in changed]
        shown = now
    return "\n".join(head + body) + "\n"
