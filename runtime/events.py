"""Event counts of one inference or a batch: what the accelerator did, before any pricing (runtime/energy.py).

Both cycle simulators (``simulator_reference`` steps the clock, ``simulator`` uses closed forms)
return an :class:`Events`; the tests require them to be equal field by field. Counts do not depend
on the data (the ISA has no data-dependent control flow or zero skipping), only on the program, the
architecture and the run configuration (multiplier override, voltages), so one count serves every
input image and every Monte Carlo run.

Keys: memories are ``weight_buffer``, ``neuron_buffer``, ``bias_buffer``, ``weight_local``,
``neuron_local``, each access keyed ``"<memory>@<voltage>V"`` with the voltage printed to 3 decimals;
multiplications are keyed ``"<mode>@<bits>"`` (``exact@8``, ``drum:2@8``: the multiplier and its
operand width).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from axtrain.formats.arch import Architecture
from axtrain.formats.bundle import LayerRecord
from axtrain.formats.isa import Instruction
from axtrain.hwmodels.multipliers import MultiplierMode
from axtrain.hwmodels.ntv import NOMINAL_VOLTAGE
from axtrain.runtime.overrides import Overrides, RunPlan, apply_overrides

MEMORIES = ("weight_buffer", "neuron_buffer", "bias_buffer", "weight_local", "neuron_local")


def voltage_key(voltage: float) -> str:
    """The printed form of a supply voltage used in event keys (3 decimals)."""
    return f"{float(voltage):.3f}"


def access_key(memory: str, voltage: float) -> str:
    """Key of an access count: ``memory@V``."""
    return f"{memory}@{voltage_key(voltage)}V"


def split_access_key(key: str) -> tuple[str, float]:
    """Inverse of :func:`access_key`."""
    memory, volts = key.split("@")
    return memory, float(volts.rstrip("V"))


def multiply_key(mode: MultiplierMode, bits: int) -> str:
    """Key of a multiplication count: ``mode@bits``."""
    return f"{mode}@{int(bits)}"


def split_multiply_key(key: str) -> tuple[str, int]:
    """Inverse of :func:`multiply_key`."""
    mode, bits = key.rsplit("@", 1)
    return mode, int(bits)


@dataclass
class Events:
    """Counts of one inference (one run of the program over one image)."""

    cycles: int = 0
    compute_cycles: int = 0  # cycles the PE array is busy (DRAM transfers overlapping them included)
    transfer_cycles: int = 0  # PE array idle while the DRAM bus moves data (exposed transfer)
    stall_cycles: int = 0  # PE array idle and no data on the bus (DRAM latency, dependencies)
    active_pe_cycles: int = 0  # sum over cycles of PEs doing a multiply-accumulate
    instructions: Counter[str] = field(default_factory=Counter)  # op -> executed instructions
    cycles_by_op: Counter[str] = field(default_factory=Counter)  # op -> cycles charged to it (runtime/timing.py)
    cycles_by_voltage: Counter[str] = field(default_factory=Counter)  # weight-SRAM voltage key -> cycles charged to it
    multiplies: Counter[str] = field(default_factory=Counter)  # "mode@bits" -> products
    additions: int = 0  # accumulator additions (one per product)
    partial_sum_additions: int = 0  # adder-tree additions of split dot products (synapse parallelism)
    comparisons: int = 0  # ReLU and max-pool comparisons
    requantizations: int = 0  # rounding shifts with saturation (REQ)
    requant_multiplies: int = 0  # accumulator x 31-bit multiplier products of table-scaled REQs (rq=1)
    reads: Counter[str] = field(default_factory=Counter)  # "memory@V" -> words read
    writes: Counter[str] = field(default_factory=Counter)  # "memory@V" -> words written
    dram_read_bytes: int = 0
    dram_write_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (plain dicts with sorted keys, zero counts dropped)."""

        def clean(counter: Counter[str]) -> dict[str, int]:
            return {key: int(value) for key, value in sorted(counter.items()) if value}

        return {
            "cycles": int(self.cycles),
            "compute_cycles": int(self.compute_cycles),
            "transfer_cycles": int(self.transfer_cycles),
            "stall_cycles": int(self.stall_cycles),
            "active_pe_cycles": int(self.active_pe_cycles),
            "instructions": clean(self.instructions),
            "cycles_by_op": clean(self.cycles_by_op),
            "cycles_by_voltage": clean(self.cycles_by_voltage),
            "multiplies": clean(self.multiplies),
            "additions": int(self.additions),
            "partial_sum_additions": int(self.partial_sum_additions),
            "comparisons": int(self.comparisons),
            "requantizations": int(self.requantizations),
            "requant_multiplies": int(self.requant_multiplies),
            "reads": clean(self.reads),
            "writes": clean(self.writes),
            "dram_read_bytes": int(self.dram_read_bytes),
            "dram_write_bytes": int(self.dram_write_bytes),
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Events) and self.as_dict() == other.as_dict()

    def __add__(self, other: "Events") -> "Events":
        out = Events()
        for name in _INT_FIELDS:
            setattr(out, name, getattr(self, name) + getattr(other, name))
        for name in _COUNTER_FIELDS:
            setattr(out, name, getattr(self, name) + getattr(other, name))
        return out

    def times(self, n: int) -> "Events":
        """The counts of ``n`` repetitions (``n`` >= 0)."""
        out = Events()
        for name in _INT_FIELDS:
            setattr(out, name, getattr(self, name) * n)
        for name in _COUNTER_FIELDS:
            setattr(out, name, Counter({k: v * n for k, v in getattr(self, name).items() if v * n}))
        return out

    @property
    def macs(self) -> int:
        """All multiplications, any mode."""
        return int(sum(self.multiplies.values()))


