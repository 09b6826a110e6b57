"""`axtrain pipeline`: every stage's artifact, stage reuse, resume, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from axtrain.errors import RunError
from axtrain.formats.target import HardwareTarget
from axtrain.pipeline import PipelineOptions, run_pipeline
from axtrain.pipeline.run import STAGES
from axtrain.runtime.report_check import check_report

REPORT_KEYS = {"schema", "app", "bundle_sha256", "config", "accuracy", "latency", "energy", "power_watts", "utilization"}


def _options(out: Path, **changes: object) -> PipelineOptions:
    base = dict(app="breast-cancer", method="axtrain", out=out, epochs=3, runs=3, target=HardwareTarget(multiplier="drum:2", sram_voltage=0.66))
    base.update(changes)
    return PipelineOptions(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pipeline") / "p"
    result = run_pipeline(_options(out))
    assert result.ran == list(STAGES)
    return out


def test_every_artifact_is_left_in_the_directory(finished: Path) -> None:
    for name in ("run/weights.safetensors", "model.onnx", "bundle/manifest.json", "verify.txt", "report.json", "summary.md", "pipeline.json"):
        assert (finished / name).is_file(), name
    report = json.loads((finished / "report.json").read_text())
    assert REPORT_KEYS <= set(report)
    assert check_report(report) == []
    assert len(report["accuracy"]["per_run"]) == 3
    assert 0.0 <= report["accuracy"]["mean"] <= 1.0
    # The training target becomes the bundle's annotation, which the simulation uses.
    layers = report["config"]["layers"]
    assert {layer["multiplier"] for layer in layers} == {"drum:2"}
    assert {float(layer["sram_voltage"]) for layer in layers} == {0.66}
    summary = (finished / "summary.md").read_text()
    assert "accuracy on the accelerator" in summary and "energy per inference (batch 100)" in summary and "throughput (batch 100)" in summary


def test_rerun_reuses_every_stage(finished: Path) -> None:
    before = (finished / "report.json").read_bytes()
    result = run_pipeline(_options(finished))
    assert result.ran == [] and result.reused == list(STAGES)
    assert (finished / "report.json").read_bytes() == before


def test_changed_simulation_reruns_only_simulate(finished: Path) -> None:
    result = run_pipeline(_options(finished, runs=2))
    assert result.ran == ["simulate"]
    assert len(json.loads((finished / "report.json").read_text())["accuracy"]["per_run"]) == 2
    run_pipeline(_options(finished))  # back to the module's settings for the other tests


def test_missing_or_tampered_output_is_redone(finished: Path) -> None:
    (finished / "verify.txt").write_text("tampered\n")
    (finished / "report.json").unlink()
    result = run_pipeline(_options(finished))
    assert result.ran == ["verify", "simulate"]
    assert (finished / "verify.txt").read_text().endswith("verify: OK\n")


def test_corrupt_ledger_is_a_one_line_error(tmp_path: Path) -> None:
    out = tmp_path / "p"
    out.mkdir()
    (out / "pipeline.json").write_text("{")
    with pytest.raises(RunError, match="pipeline.json"):
        run_pipeline(_options(out))


def test_cli_refuses_an_unknown_app_with_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "axtrain.cli", "pipeline", "--app", "nope", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "nope" in done.stderr
