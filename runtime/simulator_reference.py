"""Reference cycle simulator: steps the clock one cycle at a time through the instruction stream.

The living definition of the timing model (docs/runtime.md). Each instruction becomes a small
state machine (a generator) that does one cycle of work per step: a DRAM channel that waits out its
latency and then moves ``dram_bandwidth`` bytes per cycle, buffer ports that move a fixed number of
words per cycle, a PE array that performs one multiply-accumulate per active PE per cycle. Events
are counted as they happen, cycle by cycle. Instructions do not overlap (ISA v1: each completes
before the next starts), so there is one state machine at a time.

Slow on purpose; :mod:`axtrain.runtime.simulator` computes the same counts in closed form and a
parametrised test requires equality on every case. Nothing here depends on data values: the ISA has
no data-dependent control flow and the model does no zero skipping, so the counts of one inference
hold for every input.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

from axtrain.formats.arch import Architecture
from axtrain.formats.isa import ACC_OUT_WORD_BYTES, BIAS_WORD_BYTES, REQUANT_ENTRY_WORDS, Geometry, Instruction, mode_of_code, pool_output_size
from axtrain.hwmodels.multipliers import MultiplierMode
from axtrain.runtime.events import Events, InstructionContext, access_key, instruction_context, multiply_key, voltage_key
from axtrain.runtime.overrides import override_program


class ReferenceSimulator:
    """One machine; :meth:`run` executes a program and returns its :class:`Events`."""

    def __init__(self, arch: Architecture, context: InstructionContext) -> None:
        self.arch = arch
        self.context = context
        self.events = Events()
        self.mode_table = [0] * arch.bias_buffer_words
        self.geometry: Geometry | None = None
        self.index = 0
        # Words each buffer port moves per cycle (at least one).
        self.wb_words_per_cycle = max(1, arch.weight_buffer_bandwidth // arch.weight_word_bytes)
        self.nb_words_per_cycle = max(1, arch.neuron_buffer_bandwidth // arch.neuron_word_bytes)

    # -- bookkeeping ----------------------------------------------------------------------------------

    @property
    def _voltage(self) -> float:
        return self.context.voltages[self.index]

    def _read(self, memory: str, words: int, weight_memory: bool = False) -> None:
        v = self._voltage if weight_memory else self.context.nominal_voltage
        self.events.reads[access_key(memory, v)] += words

    def _write(self, memory: str, words: int, weight_memory: bool = False) -> None:
        v = self._voltage if weight_memory else self.context.nominal_voltage
        self.events.writes[access_key(memory, v)] += words

    def run(self, program: Sequence[Instruction]) -> Events:
        """Step through ``program`` (the context's multiplier override applied) until END; returns the events."""
        for index, ins in enumerate(override_program(program, self.context.mode_override)):
            self.index = index
            self.events.instructions[ins.op] += 1
            for _ in self._machine(ins):
                # One clock cycle has passed.
                self.events.cycles += 1
                self.events.cycles_by_op[ins.op] += 1
                self.events.cycles_by_voltage[voltage_key(self._voltage)] += 1
            if ins.op == "END":
                break
        return self.events

    # -- the state machines -----------------------------------------------------------------------------

    def _machine(self, ins: Instruction) -> Iterator[None]:
        o = ins.operands()
        op = ins.op
        a = self.arch
        if op == "LDW":
            words = o["rows"] * o["cols"]
            yield from self._dram(words, a.weight_word_bytes, lambda n: self._write("weight_buffer", n, True), read=True)
        elif op == "LDB":
            yield from self._dram(o["count"], BIAS_WORD_BYTES, lambda n: self._write("bias_buffer", n), read=True)
        elif op == "LDQ":  # requant entries: 3 bias-buffer-class words each
            yield from self._dram(REQUANT_ENTRY_WORDS * o["count"], BIAS_WORD_BYTES, lambda n: self._write("bias_buffer", n), read=True)
        elif op == "LDN":
            yield from self._dram(o["count"], a.neuron_word_bytes, lambda n: self._write("neuron_buffer", n), read=True)
        elif op == "STN":
            yield from self._dram(o["count"], a.neuron_word_bytes, lambda n: self._read("neuron_buffer", n), read=False)
        elif op == "STA":  # accumulators to DRAM, 32-bit words, nothing read from a buffer
            yield from self._dram(o["m"] * o["p"], ACC_OUT_WORD_BYTES, lambda n: None, read=False)
        elif op == "MODE":
            for i in range(o["count"]):
                self.mode_table[o["mt"] + i] = o["code"]
            yield
        elif op == "CONV":
            self.geometry = Geometry(**o)
            yield
        elif op == "DISTW":
            yield from self._distw(o)
        elif op == "DISTN":
            yield from self._distn(o)
        elif op == "MAC":
            yield from self._mac(o)
        elif op == "RELU":
            self.events.comparisons += o["m"] * o["p"]
            yield
        elif op == "REQ":
            remaining = o["m"] * o["p"]
            if o["rq"]:
                for _row in range(o["m"]):  # each output neuron's (M, n, z), read as its outputs stream
                    self._read("bias_buffer", REQUANT_ENTRY_WORDS)
                self.events.requant_multiplies += remaining
            while True:
                n = min(self.nb_words_per_cycle, remaining)
                self._write("neuron_buffer", n)
                self.events.requantizations += n
                remaining -= n
                yield
                if remaining == 0:
                    break
        elif op == "POOL":
            yield from self._pool(o)
        elif op in ("SYNC", "END"):
            yield  # pipeline drain
        else:  # pragma: no cover - every opcode is handled above
            raise AssertionError(op)

    def _dram(self, words: int, word_bytes: int, on_words: Callable[[int], None], read: bool) -> Iterator[None]:
        """A DRAM transfer of ``words`` words: latency cycles (stalls), then bandwidth-limited bytes.
        ``on_words(n)`` records the buffer side of the ``n`` words completed in a cycle."""
        total = words * word_bytes
        if total == 0:
            yield  # nothing to request: one issue cycle
            return
        for _ in range(self.arch.dram_latency_cycles):
            self.events.stall_cycles += 1
            yield
        moved = done = 0
        while moved < total:
            step = min(self.arch.dram_bandwidth, total - moved)
            moved += step
            if read:
                self.events.dram_read_bytes += step
            else:
                self.events.dram_write_bytes += step
            now = moved // word_bytes
            on_words(now - done)
            done = now
            yield

    def _distw(self, o: dict[str, int]) -> Iterator[None]:
        m, p, k = o["m"], o["p"], o["k"]
        remaining = m * k  # WB words read; each is broadcast to the p PEs of its row
        while True:
            n = min(self.wb_words_per_cycle, remaining)
            self._read("weight_buffer", n, True)
            self._write("weight_local", n * p)
            remaining -= n
            yield
            if remaining == 0:
                break

    def _distn(self, o: dict[str, int]) -> Iterator[None]:
        g = self.geometry
        assert g is not None, "DISTN before CONV (check_program refuses this)"
        # The distinct neuron-buffer words the tile needs (padding positions read nothing), walked
        # PE by PE, word by word, as the interpreter fills the local memories.
        needed: set[int] = set()
        for e in range(o["m"] * o["p"]):
            q = o["p0"] + e % o["p"]
            oy, ox = divmod(q, g.ow)
            for i in range(o["k"]):
                j = o["k0"] + i
                ci, rem = divmod(j, g.kh * g.kw)
                ky, kx = divmod(rem, g.kw)
                iy, ix = oy * g.stride - g.pad + ky, ox * g.stride - g.pad + kx
                if 0 <= iy < g.h and 0 <= ix < g.w:
                    needed.add(o["nb"] + ci * g.h * g.w + iy * g.w + ix)
        remaining = len(needed)
        local_words = o["m"] * o["p"] * o["k"]
        self._write("neuron_local", local_words)  # written as the words arrive (all PEs in parallel)
        while True:
            n = min(self.nb_words_per_cycle, remaining)
            self._read("neuron_buffer", n)
            remaining -= n
            yield
            if remaining == 0:
                break

    def _mac(self, o: dict[str, int]) -> Iterator[None]:
        m, p, k = o["m"], o["p"], o["k"]
        modes: list[MultiplierMode] = [mode_of_code(self.mode_table[o["mt"] + r]) for r in range(m)]
        bits = self.context.operand_bits[self.index]
        if o["init"]:
            self._read("bias_buffer", m)  # one bias per row, broadcast to its p PEs
        for _ in range(k):
            # Every PE of the tile multiplies one pair and accumulates it this cycle.
            for mode in modes:
                self.events.multiplies[multiply_key(mode, bits)] += p
            self.events.additions += m * p
            self.events.active_pe_cycles += m * p
            self._read("weight_local", m * p)
            self._read("neuron_local", m * p)
            yield

    def _pool(self, o: dict[str, int]) -> Iterator[None]:
        c, h, w, k, s = o["c"], o["h"], o["w"], o["k"], o["s"]
        outputs = c * pool_output_size(h, k, s) * pool_output_size(w, k, s)
        reads, compares = outputs * k * k, outputs * (k * k - 1)
        # Phase 1: stream the windows out of the neuron buffer while the PE array compares (up to one
        # comparison per PE per cycle); phase 2: write the maxima back. All reads precede all writes.
        while True:
            n = min(self.nb_words_per_cycle, reads)
            c_n = min(self.arch.pe_count, compares)
            self._read("neuron_buffer", n)
            self.events.comparisons += c_n
            reads -= n
            compares -= c_n
            yield
            if reads == 0 and compares == 0:
                break
        while outputs > 0:
            n = min(self.nb_words_per_cycle, outputs)
            self._write("neuron_buffer", n)
            outputs -= n
            yield


def simulate_reference(
    program: Sequence[Instruction],
    arch: Architecture,
    context: InstructionContext | None = None,
) -> Events:
    """Events of one inference, stepping the clock (``context`` defaults to nominal voltage, exact
    operand width = neuron word, no override)."""
    context = context or instruction_context(program, arch)
    return ReferenceSimulator(arch, context).run(program)
