"""Reference cycle simulator: steps the clock one cycle at a time through the instruction stream.

The living definition of the timing model (docs/runtime.md "Timing model"). Two units run at once,
each a queue of its instructions in program order (runtime/timing.py): the DMA engine issues one
DRAM request per cycle, each request's data arrives ``dram_latency_cycles`` after it is issued and
the bus moves ``dram_bandwidth`` bytes per cycle of whole bursts, one request's data after the
other's, so the latency of a request overlaps the data of the ones before it (latency per burst
stream, not per instruction); the PE array runs one instruction at a time, each a small state
machine (a generator) doing one cycle of work per step. An instruction starts at the first cycle at
which its unit is free and every earlier instruction it conflicts with (found here by comparing it
with every earlier one) has finished: DRAM transfers prefetch while the PEs compute, as far as the
buffers allow. Each cycle is charged to one instruction: the PE array's while it is busy
(``compute``), else the instruction whose data is on the bus (``transfer``), else the next PE-array
instruction, which is waiting (``stall``). A batch runs its inferences one after the other (END is
a barrier), the resident loads in the first one only.

Slow on purpose; :mod:`axtrain.runtime.simulator` computes the same counts in closed form and a
parametrised test requires equality on every case. Nothing here depends on data values: the ISA has
no data-dependent control flow and the model does no zero skipping, so the counts of one inference
hold for every input.
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Callable, Iterator, Sequence

from axtrain.formats.arch import Architecture
from axtrain.formats.isa import ACC_OUT_WORD_BYTES, BIAS_WORD_BYTES, REQUANT_ENTRY_WORDS, Geometry, Instruction, mode_of_code, pool_output_shape
from axtrain.hwmodels.multipliers import MultiplierMode
from axtrain.runtime.events import Events, InstructionContext, access_key, instruction_context, multiply_key, voltage_key
from axtrain.runtime.overrides import override_program
from axtrain.runtime.timing import MachineRun, conflicts, footprints, resident_loads, synapse_split, tree_depth, unit_of

Step = Iterator[bool]  # one next() per cycle of work; True on the instruction's last cycle


class ReferenceSimulator:
    """One machine; :meth:`run_batch` executes a batch of inferences and returns its events,
    :meth:`run` one inference. After a run, :attr:`spans` holds ``(index, start, end)`` for every
    instruction executed (the index into the program, cycles ``[start, end)``), in the order they
    started; ``axtrain trace`` reads it."""

    def __init__(self, arch: Architecture, context: InstructionContext) -> None:
        self.arch = arch
        self.context = context
        self.mode_table = [0] * arch.bias_buffer_words
        self.geometry: Geometry | None = None
        self.spans: list[tuple[int, int, int]] = []
        self.layers: dict[int, Events] = defaultdict(Events)
        # Words each buffer port moves per cycle (at least one).
        self.wb_words_per_cycle = max(1, arch.weight_buffer_bandwidth // arch.weight_word_bytes)
        self.nb_words_per_cycle = max(1, arch.neuron_buffer_bandwidth // arch.neuron_word_bytes)

    # -- bookkeeping ----------------------------------------------------------------------------------

    def _ev(self, index: int) -> Events:
        return self.layers[self.context.layer_of(index)]

    def _read(self, index: int, memory: str, words: int, weight_memory: bool = False) -> None:
        v = self.context.voltages[index] if weight_memory else self.context.nominal_voltage
        self._ev(index).reads[access_key(memory, v)] += words

    def _write(self, index: int, memory: str, words: int, weight_memory: bool = False) -> None:
        v = self.context.voltages[index] if weight_memory else self.context.nominal_voltage
        self._ev(index).writes[access_key(memory, v)] += words

    def _charge(self, index: int, op: str, kind: str) -> None:
        ev = self._ev(index)
        ev.cycles += 1
        setattr(ev, kind, getattr(ev, kind) + 1)
        ev.cycles_by_op[op] += 1
        ev.cycles_by_voltage[voltage_key(self.context.voltages[index])] += 1

    def run(self, program: Sequence[Instruction]) -> Events:
        """Step one inference of ``program`` (the context's multiplier override applied); its events."""
        return self.run_batch(program, 1).total

    def run_batch(self, program: Sequence[Instruction], batch: int) -> MachineRun:
        """Step ``batch`` inferences of ``program`` back to back, cycle by cycle."""
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        program = override_program(program, self.context.mode_override)
        prints = footprints(program)
        resident = resident_loads(program)
        # The stream: (inference, index); later inferences leave the resident loads out.
        stream = [(b, i) for b in range(batch) for i in range(len(program)) if b == 0 or i not in resident]
        # Dependencies by comparing every pair of one inference (END separates inferences: a barrier).
        deps: list[list[int]] = []
        barrier = -1
        start_of = 0
        for pos, (b, i) in enumerate(stream):
            if pos and stream[pos - 1][0] != b:
                start_of = pos
            mine = [q for q in range(start_of, pos) if conflicts(prints[stream[q][1]], prints[i])]
            if barrier >= 0:
                mine.append(barrier)
            deps.append(mine)
            if prints[i].barrier:
                barrier = pos
        ends: dict[int, int] = {}
        pe_queue = deque(pos for pos, (_, i) in enumerate(stream) if unit_of(program[i].op) == "pe")
        dma_queue = deque(pos for pos, (_, i) in enumerate(stream) if unit_of(program[i].op) == "dma")
        pe_now: tuple[int, Step] | None = None
        in_flight: deque[tuple[int, int, Step]] = deque()  # (pos, first data cycle, data steps)
        starts: dict[int, int] = {}
        first_inference_end = 0
        first_count = sum(1 for b, _ in stream if b == 0)  # positions 0 .. first_count - 1
        first_done = 0
        last_pos = len(stream) - 1

        def ready(pos: int, t: int) -> bool:
            return all(q in ends and ends[q] <= t for q in deps[pos])

        def begin(pos: int, t: int) -> int:
            i = stream[pos][1]
            starts[pos] = t
            self._ev(i).instructions[program[i].op] += 1
            return i

        def finish(pos: int, t: int) -> None:
            nonlocal first_done
            ends[pos] = t + 1
            first_done += pos < first_count
            self.spans.append((stream[pos][1], starts[pos], t + 1))

        t = 0
        while len(ends) < len(stream):
            # Issue: at most one DRAM request and one PE-array instruction start in a cycle.
            if dma_queue and ready(dma_queue[0], t):
                pos = dma_queue.popleft()
                i = begin(pos, t)
                steps = self._dram(i, program[i])
                if steps is None:
                    finish(pos, t)  # nothing to move: the issue cycle
                else:
                    in_flight.append((pos, t + self.arch.dram_latency_cycles, steps))
            if pe_now is None and pe_queue and ready(pe_queue[0], t):
                pos = pe_queue.popleft()
                i = begin(pos, t)
                pe_now = (pos, self._machine(i, program[i]))
            # Work: one cycle of the PE array's instruction and of the bus.
            charged = False
            if pe_now is not None:
                pos, steps = pe_now
                i = stream[pos][1]
                self._charge(i, program[i].op, "compute_cycles")
                charged = True
                if next(steps):
                    finish(pos, t)
                    pe_now = None
            if in_flight and in_flight[0][1] <= t:
                pos, _, steps = in_flight[0]
                i = stream[pos][1]
                if not charged:
                    self._charge(i, program[i].op, "transfer_cycles")
                    charged = True
                if next(steps):
                    finish(pos, t)
                    in_flight.popleft()
            if not charged:
                waiting = stream[pe_queue[0]][1] if pe_queue else stream[last_pos][1]
                self._charge(waiting, program[waiting].op, "stall_cycles")
            t += 1
            if not first_inference_end and first_done == first_count:
                first_inference_end = t
        layers = dict(sorted(self.layers.items()))
        total = Events()
        for ev in layers.values():
            total = total + ev
        return MachineRun(batch, total, layers, first_inference_end)

    # -- the state machines -----------------------------------------------------------------------------

    def _dram(self, index: int, ins: Instruction) -> Step | None:
        """The data phase of a DRAM transfer (None: nothing to move). The bus moves whole bursts;
        ``on_words(n)`` records the buffer side of the ``n`` useful words completed in a cycle."""
        o = ins.operands()
        a = self.arch
        on_words: Callable[[int], None]
        if ins.op == "LDW":
            words, word_bytes = o["rows"] * o["cols"], a.weight_word_bytes
            on_words = lambda n: self._write(index, "weight_buffer", n, True)  # noqa: E731
        elif ins.op == "LDB":
            words, word_bytes = o["count"], BIAS_WORD_BYTES
            on_words = lambda n: self._write(index, "bias_buffer", n)  # noqa: E731
        elif ins.op == "LDQ":  # requant entries: 3 bias-buffer-class words each
            words, word_bytes = REQUANT_ENTRY_WORDS * o["count"], BIAS_WORD_BYTES
            on_words = lambda n: self._write(index, "bias_buffer", n)  # noqa: E731
        elif ins.op == "STA":  # 32-bit accumulator words to DRAM, nothing read from a buffer
            words, word_bytes = o["m"] * o["p"], ACC_OUT_WORD_BYTES
            on_words = lambda n: None  # noqa: E731
        elif ins.op == "LDN":
            words, word_bytes = o["count"], a.neuron_word_bytes
            on_words = lambda n: self._write(index, "neuron_buffer", n)  # noqa: E731
        else:
            words, word_bytes = o["count"], a.neuron_word_bytes
            on_words = lambda n: self._read(index, "neuron_buffer", n)  # noqa: E731
        useful = words * word_bytes
        if useful == 0:
            return None
        bursts = -(-useful // a.dram_burst_bytes)
        return self._bus(index, ins.op not in ("STN", "STA"), useful, bursts * a.dram_burst_bytes, word_bytes, on_words)

    def _bus(self, index: int, read: bool, useful: int, total: int, word_bytes: int, on_words: Callable[[int], None]) -> Step:
        ev = self._ev(index)
        moved = done = 0
        while moved < total:
            step = min(self.arch.dram_bandwidth, total - moved)
            moved += step
            if read:
                ev.dram_read_bytes += step
            else:
                ev.dram_write_bytes += step
            now = min(moved, useful) // word_bytes
            on_words(now - done)
            done = now
            yield moved >= total

    def _machine(self, index: int, ins: Instruction) -> Step:
        o = ins.operands()
        op = ins.op
        ev = self._ev(index)
        if op == "MODE":
            for i in range(o["count"]):
                self.mode_table[o["mt"] + i] = o["code"]
            yield True
        elif op == "CONV":
            self.geometry = Geometry(**o)
            yield True
        elif op == "DISTW":
            yield from self._distw(index, o)
        elif op == "DISTN":
            yield from self._distn(index, o)
        elif op == "MAC":
            yield from self._mac(index, o)
        elif op == "RELU":
            ev.comparisons += o["m"] * o["p"]
            yield True
        elif op == "REQ":
            remaining = o["m"] * o["p"]
            if o["rq"]:
                for _row in range(o["m"]):  # each output neuron's (M, n, z), read as its outputs stream
                    self._read(index, "bias_buffer", REQUANT_ENTRY_WORDS)
                ev.requant_multiplies += remaining
            while True:
                n = min(self.nb_words_per_cycle, remaining)
                self._write(index, "neuron_buffer", n)
                ev.requantizations += n
                remaining -= n
                yield remaining == 0
                if remaining == 0:
                    break
        elif op in ("POOL", "AVGPOOL"):
            yield from self._pool(index, o, average=op == "AVGPOOL")
        elif op == "ADD":
            yield from self._add(index, o)
        elif op in ("SYNC", "END"):
            for cycle in range(self.arch.pipeline_drain_cycles):  # pipeline drain
                yield cycle == self.arch.pipeline_drain_cycles - 1
        else:  # an instruction this timing model does not know: one cycle, as a barrier
            yield True

    def _distw(self, index: int, o: dict[str, int]) -> Step:
        m, p, k = o["m"], o["p"], o["k"]
        remaining = m * k  # WB words read; each is broadcast to the p PEs of its row
        while True:
            n = min(self.wb_words_per_cycle, remaining)
            self._read(index, "weight_buffer", n, True)
            self._write(index, "weight_local", n * p)
            remaining -= n
            yield remaining == 0
            if remaining == 0:
                break

    def _distn(self, index: int, o: dict[str, int]) -> Step:
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
                iy, ix = oy * g.sh - g.pt + ky, ox * g.sw - g.pl + kx
                if 0 <= iy < g.h and 0 <= ix < g.w:
                    needed.add(o["nb"] + ci * g.h * g.w + iy * g.w + ix)
        remaining = len(needed)
        local_words = o["m"] * o["p"] * o["k"]
        self._write(index, "neuron_local", local_words)  # written as the words arrive (all PEs in parallel)
        while True:
            n = min(self.nb_words_per_cycle, remaining)
            self._read(index, "neuron_buffer", n)
            remaining -= n
            yield remaining == 0
            if remaining == 0:
                break

    def _mac(self, index: int, o: dict[str, int]) -> Step:
        """Fill the pipeline; then each of the tile's dot products runs on ``split`` PEs (PE ``j`` of a
        dot product takes products ``j, j + split, ...``), one product per PE per cycle; then the
        adder tree halves the partial sums level by level into the accumulator."""
        m, p, k = o["m"], o["p"], o["k"]
        ev = self._ev(index)
        modes: list[MultiplierMode] = [mode_of_code(self.mode_table[o["mt"] + r]) for r in range(m)]
        bits = self.context.operand_bits[index]
        split = synapse_split(m, p, k, self.arch)
        depth = tree_depth(split)
        if o["init"]:
            self._read(index, "bias_buffer", m)  # one bias per row, broadcast to its p PEs
        steps = -(-k // split)
        for _ in range(self.arch.pe_pipeline_fill_cycles):
            yield False
        for step in range(steps):
            active = min(split, k - step * split)  # products of each dot product this cycle
            for mode in modes:
                ev.multiplies[multiply_key(mode, bits)] += p * active
            ev.additions += m * p * active
            ev.active_pe_cycles += m * p * active
            self._read(index, "weight_local", m * p * active)
            self._read(index, "neuron_local", m * p * active)
            yield step == steps - 1 and depth == 0
        sums = split
        for level in range(depth):
            adds = sums // 2
            ev.partial_sum_additions += m * p * adds
            sums -= adds
            yield level == depth - 1

    def _add(self, index: int, o: dict[str, int]) -> Step:
        # Phase 1: stream both addends out of the neuron buffer while the PE array adds (one sum per
        # PE per cycle; with relu, its comparison); phase 2: write the rounded sums back.
        ev = self._ev(index)
        reads, sums, outputs = 2 * o["count"], o["count"], o["count"]
        while True:
            n = min(self.nb_words_per_cycle, reads)
            s_n = min(self.arch.pe_count, sums)
            self._read(index, "neuron_buffer", n)
            ev.additions += s_n
            ev.requantizations += s_n
            if o["relu"]:
                ev.comparisons += s_n
            reads -= n
            sums -= s_n
            yield False
            if reads == 0 and sums == 0:
                break
        while outputs > 0:
            n = min(self.nb_words_per_cycle, outputs)
            self._write(index, "neuron_buffer", n)
            outputs -= n
            yield outputs == 0

    def _pool(self, index: int, o: dict[str, int], average: bool = False) -> Step:
        ev = self._ev(index)
        oh, ow = pool_output_shape(o)
        outputs = o["c"] * oh * ow
        reads = 0
        for _ in range(o["c"]):  # every window reads the positions it covers inside the map
            for oy in range(oh):
                for ox in range(ow):
                    for ky in range(o["kh"]):
                        for kx in range(o["kw"]):
                            iy, ix = oy * o["sh"] - o["pt"] + ky, ox * o["sw"] - o["pl"] + kx
                            reads += int(0 <= iy < o["h"] and 0 <= ix < o["w"])
        compares = reads - outputs
        # Phase 1: stream the windows out of the neuron buffer while the PE array compares (up to one
        # comparison per PE per cycle; an average: adds); phase 2: write the results back. All reads
        # precede all writes.
        while True:
            n = min(self.nb_words_per_cycle, reads)
            c_n = min(self.arch.pe_count, compares)
            self._read(index, "neuron_buffer", n)
            if average:  # the window's additions; its division and rounding are counted per output
                ev.additions += c_n
            else:
                ev.comparisons += c_n
            reads -= n
            compares -= c_n
            yield False
            if reads == 0 and compares == 0:
                break
        while outputs > 0:
            n = min(self.nb_words_per_cycle, outputs)
            self._write(index, "neuron_buffer", n)
            if average:
                ev.requantizations += n
            outputs -= n
            yield outputs == 0


def simulate_reference(
    program: Sequence[Instruction],
    arch: Architecture,
    context: InstructionContext | None = None,
) -> Events:
    """Events of one inference, stepping the clock (``context`` defaults to nominal voltage, exact
    operand width = neuron word, no override)."""
    context = context or instruction_context(program, arch)
    return ReferenceSimulator(arch, context).run(program)


def simulate_reference_batch(program: Sequence[Instruction], arch: Architecture, context: InstructionContext | None = None, batch: int = 1) -> MachineRun:
    """Events of a batch, per layer and in total, stepping the clock."""
    context = context or instruction_context(program, arch)
    return ReferenceSimulator(arch, context).run_batch(program, batch)
