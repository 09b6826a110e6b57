"""Pricing: a pure function of (events, table, arch); trends the paper relies on."""

from __future__ import annotations

import copy

import pytest

from axtrain.formats.arch import Architecture
from axtrain.hwmodels.multipliers import parse_mode
from axtrain.hwmodels.technology import DEFAULT_65NM, TechnologyTable
from axtrain.runtime.energy import price
from axtrain.runtime.events import Events
from axtrain.runtime.simulation import bundle_events


def test_price_is_pure_and_repeatable(bundle_factory) -> None:
    bundle, _ = bundle_factory("cnn", "default")
    events = bundle_events(bundle, None, None)
    before = copy.deepcopy(events.as_dict())
    first = price(events, DEFAULT_65NM, bundle.arch)
    second = price(events, DEFAULT_65NM, bundle.arch)
    assert first == second and events.as_dict() == before
    assert first.total_joules == pytest.approx(first.compute_joules + first.storage_joules + first.leakage_joules, rel=1e-12)
    assert 0 < first.utilization <= 1


def test_hand_priced_events() -> None:
    """One DRAM byte, one exact 8-bit multiply, nothing else: figures from the table, by hand."""
    arch = Architecture()
    events = Events(cycles=1000, dram_read_bytes=3)
    events.multiplies["exact@8"] = 2
    events.additions = 2
    table = TechnologyTable()
    energy = price(events, table, arch)
    assert energy.storage["dram"] == pytest.approx(3 * 200e-12, rel=1e-12)
    assert energy.compute["multipliers:exact@8"] == pytest.approx(2 * 0.2e-12 * (65 / 45) * (1.1 / 0.9) ** 2, rel=1e-12)
    assert energy.compute["adders"] == pytest.approx(2 * table.adder_32bit_pj * 1e-12 * 48 / 32, rel=1e-12)
    assert energy.seconds == pytest.approx(1e-6)
    # Leakage: 64 KiB weight buffer at nominal for 1 us (no per-voltage cycles recorded: none).
    assert energy.leakage["neuron_buffer"] == pytest.approx(65536 * 8 * 50e-12 * 1e-6, rel=1e-12)


def test_k1_lowers_multiplier_energy(bundle_factory) -> None:
    bundle, _ = bundle_factory("cnn", "default")
    exact = price(bundle_events(bundle, None, None), DEFAULT_65NM, bundle.arch)
    for k in (1, 2, 3, 4):
        drum = price(bundle_events(bundle, parse_mode(f"drum:{k}"), None), DEFAULT_65NM, bundle.arch)
        assert drum.multiplier_joules < exact.multiplier_joules
        assert drum.storage_joules == pytest.approx(exact.storage_joules, rel=1e-12)  # same traffic
    k1 = price(bundle_events(bundle, parse_mode("K1"), None), DEFAULT_65NM, bundle.arch)
    k4 = price(bundle_events(bundle, parse_mode("K4"), None), DEFAULT_65NM, bundle.arch)
    assert k1.multiplier_joules < k4.multiplier_joules


def test_lower_voltage_lowers_sram_energy(bundle_factory) -> None:
    bundle, _ = bundle_factory("cnn", "default")
    energies = [price(bundle_events(bundle, None, v), DEFAULT_65NM, bundle.arch).sram_joules for v in (1.1, 0.85, 0.66, 0.4)]
    assert energies == sorted(energies, reverse=True) and energies[-1] < energies[1]


def test_requant_multiplies_are_priced_as_exact_32_bit_multiplies() -> None:
    """ISA 2: a table-scaled REQ's multiply by its 31-bit multiplier costs one exact 32x32 multiply per
    output (docs/isa.md timing hints); power-of-two bundles have no such key at all."""
    arch = Architecture()
    plain = Events(cycles=100, requantizations=10)
    scaled = Events(cycles=100, requantizations=10, requant_multiplies=10)
    assert "requant_multipliers" not in price(plain, DEFAULT_65NM, arch).compute
    extra = price(scaled, DEFAULT_65NM, arch).compute_joules - price(plain, DEFAULT_65NM, arch).compute_joules
    assert extra == pytest.approx(10 * DEFAULT_65NM.multiplier_energy("exact", 32), rel=1e-12)
    assert extra > 10 * DEFAULT_65NM.multiplier_energy("exact", 8)  # wider than the 8-bit datapath's multiply
