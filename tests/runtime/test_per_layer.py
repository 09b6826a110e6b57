"""runtime/per_layer.py: bytes per memory level and energy parts of hand-made events."""

from __future__ import annotations

from collections import Counter

import pytest

from axtrain.formats.arch import Architecture
from axtrain.hwmodels.technology import DEFAULT_65NM
from axtrain.runtime.energy import price
from axtrain.runtime.events import Events
from axtrain.runtime.per_layer import bytes_moved, energy_parts, format_per_layer, per_layer_csv, per_layer_rows
from axtrain.runtime.timing import MachineRun


def _events() -> Events:
    return Events(
        cycles=100, compute_cycles=60, transfer_cycles=30, stall_cycles=10, active_pe_cycles=400, multiplies=Counter({"exact@8": 400}), additions=400,
        reads=Counter({"weight_buffer@0.660V": 50, "neuron_local@1.100V": 400, "bias_buffer@1.100V": 4}), writes=Counter({"neuron_buffer@1.100V": 8}),
        dram_read_bytes=128, dram_write_bytes=64,
    )


def test_bytes_per_level_and_energy_parts() -> None:
    arch = Architecture(weight_word_bits=8)
    moved = bytes_moved(_events(), arch)
    assert moved == {"dram": 192, "weight_buffer": 50, "neuron_buffer": 16, "bias_buffer": 16, "weight_local": 0, "neuron_local": 800}
    parts = energy_parts(_events(), DEFAULT_65NM, arch, batch=4)
    whole = price(_events(), DEFAULT_65NM, arch)
    assert parts["total"] == pytest.approx(whole.total_joules / 4, rel=1e-12)
    assert sum(v for k, v in parts.items() if k != "total") == pytest.approx(parts["total"], rel=1e-12)
    assert parts["dram"] == pytest.approx(192 * 200e-12 / 4, rel=1e-12)


def test_rows_table_and_csv() -> None:
    arch = Architecture()
    run = MachineRun(2, _events() + _events(), {-1: _events(), 0: _events()}, 100)
    from axtrain.formats.bundle import LayerRecord

    layer = LayerRecord.model_construct(name="fc", op="dense")
    rows = per_layer_rows([layer], run, DEFAULT_65NM, arch)
    assert [r["name"] for r in rows] == ["fc", "io"] and rows[0]["cycles"] == {"total": 100, "compute": 60, "transfer": 30, "stall": 10}
    assert rows[0]["pe_utilization"] == pytest.approx(400 / (256 * 100)) and rows[0]["macs"] == 400
    table = format_per_layer(rows, 2)
    assert "per inference at batch 2" in table and table.splitlines()[2].split()[3] == "50"  # 100 cycles / batch 2
    lines = per_layer_csv(rows, 2).splitlines()
    assert len(lines) == 3 and lines[1].startswith("0,fc,dense,2,100,60,30,10,")
