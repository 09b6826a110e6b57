"""Issue 16's machine model on LeNet-5 (seeded random 8-bit weights, default architecture): weights
resident across a batch, where the energy goes, and what approximation and NTV buy.

Thresholds are the issue's: DRAM below half of the energy per inference at batch 100; K1 vs exact
and 0.66 V vs 1.1 V each move the total by a visible amount (we ask for at least 1 % and 5 %; the
measured figures are in docs/runtime.md "Where the energy goes"). The byte-identity of reruns and
the per-layer sums are checked on the JSON report.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from axtrain.formats.bundle import Bundle, load_bundle
from axtrain.hwmodels.multipliers import parse_mode
from axtrain.hwmodels.technology import DEFAULT_65NM
from axtrain.runtime.energy import price
from axtrain.runtime.events import instruction_context
from axtrain.runtime.per_layer import per_layer_csv
from axtrain.runtime.report_check import check_report
from axtrain.runtime.simulator import simulate_machine
from axtrain.runtime.timing import resident_loads


@pytest.fixture(scope="module")
def lenet(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    from benchmarks.bench_runtime import build, lenet_layers

    return load_bundle(build(lenet_layers(), (1, 28, 28), tmp_path_factory.mktemp("lenet") / "lenet", "mnist-cnn"))


def _joules(bundle: Bundle, batch: int, mode: str | None = None, voltage: float | None = None) -> tuple[float, float]:
    """(joules per inference, DRAM joules per inference)."""
    context = instruction_context(bundle.program, bundle.arch, bundle.layers, parse_mode(mode) if mode else None, voltage)
    e = price(simulate_machine(bundle.program, bundle.arch, context, batch).total, DEFAULT_65NM, bundle.arch).scaled(1.0 / batch)
    return e.total_joules, e.storage["dram"]


def test_every_lenet_weight_is_loaded_once_per_batch(lenet: Bundle) -> None:
    loads = [i for i, ins in enumerate(lenet.program) if ins.op in ("LDW", "LDB")]
    assert resident_loads(lenet.program) == frozenset(loads)
    run = simulate_machine(lenet.program, lenet.arch, instruction_context(lenet.program, lenet.arch, lenet.layers), 100)
    weight_bytes = lenet.weights.size * lenet.arch.weight_word_bytes
    # Weights once (whole bursts), plus 100 inputs and outputs of 784 and 10 16-bit words in 64-byte bursts.
    assert run.total.instructions["LDW"] == sum(1 for ins in lenet.program if ins.op == "LDW")
    assert weight_bytes <= run.total.dram_read_bytes - 100 * 1600 < weight_bytes + 64 * len(loads) + 4 * lenet.bias.size
    assert run.total.dram_write_bytes == 100 * 64
    assert run.first_inference_cycles < run.total.cycles < 100 * run.first_inference_cycles


def test_dram_is_below_half_of_the_energy_at_batch_100(lenet: Bundle) -> None:
    total, dram = _joules(lenet, 100)
    assert dram / total < 0.5
    total_1, dram_1 = _joules(lenet, 1)
    assert dram_1 / total_1 > 0.5  # at batch 1 every weight still comes from DRAM once per inference


def test_approximation_and_voltage_move_the_total_visibly(lenet: Bundle) -> None:
    exact, _ = _joules(lenet, 100)
    k1, _ = _joules(lenet, 100, "drum:1")
    low, _ = _joules(lenet, 100, voltage=0.66)
    assert (exact - k1) / exact > 0.01
    assert (exact - low) / exact > 0.05
    ordered = [_joules(lenet, 100, f"drum:{k}")[0] for k in (1, 2, 3, 4)]
    assert ordered == sorted(ordered) and ordered[-1] < exact  # a smaller DRUM core costs less


def test_report_holds_the_per_layer_table(lenet: Bundle, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from axtrain.cli import main

    x = np.random.default_rng(0).uniform(0, 1, (3, 1, 28, 28)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    reports = []
    for name in ("a", "b"):
        try:
            main(["simulate", str(lenet.path), "--inputs", str(tmp_path / "x.npy"), "--per-layer", "--batch", "100", "--report", str(tmp_path / f"{name}.json")])
        except SystemExit as stop:
            assert stop.code in (0, None)
        reports.append((tmp_path / f"{name}.json").read_bytes())
    out = capsys.readouterr().out
    assert reports[0] == reports[1] and (tmp_path / "a.layers.csv").read_bytes() == (tmp_path / "b.layers.csv").read_bytes()
    assert "per layer, per inference at batch 100" in out and "fc1" in out
    report = json.loads(reports[0])
    assert check_report(report) == []
    rows = report["per_layer"]
    assert [r["name"] for r in rows][-1] == "io" and {r["name"] for r in rows} >= {"conv1", "conv2", "fc1", "fc2", "fc3"}
    assert sum(r["cycles"]["total"] for r in rows) == report["latency"]["cycles_per_batch"] == report["events"]["cycles"]
    assert sum(r["energy"]["total"] for r in rows) == pytest.approx(report["energy"]["joules_per_inference"], rel=1e-9)
    table = list(csv.DictReader(io.StringIO((tmp_path / "a.layers.csv").read_text())))
    assert [int(r["cycles"]) for r in table] == [r["cycles"]["total"] for r in rows]
    assert (tmp_path / "a.layers.csv").read_text() == per_layer_csv(rows, 100)
    conv2 = next(r for r in rows if r["name"] == "conv2")
    assert conv2["pe_utilization"] > 0.3 and conv2["cycles"]["compute"] == conv2["cycles"]["total"]  # weights resident: no waiting


@pytest.mark.slow
def test_reference_and_fast_agree_on_lenet_batches(lenet: Bundle) -> None:
    """The default tier checks small networks (test_cycles.py); here LeNet-5 itself, batch 2, with
    a DRUM override and NTV voltage (about a second of clock stepping per inference)."""
    from axtrain.runtime.simulator_reference import simulate_reference_batch

    context = instruction_context(lenet.program, lenet.arch, lenet.layers, parse_mode("drum:3"), 0.7)
    assert simulate_reference_batch(lenet.program, lenet.arch, context, 2) == simulate_machine(lenet.program, lenet.arch, context, 2)
