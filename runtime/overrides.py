"""Run overrides (``--multiplier``, ``--sram-voltage``) applied once, as a rewrite of the bundle's plan.

A bundle states each layer's multipliers twice over, consistently: as the codes of its MODE
instructions (what the machine executes) and as ``multipliers`` in layers.json (what reports and
energy read); and each layer's weight-SRAM voltage as ``sram_voltage``. An override replaces them for
one run. :func:`apply_overrides` rewrites the program and the layer records *once*, before anything
executes, into a :class:`RunPlan`; the interpreter, the fast executor, both cycle simulators and the
fault model read only that plan and know nothing of overrides. "The override, else the layer's own
setting" is written here and nowhere else.

Semantics (docs/runtime.md, docs/decisions.md 33):

* a multiplier override replaces the code of every MODE instruction (every mode-table entry the
  program writes) and every layer's ``multipliers``: the program then reads exactly as if it had been
  compiled with that mode everywhere, with the same instructions (so the same cycles);
* a voltage override replaces every layer's ``sram_voltage`` and the weight-SRAM voltage of the
  instructions outside every layer (the prologue LDN, the epilogue STN/END), which are otherwise at
  nominal voltage.

Text enters at the edge: :meth:`Overrides.parse` (the CLI and ``simulation.simulate``); inside the
runtime a mode is a :class:`~axtrain.hwmodels.multipliers.MultiplierMode` and a voltage a float.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from axtrain.formats.bundle import Bundle, LayerRecord
from axtrain.formats.isa import Instruction, mode_code
from axtrain.hwmodels.multipliers import MultiplierMode, parse_mode
from axtrain.hwmodels.ntv import NOMINAL_VOLTAGE, bit_error_rate


@dataclass(frozen=True)
class Overrides:
    """What one run replaces in a bundle: a multiplier for every neuron, a weight-SRAM voltage for
    every layer (volts, inside the NTV model's range); ``None`` keeps the bundle's own."""

    multiplier: MultiplierMode | None = None
    sram_voltage: float | None = None

    def __post_init__(self) -> None:
        if self.multiplier is not None and not isinstance(self.multiplier, MultiplierMode):
            raise TypeError(f"Overrides.multiplier must be a MultiplierMode (parse text with Overrides.parse), got {self.multiplier!r}")
        if self.sram_voltage is not None:
            bit_error_rate(self.sram_voltage)  # HardwareModelError outside the NTV model's range
            object.__setattr__(self, "sram_voltage", float(self.sram_voltage))

    @classmethod
    def parse(cls, multiplier: str | MultiplierMode | None = None, sram_voltage: float | None = None) -> "Overrides":
        """The overrides from user input (mode text such as ``K2`` or ``drum:3``); an unknown mode or
        a voltage outside the NTV model is a one-line HardwareModelError."""
        return cls(None if multiplier is None else parse_mode(multiplier), sram_voltage)

    @property
    def empty(self) -> bool:
        """Whether the run keeps every setting of the bundle."""
        return self.multiplier is None and self.sram_voltage is None


NO_OVERRIDES = Overrides()


@dataclass(frozen=True)
class RunPlan:
    """A bundle's program and layer table as one run executes them (overrides applied).

    ``idle_voltage`` is the weight-SRAM voltage of instructions outside every layer's range."""

    program: tuple[Instruction, ...]
    layers: tuple[LayerRecord, ...]
    idle_voltage: float
    overrides: Overrides = NO_OVERRIDES


def override_program(program: Sequence[Instruction], multiplier: MultiplierMode | None) -> tuple[Instruction, ...]:
    """``program`` with every MODE instruction's code replaced by ``multiplier``'s (unchanged if None).

    Idempotent; every other instruction is kept as it is, so cycle counts do not change."""
    if multiplier is None:
        return tuple(program)
    code = mode_code(multiplier)
    return tuple(
        Instruction.of("MODE", mt=ins["mt"], count=ins["count"], code=code) if ins.op == "MODE" and ins["code"] != code else ins
        for ins in program
    )


def override_layers(layers: Sequence[LayerRecord], overrides: Overrides) -> tuple[LayerRecord, ...]:
    """The layer records with ``overrides`` applied (multipliers per neuron, weight-SRAM voltage)."""
    out = []
    for layer in layers:
        update: dict[str, object] = {}
        if overrides.multiplier is not None and layer.multipliers:
            update["multipliers"] = [str(overrides.multiplier)] * len(layer.multipliers)
        if overrides.sram_voltage is not None:
            update["sram_voltage"] = overrides.sram_voltage
        out.append(layer.model_copy(update=update) if update else layer)
    return tuple(out)


def apply_overrides(program: Sequence[Instruction], layers: Sequence[LayerRecord], overrides: Overrides = NO_OVERRIDES) -> RunPlan:
    """The one rewrite: the program and layer table a run with ``overrides`` executes."""
    idle = NOMINAL_VOLTAGE if overrides.sram_voltage is None else overrides.sram_voltage
    return RunPlan(override_program(program, overrides.multiplier), override_layers(layers, overrides), idle, overrides)


def bundle_plan(bundle: Bundle, overrides: Overrides = NO_OVERRIDES) -> RunPlan:
    """:func:`apply_overrides` of a loaded bundle's program and layer table."""
    return apply_overrides(bundle.program, bundle.layers, overrides)
