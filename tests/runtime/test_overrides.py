"""Overrides are one rewrite of the bundle's plan (runtime/overrides.py), applied before execution.

The yardstick for "same results as before": a run of an exact, nominal bundle with ``--multiplier M
--sram-voltage V`` equals a run of the same network *compiled* with M and V as its annotation (no
override, so none of the override code runs), for every mode and voltage: outputs, predictions, fault
maps, events and energy. The one designed difference is the weight-SRAM voltage of the instructions
outside every layer (prologue LDN, epilogue STN/END): nominal in the annotated bundle, V under the
override (docs/runtime.md), which shows in ``cycles_by_voltage`` and the weight buffer's leakage.
"""

from __future__ import annotations

import numpy as np
import pytest

from axtrain.errors import HardwareModelError
from axtrain.formats.isa import mode_code, parse_assembly
from axtrain.hwmodels.multipliers import EXACT, MultiplierMode, parse_mode
from axtrain.hwmodels.ntv import NOMINAL_VOLTAGE
from axtrain.runtime.events import voltage_key
from axtrain.runtime.execute import FastExecutor, place_inputs
from axtrain.runtime.interpreter import ReferenceExecutor, run_program
from axtrain.runtime.overrides import Overrides, apply_overrides, bundle_plan, override_layers, override_program
from axtrain.runtime.simulation import simulate

from .conftest import random_inputs

MODES = ("exact", "drum:1", "drum:2", "drum:3", "drum:4")
VOLTAGES = (None, 0.4, 0.66, 0.85, 1.1)


def test_parse_is_the_edge_and_inside_modes_are_typed() -> None:
    overrides = Overrides.parse("K1", 0.66)
    assert overrides == Overrides(MultiplierMode(1), 0.66) and not overrides.empty
    assert Overrides.parse(None, None).empty and Overrides.parse("exact").multiplier == EXACT
    assert isinstance(Overrides(sram_voltage=1).sram_voltage, float)
    with pytest.raises(TypeError, match="MultiplierMode"):
        Overrides("K1")  # type: ignore[arg-type]
    for bad_mode in ("K9", "drum:0", "fast"):
        with pytest.raises(HardwareModelError, match="multiplier mode|DRUM k"):
            Overrides.parse(bad_mode)
    for bad_voltage in (0.39, 1.2, float("nan")):
        with pytest.raises(HardwareModelError, match="SRAM voltage"):
            Overrides.parse(None, bad_voltage)


def test_program_rewrite_replaces_only_mode_codes() -> None:
    program = parse_assembly("""
        LDB bb=0 dram=0 count=3
        MODE mt=0 count=1 code=0
        MODE mt=1 count=2 code=3
        MAC m=3 p=1 k=1 bb=0 mt=0 init=1
        END
    """)
    assert override_program(program, None) == tuple(program)
    rewritten = override_program(program, parse_mode("drum:2"))
    assert len(rewritten) == len(program)
    assert [ins["code"] for ins in rewritten if ins.op == "MODE"] == [2, 2]
    assert [ins for ins in rewritten if ins.op != "MODE"] == [ins for ins in program if ins.op != "MODE"]
    assert [(ins["mt"], ins["count"]) for ins in rewritten if ins.op == "MODE"] == [(0, 1), (1, 2)]
    assert override_program(rewritten, parse_mode("drum:2")) == rewritten  # idempotent


def test_layer_rewrite(bundle_factory) -> None:
    bundle, _ = bundle_factory("mixed", "tiny")
    layers = override_layers(bundle.layers, Overrides(parse_mode("K3"), 0.5))
    for own, new in zip(bundle.layers, layers, strict=True):
        assert new.sram_voltage == 0.5 and own.sram_voltage == NOMINAL_VOLTAGE
        assert new.multipliers == ["drum:3"] * len(own.multipliers)
        assert new.model_copy(update={"multipliers": own.multipliers, "sram_voltage": own.sram_voltage}) == own
    assert override_layers(bundle.layers, Overrides()) == tuple(bundle.layers)
    plan = bundle_plan(bundle)
    assert plan.program == tuple(bundle.program) and plan.idle_voltage == NOMINAL_VOLTAGE
    assert bundle_plan(bundle, Overrides(sram_voltage=0.7)).idle_voltage == 0.7


