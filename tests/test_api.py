"""The Python API (axtrain/api.py, docs/api.md): lazy, typed results, the commands' rules."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

import axtrain
from axtrain.errors import ConfigError


def test_import_axtrain_loads_neither_the_api_nor_torch() -> None:
    code = "import sys, axtrain; print('axtrain.api' in sys.modules, 'torch' in sys.modules, callable(axtrain.simulate))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "True"]


def test_pipeline_and_explore_stay_callable_after_their_packages_are_imported() -> None:
    code = "import axtrain.pipeline.run, axtrain.explore.search, axtrain; print(callable(axtrain.pipeline), callable(axtrain.explore))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True"]


def test_results_are_frozen_dataclasses() -> None:
    for name in ("TrainResult", "ExportResult", "CompileResult", "SimulateResult", "ExploreResult", "PipelineResult"):
        cls = getattr(axtrain, name)
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, name  # type: ignore[attr-defined]


def test_simulate_on_a_trained_bundle(tiny_bundle: Path, tmp_path: Path) -> None:
    result = axtrain.simulate(tiny_bundle, "breast-cancer", multiplier="drum:2", runs=2, report=tmp_path / "r.json")
    assert isinstance(result, axtrain.SimulateResult)
    assert result.accuracy is not None and 0.5 < result.accuracy <= 1.0
    assert result.latency_cycles == result.report["latency"]["cycles_per_inference"] > 0
    assert result.energy_joules == pytest.approx(result.report["energy"]["joules_per_inference"], rel=0)
    assert (tmp_path / "r.json").is_file()
    with pytest.raises(ConfigError, match="already exists"):
        axtrain.simulate(tiny_bundle, "breast-cancer", report=tmp_path / "r.json")


def test_api_errors_are_the_commands_one_line_errors(tiny_bundle: Path) -> None:
    from axtrain.errors import AxTrainError

    with pytest.raises(AxTrainError, match="drum:99|K9|mode"):
        axtrain.simulate(tiny_bundle, "breast-cancer", multiplier="K9")
    with pytest.raises(ConfigError, match="exactly one"):
        axtrain.simulate(tiny_bundle)
