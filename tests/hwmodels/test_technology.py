"""The technology table: the gate-count model and voltage scaling (its files: tests/formats/test_technology.py)."""

from __future__ import annotations

import itertools

import pytest
from pydantic import ValidationError

from axtrain.errors import HardwareModelError
from axtrain.hwmodels.technology import DEFAULT_65NM, TechnologyTable


def test_every_field_is_a_float_with_unit_and_source() -> None:
    for name, info in TechnologyTable.model_fields.items():
        assert info.annotation is float, name
        assert info.description and len(info.description) > 30, name
        assert any(unit in info.description for unit in ("pJ", "pW", "Hz", " V", "GE", "decades/V")), name


def test_calibration_points() -> None:
    t = DEFAULT_65NM
    # Horowitz 45 nm 0.2 pJ (8-bit) scaled to 65 nm 1.1 V; n^2 law gives 4x at 16 bits.
    assert t.multiplier_energy("exact", 8) == pytest.approx(0.2e-12 * (65 / 45) * (1.1 / 0.9) ** 2, rel=1e-12)
    assert t.multiplier_energy("exact", 16) == pytest.approx(4 * t.multiplier_energy("exact", 8), rel=1e-12)
    # The same law predicts Horowitz's 32-bit figure (3.1 pJ at 45 nm) within 5 %.
    assert t.multiplier_energy("exact", 32) / t.multiplier_energy("exact", 8) == pytest.approx(3.1 / 0.2, rel=0.05)


def test_drum_energy_model_trend() -> None:
    t = DEFAULT_65NM
    for bits in (8, 16):
        exact = t.multiplier_energy("exact", bits)
        drum = [t.multiplier_energy(f"drum:{k}", bits) for k in range(1, 5)]
        assert all(a < b for a, b in itertools.pairwise(drum))  # more kept bits cost more
        assert drum[-1] < exact  # K1..K4 save energy over exact
    # At 16 bits the core is a small part: DRUM6 well under half of the exact multiplier.
    assert t.multiplier_energy("drum:6", 16) < 0.5 * t.multiplier_energy("exact", 16)
    assert t.multiplier_energy("K2", 8) == t.multiplier_energy("drum:2", 8)
    assert t.multiplier_energy("drum:8", 8) == t.multiplier_energy("exact", 8)  # k >= bits: nothing to approximate
    with pytest.raises(HardwareModelError):
        t.multiplier_energy("drum:0", 8)


def test_voltage_scaling_of_sram() -> None:
    t = DEFAULT_65NM
    assert t.sram_read_energy(64) == pytest.approx(64 * t.sram_read_pj_per_bit * 1e-12, rel=1e-12)
    assert t.sram_read_energy(64, 0.55) == pytest.approx(t.sram_read_energy(64) * 0.25, rel=1e-12)  # ~V^2
    assert t.sram_write_energy(8, 1.1) == pytest.approx(8 * t.sram_write_pj_per_bit * 1e-12, rel=1e-12)
    leak = [t.sram_leakage_power(1024, v) for v in (0.4, 0.66, 0.85, 1.1)]
    assert all(a < b for a, b in itertools.pairwise(leak))
    assert leak[-1] == pytest.approx(1024 * 50e-12, rel=1e-12)
    assert leak[0] / leak[-1] == pytest.approx((0.4 / 1.1) * 10 ** (-0.7), rel=1e-9)
    assert t.sram_leakage_energy(1024, 2.0, 0.66) == pytest.approx(2.0 * leak[1], rel=1e-12)
    for bad in (0.3, 1.3):
        with pytest.raises(HardwareModelError, match="outside"):
            t.sram_read_energy(8, bad)


def test_other_events() -> None:
    t = DEFAULT_65NM
    assert t.adder_energy(16) == pytest.approx(t.adder_energy(32) / 2, rel=1e-12)
    assert t.dram_energy(10) == pytest.approx(10 * t.dram_pj_per_byte * 1e-12, rel=1e-12)
    assert t.cycles_to_seconds(1000) == pytest.approx(1000 / t.clock_frequency_hz, rel=1e-12)
    assert t.clock_period_s == pytest.approx(1e-9)
    assert t.register_energy(8) > 0 and t.local_memory_energy(8) > t.register_energy(8)
    with pytest.raises(HardwareModelError):
        t.dram_energy(-1)


def test_frozen_and_strict() -> None:
    with pytest.raises(ValidationError):
        DEFAULT_65NM.dram_pj_per_byte = 1.0  # type: ignore[misc]
    with pytest.raises(ValidationError):
        TechnologyTable(dram_pj_per_byte=-1.0)
    with pytest.raises(ValidationError):
        TechnologyTable(sram_pj=1.0)  # type: ignore[call-arg]