def _compare(overridden, annotated, voltage: float | None) -> None:
    assert np.array_equal(overridden.outputs, annotated.outputs)
    assert np.array_equal(overridden.predictions, annotated.predictions)
    assert overridden.per_run_accuracy == annotated.per_run_accuracy
    assert [(r.start, r.count, r.bits, r.voltage, r.p) for r in overridden.regions] == [(r.start, r.count, r.bits, r.voltage, r.p) for r in annotated.regions]
    a, b = overridden.events.as_dict(), annotated.events.as_dict()
    if voltage is None or voltage == NOMINAL_VOLTAGE:
        assert a == b
        assert overridden.energy.as_dict() == annotated.energy.as_dict()
        return
    by_voltage_a, by_voltage_b = a.pop("cycles_by_voltage"), b.pop("cycles_by_voltage")
    assert a == b
    # Annotated: the layers at V, prologue/epilogue at nominal; overridden: every cycle at V.
    assert by_voltage_a == {voltage_key(voltage): a["cycles"]}
    assert set(by_voltage_b) == {voltage_key(voltage), voltage_key(NOMINAL_VOLTAGE)} and sum(by_voltage_b.values()) == b["cycles"]
    assert overridden.energy.compute == annotated.energy.compute and overridden.energy.storage == annotated.energy.storage


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("voltage", VOLTAGES)
def test_override_equals_the_bundle_compiled_with_that_annotation(bundle_factory, mode: str, voltage: float | None) -> None:
    exact, _ = bundle_factory("mlp", "tiny")
    annotated, _ = bundle_factory("mlp", "tiny", modes=(mode,), v=NOMINAL_VOLTAGE if voltage is None else voltage)
    x = random_inputs(exact, 17, seed=4)
    y = np.arange(17) % 5
    overridden = simulate(exact, x, y, multiplier=mode, sram_voltage=voltage, runs=3, seed=11)
    reference = simulate(annotated, x, y, runs=3, seed=11)
    _compare(overridden, reference, voltage)
    assert overridden.mode_override == parse_mode(mode) and overridden.sram_voltage == voltage


def test_per_neuron_modes_are_replaced_by_the_override(bundle_factory) -> None:
    """A bundle with several modes in one layer, overridden: every MAC row runs the override."""
    mixed, _ = bundle_factory("mixed", "default")
    x = random_inputs(mixed, 9, seed=2)
    result = simulate(mixed, x, multiplier="K2")
    assert set(result.events.multiplies) == {"drum:2@8"}
    plan = bundle_plan(mixed, Overrides(parse_mode("K2")))
    executor = FastExecutor(plan.program, mixed.arch)
    assert executor.plan.codes == (2,)
    m = mixed.manifest
    dram = place_inputs(x, m.input.format, m.input.dram, m.activation_words)
    final, _ = executor.run(executor.prepare(mixed.weights, mixed.bias), dram)
    assert np.array_equal(final, run_program(plan.program, mixed.arch, mixed.weights, mixed.bias, dram).dram_a)


@pytest.mark.parametrize("mode", ["exact", "drum:1", "drum:4"])
def test_executors_given_the_override_run_the_rewritten_program(bundle_factory, mode: str) -> None:
    """The convenience ``mode_override`` of each executor is the same rewrite, not a second rule."""
    bundle, _ = bundle_factory("cnn", "tiny", modes=("drum:3",))
    multiplier = parse_mode(mode)
    rewritten = apply_overrides(bundle.program, bundle.layers, Overrides(multiplier)).program
    assert FastExecutor(bundle.program, bundle.arch, multiplier).program == rewritten
    assert ReferenceExecutor(bundle.program, bundle.arch, multiplier).program == rewritten
    assert {ins["code"] for ins in rewritten if ins.op == "MODE"} == {mode_code(multiplier)}
    x = random_inputs(bundle, 5, seed=9)
    m = bundle.manifest
    dram = place_inputs(x, m.input.format, m.input.dram, m.activation_words)
    by_override = run_program(bundle.program, bundle.arch, bundle.weights, bundle.bias, dram, multiplier)
    by_rewrite = run_program(rewritten, bundle.arch, bundle.weights, bundle.bias, dram)
    assert np.array_equal(by_override.dram_a, by_rewrite.dram_a)