_INT_FIELDS = (
    "cycles", "compute_cycles", "transfer_cycles", "stall_cycles", "active_pe_cycles", "additions", "partial_sum_additions",
    "comparisons", "requantizations", "requant_multiplies", "dram_read_bytes", "dram_write_bytes",
)
_COUNTER_FIELDS = ("instructions", "cycles_by_op", "cycles_by_voltage", "multiplies", "reads", "writes")


@dataclass(frozen=True)
class InstructionContext:
    """What an instruction's events depend on besides its operands: its layer's weight-SRAM voltage
    and the operand width of its multipliers.

    ``mode_override`` serves callers that hold a bundle's own program: the cycle simulators apply it
    with :func:`~axtrain.runtime.overrides.override_program` before stepping (a context built from a
    :class:`~axtrain.runtime.overrides.RunPlan` has none: its program is already rewritten)."""

    voltages: tuple[float, ...]  # per instruction: the weight SRAM voltage in effect
    operand_bits: tuple[int, ...]  # per instruction: multiplier operand width (MAC)
    mode_override: MultiplierMode | None = None
    nominal_voltage: float = NOMINAL_VOLTAGE
    layers: tuple[int, ...] = ()  # per instruction: its layer's index in the layer table, -1 outside (empty: all -1)

    def layer_of(self, index: int) -> int:
        """The layer instruction ``index`` belongs to (-1: prologue, epilogue, no layer table)."""
        return self.layers[index] if index < len(self.layers) else -1


def plan_context(plan: RunPlan, arch: Architecture) -> InstructionContext:
    """Per-instruction voltage and operand width of a run plan (``layers[i].program`` ranges).

    An instruction outside every layer's range (the prologue LDN, the epilogue STN/END) runs with the
    weight SRAM at the plan's idle voltage (nominal unless overridden). The operand width of a layer's
    multipliers is the wider of its input and weight formats (a multiplier sized to the layer's
    precision, docs/runtime.md); without a layer table it is the neuron word.
    """
    n = len(plan.program)
    voltages = [plan.idle_voltage] * n
    bits = [arch.neuron_word_bits] * n
    owners = [-1] * n
    for number, layer in enumerate(plan.layers):
        first, end = layer.program
        formats = layer.formats  # typed views of layers.json's text (formats/bundle.py)
        width = formats.input.bits
        if formats.weight is not None:
            width = max(width, formats.weight.bits)
        for index in range(max(0, first), min(n, end)):
            voltages[index] = layer.sram_voltage
            bits[index] = width
            owners[index] = number
    return InstructionContext(tuple(voltages), tuple(bits), layers=tuple(owners))


def instruction_context(
    program: Sequence[Instruction],
    arch: Architecture,
    layers: Sequence[LayerRecord] = (),
    mode_override: MultiplierMode | None = None,
    sram_voltage: float | None = None,
) -> InstructionContext:
    """:func:`plan_context` of ``program`` and ``layers`` under the given overrides, for callers that
    pass the bundle's own program to a simulator (which then applies ``mode_override`` itself)."""
    plan = apply_overrides(program, layers, Overrides(mode_override, sram_voltage))
    return replace(plan_context(plan, arch), mode_override=mode_override)
