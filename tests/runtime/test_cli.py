"""``axtrain simulate``: reports, dumps, determinism and one-line errors (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from axtrain.cli import main
from axtrain.runtime.report_check import check_report, main as check_main

REQUIRED = {"schema", "app", "bundle_sha256", "config", "accuracy", "latency", "energy", "power_watts", "utilization"}


class _Result:
    def __init__(self, exit_code: int, output: str) -> None:
        self.exit_code, self.output = exit_code, output


@pytest.fixture
def invoke(capsys: pytest.CaptureFixture[str]):
    """Run ``axtrain args`` in-process through main() (the real error mapping); stdout + stderr."""

    def run(*args) -> _Result:
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as stop:
            code = int(stop.code or 0)
        out, err = capsys.readouterr()
        return _Result(code, out + err)

    return run


@pytest.fixture
def files(bundle_factory, tmp_path: Path):
    bundle, _ = bundle_factory("cnn", "default")
    x = bundle.golden_inputs()
    y = np.arange(len(x)) % 7
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return bundle, tmp_path


def test_report_dump_and_determinism(files, invoke) -> None:
    bundle, tmp = files
    args = ["simulate", bundle.path, "--inputs", tmp / "x.npy", "--labels", tmp / "y.npy", "--sram-voltage", "0.66", "--runs", "3", "--seed", "4"]
    first = invoke(*args, "--report", tmp / "a.json", "--dump-outputs", tmp / "out.npy")
    assert first.exit_code == 0, first.output
    assert "accuracy" in first.output and "PE utilization" in first.output
    second = invoke(*args, "--report", tmp / "b.json")
    assert second.exit_code == 0
    assert (tmp / "a.json").read_bytes() == (tmp / "b.json").read_bytes()
    report = json.loads((tmp / "a.json").read_text())
    assert REQUIRED <= set(report)
    assert check_report(report) == []
    assert set(report["accuracy"]) == {"mean", "std", "min", "max", "per_run"} and len(report["accuracy"]["per_run"]) == 3
    assert set(report["latency"]) >= {"cycles_per_inference", "seconds_per_inference", "clock_hz"}
    assert set(report["energy"]) >= {"joules_per_inference", "compute_joules", "storage_joules", "leakage_joules", "breakdown"}
    assert report["config"]["runs"] == 3 and report["config"]["seed"] == 4 and report["config"]["sram_voltage"] == 0.66
    assert "numpy" in report["config"]["versions"]
    dumped = np.load(tmp / "out.npy", allow_pickle=False)
    assert dumped.dtype == np.float32 and dumped.shape == (len(bundle.golden_inputs()), 7)


def test_exact_dump_equals_golden_outputs(files, invoke) -> None:
    bundle, tmp = files
    result = invoke("simulate", bundle.path, "--inputs", tmp / "x.npy", "--dump-outputs", tmp / "out.npy")
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.load(tmp / "out.npy"), bundle.golden_outputs())


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--multiplier", "drum:99"], "DRUM k"),
        (["--multiplier", "fancy"], "unknown multiplier mode"),
        (["--sram-voltage", "0.2"], "outside"),
        (["--runs", "0"], "--runs"),
        (["--app", "mnist-cnn"], "exactly one"),
    ],
)
def test_bad_options_exit_2_with_one_line(files, invoke, extra, needle) -> None:
    bundle, tmp = files
    result = invoke("simulate", bundle.path, "--inputs", tmp / "x.npy", *extra)
    assert result.exit_code == 2
    assert needle in result.output and len(result.output.strip().splitlines()) == 1


def test_bad_inputs_exit_2_with_one_line(files, invoke) -> None:
    bundle, tmp = files
    np.save(tmp / "wrong.npy", np.zeros((3, 5), dtype=np.float32))
    np.save(tmp / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    cases = [
        (["simulate", bundle.path, "--inputs", tmp / "wrong.npy"], "does not match the bundle's input shape"),
        (["simulate", bundle.path, "--inputs", tmp / "obj.npy"], "never pickled"),
        (["simulate", bundle.path, "--inputs", tmp / "missing.npy"], "does not exist"),
        (["simulate", tmp / "no-bundle", "--inputs", tmp / "x.npy"], "not a bundle directory"),
        (["simulate", bundle.path], "exactly one"),
    ]
    for args, needle in cases:
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert needle in result.output and len(result.output.strip().splitlines()) == 1, result.output


def test_runtime_never_imports_torch() -> None:
    code = (
        "import sys; import axtrain.runtime.cli, axtrain.runtime.simulation, axtrain.runtime.report, "
        "axtrain.runtime.simulator_reference, axtrain.runtime.energy; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_out_of_range_labels_are_refused(tmp_path: Path) -> None:
    """A label outside the bundle's classes would silently count as wrong: refuse it instead."""
    from axtrain.errors import ConfigError
    from axtrain.runtime.simulation import check_inputs

    class _Shape:
        def __init__(self, shape: list[int]) -> None:
            self.shape = shape

    class _Manifest:
        input = _Shape([3])
        output = _Shape([3])

    class _Bundle:
        manifest = _Manifest()

    x = np.zeros((4, 3), dtype=np.float32)
    check_inputs(_Bundle(), x, np.array([0, 1, 2, 2]))  # in range: accepted
    with pytest.raises(ConfigError, match=r"\[0, 2\].*-1\.\.9"):
        check_inputs(_Bundle(), x, np.array([0, 1, 9, -1]))


