"""`axtrain check`: pinned report figures with tolerances; exit 1 with a DRIFT line when one moved."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from nets import compile_bundle

from axtrain.errors import ConfigError
from axtrain.formats.arch import Architecture
from axtrain.regress.check import Pin, evaluate, parse_expect


def test_tolerances() -> None:
    report = {"latency": {"cycles_per_inference": 102}, "accuracy": {"mean": 0.951}, "app": "x"}
    pins = [Pin("latency.cycles_per_inference", 100, rel_tol=0.02), Pin("accuracy.mean", 0.95, abs_tol=0.0005), Pin("app", "x")]
    assert [o.ok for o in evaluate(report, pins)] == [True, False, True]
    report["latency"]["cycles_per_inference"] = 103
    assert not evaluate(report, pins[:1])[0].ok


@pytest.mark.parametrize("bad, message", [
    ({"a.b": 3}, "expected a mapping with 'value'"),
    ({"a.b": {"value": 1, "rel_tol": 0.1, "abs_tol": 1}}, "not both"),
    ({"a.b": {"value": "x", "rel_tol": 0.1}}, "needs a numeric value"),
    ({"a.b": {"value": 1, "tol": 1}}, "unknown key 'tol'"),
    ({"a..b": {"value": 1}}, "not a dotted path"),
])
def test_bad_expect_files(bad: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_expect(bad, "e.yaml")


def test_check_passes_on_the_original_and_fails_when_latency_moves(cnn_bundle: Path, cnn_model: Path, tmp_path: Path, run_cli: Callable) -> None:
    x = np.random.default_rng(0).uniform(-8, 8, size=(5, 2, 9, 9)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, _, err = run_cli(["simulate", cnn_bundle, "--inputs", tmp_path / "x.npy", "--report", tmp_path / "r.json"])
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    cycles, joules = report["latency"]["cycles_per_inference"], report["energy"]["joules_per_inference"]
    (tmp_path / "expect.yaml").write_text(
        f"latency.cycles_per_inference: {{value: {cycles}, rel_tol: 0.02}}\n"
        f"energy.joules_per_inference: {{value: {joules!r}, rel_tol: 0.05}}\n"
        f"app: {{value: custom}}\n"
    )
    code, out, err = run_cli(["check", cnn_bundle, "--expect", tmp_path / "expect.yaml", "--inputs", tmp_path / "x.npy"])
    assert code == 0, err
    assert out.splitlines()[-1] == "check: 3/3 pins hold"
    # The same network on a DRAM with 100 more cycles of latency: every load is slower.
    slow = compile_bundle(cnn_model, tmp_path / "slow", Architecture(dram_latency_cycles=200))
    code, out, _ = run_cli(["check", slow, "--expect", tmp_path / "expect.yaml", "--inputs", tmp_path / "x.npy"])
    assert code == 1, out
    drift = [line for line in out.splitlines() if line.startswith("DRIFT")]
    assert drift[0].startswith("DRIFT  latency.cycles_per_inference: ") and f"expected {cycles} (rel_tol 0.02)" in drift[0]
    assert out.splitlines()[-1].endswith("drifted")


def test_check_refuses_a_missing_report_key(cnn_bundle: Path, tmp_path: Path, run_cli: Callable) -> None:
    np.save(tmp_path / "x.npy", np.zeros((1, 2, 9, 9), np.float32))
    (tmp_path / "e.yaml").write_text("latency.cycles: {value: 1, rel_tol: 0.1}\n")
    code, _, err = run_cli(["check", cnn_bundle, "--expect", tmp_path / "e.yaml", "--inputs", tmp_path / "x.npy"])
    assert code == 2 and err.strip() == "error: expect key latency.cycles: the simulation report has no latency.cycles"


def test_check_seeds_are_named_as_in_simulate(cnn_bundle: Path, tmp_path: Path, run_cli: Callable) -> None:
    """--fault-seed (simulate's name) seeds the fault maps; --seed is its deprecated spelling."""
    np.save(tmp_path / "x.npy", np.zeros((1, 2, 9, 9), np.float32))
    (tmp_path / "e.yaml").write_text("config.seed: {value: 7}\nconfig.runs: {value: 2}\n")
    base = ["check", cnn_bundle, "--expect", tmp_path / "e.yaml", "--inputs", tmp_path / "x.npy", "--sram-voltage", "0.5", "--runs", "2"]
    code, out, err = run_cli([*base, "--fault-seed", "7"])
    assert code == 0, err
    assert out.splitlines()[-1] == "check: 2/2 pins hold"
    code, out, err = run_cli([*base, "--seed", "7"])
    assert code == 0 and out.splitlines()[-1] == "check: 2/2 pins hold"
    assert "note: --seed is deprecated; use --fault-seed (same meaning)" in err
    code, _, err = run_cli([*base, "--seed", "7", "--fault-seed", "7"])
    assert code == 2 and "same option" in err
    code, _, err = run_cli([*base, "--fault-seed", "-1"])
    assert code == 2 and err.strip() == "error: --fault-seed must be at least 0, got -1"
