"""What the timing model needs to know about an instruction besides its cycles: its unit, the buffer
words it reads and writes, whether a batch reloads it, and how a MAC splits over free PEs.

Shared by both cycle simulators (``simulator_reference`` steps the clock, ``simulator`` computes
closed forms): this module is the definition of the machine's structure, docs/runtime.md "Timing
model". The simulators differ in *how* they find conflicts and times (the reference compares every
pair of instructions and steps cycles; the fast path keeps per-word last-access times).

Units. The DMA engine executes LDW, LDB, LDN and STN in program order; the PE array (with the
distribution network, the requantiser and the pooling unit, one instruction at a time) executes the
rest in program order. The two run concurrently. An instruction starts once its unit is free and
every earlier instruction it conflicts with has finished: one that writes a buffer word it reads or
writes, or reads a word it writes (RAW, WAW, WAR on the weight, bias and neuron buffers; the PE
array's own registers, local memories and accumulators are touched by the PE array only, so program
order covers them). END, and any instruction this model does not know, is a barrier: it waits for
everything before it, and everything after it waits for it.

Weights resident. A LDW or LDB whose destination words no other instruction of the program writes
holds the same words at the end of an inference as at its start (the images do not change within a
batch), so in a batch of ``B`` inferences it runs in the first inference only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from axtrain.formats.arch import Architecture
from axtrain.formats.isa import ACC_OUT_WORD_BYTES, BIAS_WORD_BYTES, REQUANT_ENTRY_WORDS, Geometry, Instruction, pool_output_shape
from axtrain.runtime.events import Events

DMA_OPS = frozenset({"LDW", "LDB", "LDQ", "LDN", "STN", "STA"})
#: Instructions of the PE array whose footprint this model knows; any other is a barrier.
PE_OPS = frozenset({"MODE", "CONV", "DISTW", "DISTN", "MAC", "RELU", "REQ", "POOL", "AVGPOOL", "ADD", "SYNC"})
BUFFERS = ("WB", "BB", "NB", "RQ", "ACC")  # RQ: the requant table; ACC: the PE accumulators (STA reads them)

Span = tuple[str, int, int]  # (buffer, first word, end word)


@dataclass(frozen=True)
class Footprint:
    """The buffer words an instruction reads and writes (``[first, end)`` spans) and whether it is a barrier."""

    reads: tuple[Span, ...] = ()
    writes: tuple[Span, ...] = ()
    barrier: bool = False


def unit_of(op: str) -> str:
    """``dma`` or ``pe``."""
    return "dma" if op in DMA_OPS else "pe"


def footprint(ins: Instruction, geometry: Geometry | None) -> Footprint:
    """The weight-, bias- and neuron-buffer words ``ins`` touches (``geometry``: the CONV in effect)."""
    o = ins.operands()
    op = ins.op
    if op == "LDW":
        return Footprint(writes=(("WB", o["wb"], o["wb"] + o["rows"] * o["cols"]),))
    if op == "LDB":
        return Footprint(writes=(("BB", o["bb"], o["bb"] + o["count"]),))
    if op == "LDQ":
        return Footprint(writes=(("RQ", o["qa"], o["qa"] + o["count"]),))
    if op == "STA":  # the accumulators of the tile the PE array computed: waits for its MAC chain
        return Footprint(reads=(("ACC", 0, o["m"] * o["p"]),))
    if op == "LDN":
        return Footprint(writes=(("NB", o["nb"], o["nb"] + o["count"]),))
    if op == "STN":
        return Footprint(reads=(("NB", o["nb"], o["nb"] + o["count"]),))
    if op in ("MODE", "CONV", "RELU", "SYNC"):
        return Footprint()
    if op == "DISTW":
        return Footprint(reads=(("WB", o["wb"], o["wb"] + (o["m"] - 1) * o["stride"] + o["k"]),))
    if op == "DISTN":
        assert geometry is not None, "DISTN before CONV (check_program refuses this)"
        return Footprint(reads=(("NB", o["nb"], o["nb"] + geometry.c * geometry.h * geometry.w),))
    if op == "MAC":
        acc = (("ACC", 0, o["m"] * o["p"]),)  # a later STA reads them; an STA before it must finish first
        return Footprint(reads=(("BB", o["bb"], o["bb"] + o["m"]),) if o["init"] else (), writes=acc)
    if op == "REQ":
        table = (("RQ", o["qa"], o["qa"] + o["m"]),) if o["rq"] else ()
        return Footprint(reads=table, writes=(("NB", o["nb"], o["nb"] + (o["m"] - 1) * o["ostride"] + o["p"]),))
    if op in ("POOL", "AVGPOOL"):
        oh, ow = pool_output_shape(o)
        c, h, w = o["c"], o["h"], o["w"]
        return Footprint(reads=(("NB", o["src"], o["src"] + c * h * w),), writes=(("NB", o["dst"], o["dst"] + c * oh * ow),))
    if op == "ADD":
        n = o["count"]
        return Footprint(reads=(("NB", o["a"], o["a"] + n), ("NB", o["b"], o["b"] + n)), writes=(("NB", o["dst"], o["dst"] + n),))
    return Footprint(barrier=True)  # END, and instructions this model does not know


def footprints(program: Sequence[Instruction]) -> list[Footprint]:
    """:func:`footprint` of every instruction, tracking the CONV geometry in program order."""
    geometry: Geometry | None = None
    out = []
    for ins in program:
        if ins.op == "CONV":
            geometry = Geometry(**ins.operands())
        out.append(footprint(ins, geometry))
    return out


def _overlap(a: Span, b: Span) -> bool:
    return a[0] == b[0] and a[1] < a[2] and b[1] < b[2] and a[1] < b[2] and b[1] < a[2]


def conflicts(earlier: Footprint, later: Footprint) -> bool:
    """Whether ``later`` must wait for ``earlier`` (a barrier either side, RAW, WAW or WAR)."""
    if earlier.barrier or later.barrier:
        return True
    return any(_overlap(w, x) for w in earlier.writes for x in (*later.reads, *later.writes)) or any(
        _overlap(r, w) for r in earlier.reads for w in later.writes
    )


def resident_loads(program: Sequence[Instruction]) -> frozenset[int]:
    """Indices of the LDW/LDB/LDQ whose words no other instruction writes: loaded once per batch. A
    program with an instruction this model does not know (other than END) keeps nothing resident."""
    prints = footprints(program)
    if any(fp.barrier and ins.op != "END" for ins, fp in zip(program, prints, strict=True)):
        return frozenset()
    spans = [span for fp in prints for span in fp.writes if span[0] in ("WB", "BB", "RQ")]
    size = 1 + max((end for _, _, end in spans), default=0)
    times: dict[str, np.ndarray] = {}
    for buffer in ("WB", "BB", "RQ"):
        diff = np.zeros(size + 1, dtype=np.int64)  # difference array: how many writes cover each word
        for b, first, end in spans:
            if b == buffer:
                diff[first] += 1
                diff[end] -= 1
        times[buffer] = np.cumsum(diff)
    resident = set()
    for index, (ins, fp) in enumerate(zip(program, prints, strict=True)):
        if ins.op in ("LDW", "LDB", "LDQ") and fp.writes and all(end > first and int(times[b][first:end].max()) == 1 for b, first, end in fp.writes):
            resident.add(index)
    return frozenset(resident)


def dram_transfer(ins: Instruction, arch: Architecture) -> tuple[int, int]:
    """``(useful bytes, bytes on the bus)`` of a DMA instruction: the bus moves whole bursts."""
    o = ins.operands()
    if ins.op == "LDW":
        nbytes = o["rows"] * o["cols"] * arch.weight_word_bytes
    elif ins.op == "LDB":
        nbytes = o["count"] * BIAS_WORD_BYTES
    elif ins.op == "LDQ":
        nbytes = o["count"] * REQUANT_ENTRY_WORDS * BIAS_WORD_BYTES
    elif ins.op == "STA":
        nbytes = o["m"] * o["p"] * ACC_OUT_WORD_BYTES
    else:
        nbytes = o["count"] * arch.neuron_word_bytes
    bursts = -(-nbytes // arch.dram_burst_bytes)
    return nbytes, bursts * arch.dram_burst_bytes


def synapse_split(m: int, p: int, k: int, arch: Architecture) -> int:
    """How many PEs share one dot product of a ``m x p`` MAC tile (synapse parallelism): the free PEs
    of the array are given to the tile's dot products, each split into up to ``k`` interleaved parts
    whose partial sums an adder tree adds (1 when the architecture turns it off or no PE is free)."""
    if not arch.synapse_parallelism:
        return 1
    return max(1, min(k, arch.pe_count // (m * p)))


def tree_depth(split: int) -> int:
    """Adder-tree levels that reduce ``split`` partial sums to one."""
    return math.ceil(math.log2(split)) if split > 1 else 0


def mac_cycles(m: int, p: int, k: int, arch: Architecture) -> int:
    """Cycles of a MAC: pipeline fill, ``ceil(k / split)`` multiply-accumulate steps, the adder tree."""
    split = synapse_split(m, p, k, arch)
    return arch.pe_pipeline_fill_cycles + -(-k // split) + tree_depth(split)


@dataclass
class MachineRun:
    """Events of a batch: the whole batch (``total``) and per layer (key: the layer's index in the
    bundle's layer table, -1 for instructions outside every layer), plus the latency of the first
    inference (one inference alone: nothing overlaps it but itself)."""

    batch: int
    total: Events
    layers: dict[int, Events] = field(default_factory=dict)
    first_inference_cycles: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "batch": self.batch,
            "first_inference_cycles": self.first_inference_cycles,
            "total": self.total.as_dict(),
            "layers": {str(k): v.as_dict() for k, v in sorted(self.layers.items())},
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MachineRun) and self.as_dict() == other.as_dict()