def _nudge(report: dict, path: str, value) -> dict:
    import copy

    out = copy.deepcopy(report)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    index = int(last) if isinstance(node, list) else last
    if value is _DELETE:
        del node[index]
    else:
        node[index] = value
    return out


_DELETE = object()


def test_report_check_catches_inconsistent_reports(files, invoke, capsys) -> None:
    bundle, tmp = files
    args = ["simulate", bundle.path, "--inputs", tmp / "x.npy", "--labels", tmp / "y.npy", "--sram-voltage", "0.5", "--runs", "4", "--report", tmp / "r.json"]
    assert invoke(*args).exit_code == 0
    report = json.loads((tmp / "r.json").read_text())
    assert check_report(report) == []
    energy = report["energy"]["joules_per_inference"]
    broken = {
        "schema": "axtrain-simulation-report/0",
        "accuracy.mean": report["accuracy"]["mean"] + 0.01,
        "accuracy.per_run": report["accuracy"]["per_run"][:-1],  # disagrees with config.runs
        "latency.seconds_per_inference": report["latency"]["seconds_per_inference"] * 2,
        "energy.joules_per_inference": energy * 1.001,
        "energy.breakdown.compute.adders": report["energy"]["breakdown"]["compute"]["adders"] * 3,
        "power_watts": report["power_watts"] * 1.01,
        "utilization": 1.5,
        "events.cycles": report["events"]["cycles"] + 1,
        "bundle_sha256": _DELETE,
        "latency.cycles_per_batch": report["latency"]["cycles_per_batch"] + 1,
        "latency.batch": 0,
        "throughput.inferences_per_second": report["throughput"]["inferences_per_second"] * 1.01,
        "per_layer.0.cycles.stall": report["per_layer"][0]["cycles"]["stall"] + 1,
        "per_layer.0.energy.total": report["per_layer"][0]["energy"]["total"] * 1.01,
        "per_layer.1.pe_utilization": 1.2,
        "per_layer": [],
    }
    for path, value in broken.items():
        problems = check_report(_nudge(report, path, value))
        assert problems, path
    # The module's command line: exit 0 on a valid report, 2 and one line per problem otherwise.
    (tmp / "bad.json").write_text(json.dumps(_nudge(report, "utilization", 1.5)))
    (tmp / "junk.json").write_bytes(b"\xff{")
    assert check_main([str(tmp / "r.json")]) == 0
    capsys.readouterr()
    assert check_main([str(tmp / "bad.json"), str(tmp / "junk.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)
