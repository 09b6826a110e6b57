"""The Python API: the six commands as functions returning typed, frozen results (docs/api.md).

``import axtrain`` loads none of this: ``axtrain.train`` and its siblings are resolved on first use
by the package's ``__getattr__``, and each function imports its tool when called, so a notebook
that only simulates never imports torch (the command line's rule, axtrain/cli.py).

Every function takes the values the command takes, validates them with the same types and the
same one-line :class:`~axtrain.errors.AxTrainError` messages, and follows the same overwrite rule
(docs/decisions.md 90): an existing output is refused unless ``force=True``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from axtrain.errors import ConfigError

__all__ = [
    "CompileResult", "ExploreResult", "ExportResult", "PipelineResult", "SimulateResult", "TrainResult",
    "compile", "explore", "export", "pipeline", "simulate", "train",
]


@dataclass(frozen=True)
class TrainResult:
    """A finished training run: its folder and the trainer's test-split figures."""

    run_dir: Path | None
    accuracy_float: float  # the float network
    accuracy_exact: float  # exact fixed point (8-bit dynamic fixed point, exact multipliers)
    accuracy: float  # on the target hardware (the run's multiplier and SRAM voltage)
    summary: dict[str, Any] = field(repr=False)  # the run's summary.json


@dataclass(frozen=True)
class ExportResult:
    """An exported ONNX file."""

    path: Path


@dataclass(frozen=True)
class CompileResult:
    """A compiled bundle."""

    path: Path
    layers: int
    instructions: int


@dataclass(frozen=True)
class SimulateResult:
    """A simulation: accuracy over the Monte Carlo runs, latency, energy, and the full report."""

    accuracy: float | None  # mean over runs; None without labels
    accuracy_std: float | None
    latency_cycles: int  # per inference
    latency_seconds: float
    energy_joules: float  # per inference
    report: dict[str, Any] = field(repr=False)  # docs/report-schema.md
    report_path: Path | None = None


@dataclass(frozen=True)
class ExploreResult:
    """The chosen per-layer plan, written as a bundle."""

    path: Path  # the plan's bundle
    plan: str  # the plan's label
    energy_joules: float  # per inference, on the selection inputs' plan
    saving_vs_baseline: float  # fraction
    accuracy: float  # mean selection accuracy of the chosen plan
    report: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class PipelineResult:
    """A pipeline folder: what ran, what was reused, and the simulation's figures."""

    out: Path
    accuracy: float | None
    latency_seconds: float
    energy_joules: float
    ran: tuple[str, ...]
    reused: tuple[str, ...]
    paths: dict[str, Path] = field(repr=False)  # run, onnx, bundle, report, summary
    report: dict[str, Any] = field(repr=False)


def _mode(value: Any) -> Any:
    """A multiplier mode from text or a mode (None stays None): the command line's parser."""
    if value is None:
        return None
    from axtrain.hwmodels.multipliers import parse_mode

    return parse_mode(value)


def train(app: str, out: str | Path | None = None, *, method: str | None = None, config: str | Path | None = None,
          force: bool = False, progress: bool = False, **settings: Any) -> TrainResult:
    """Train ``app`` by ``method`` (``axtrain train``); ``settings`` are TrainConfig keys, flat
    (``epochs=5``, ``multiplier="K2"``, ``sram_voltage=0.66``) or grouped. With ``out`` the run is kept
    in a run directory (resumed when unfinished, refused when finished with another config).
    ``method`` None: the config file's, else bp (as ``axtrain train``)."""
    from axtrain.trainer.config import load_config
    from axtrain.trainer.engine import train as train_run

    cfg = load_config(config, app=app, method=method, **settings).resolved()
    result = train_run(cfg, out, force=force, progress=progress)
    s = result.summary
    return TrainResult(result.run_dir, float(s["test_accuracy_float"]), float(s["test_accuracy_fixed_exact"]), float(s["test_accuracy_target"]), s)


def export(run_dir: str | Path, out: str | Path, *, multiplier: Any = None, sram_voltage: float | None = None, force: bool = False) -> ExportResult:
    """Export a run directory as annotated QDQ ONNX (``axtrain export``)."""
    from axtrain.overwrite import check_file_output
    from axtrain.trainer.export import export_run

    out = Path(out)
    check_file_output(out, force)
    return ExportResult(export_run(run_dir, out, multiplier=_mode(multiplier), sram_voltage=sram_voltage))


def compile(model: str | Path, out: str | Path, *, arch: str | Path | None = None, force: bool = False) -> CompileResult:  # noqa: A001 - the command's name
    """Compile a QDQ ONNX model into a FlexFlow bundle (``axtrain compile``)."""
    from axtrain.compiler.pipeline import compile_to_bundle
    from axtrain.formats.arch import DEFAULT_ARCH, load_arch
    from axtrain.formats.bundle import load_bundle

    out = Path(out)
    if out.exists() and not force:
        raise ConfigError(f"{out} already exists (use --force to replace it)")
    path = compile_to_bundle(model, out, load_arch(arch) if arch else DEFAULT_ARCH, overwrite=force)
    b = load_bundle(path)
    return CompileResult(Path(path), len(b.layers), len(b.program))


def _sim_result(report: Mapping[str, Any], path: Path | None) -> SimulateResult:
    acc, lat = report["accuracy"], report["latency"]
    return SimulateResult(
        None if acc is None else float(acc["mean"]), None if acc is None else float(acc.get("std", 0.0)),
        int(lat["cycles_per_inference"]), float(lat["seconds_per_inference"]), float(report["energy"]["joules_per_inference"]), dict(report), path,
    )


def simulate(bundle: str | Path, app: str | None = None, *, inputs: Any = None, labels: Any = None, multiplier: Any = None,
             sram_voltage: float | None = None, runs: int = 1, fault_seed: int = 0, split_seed: int | None = None,
             report: str | Path | None = None, force: bool = False) -> SimulateResult:
    """Simulate a bundle (``axtrain simulate``) on ``app``'s test split or on ``inputs`` (an array,
    optionally ``labels``); ``report`` keeps the JSON report there (refused if it exists, unless ``force``)."""
    import numpy as np

    from axtrain import atomic
    from axtrain.formats.bundle import load_bundle
    from axtrain.limits import MAX_RUNS, MAX_SEED, check_range
    from axtrain.overwrite import check_file_output
    from axtrain.runtime.report import simulate_to_report

    if (app is None) == (inputs is None):
        raise ConfigError("give exactly one of app or inputs")
    check_range("runs", runs, 1, MAX_RUNS)
    check_range("fault_seed", fault_seed, 0, MAX_SEED)
    report_path = Path(report) if report is not None else None
    if report_path is not None:
        check_file_output(report_path, force)
    b = load_bundle(bundle, twins=False)  # as `axtrain simulate`: the text twins and goldens are verify's (decision 204)
    y: np.ndarray | None
    if app is not None:
        from axtrain.datasets import load

        seed = split_seed if split_seed is not None else (int(b.manifest.seed) if b.manifest.seed and b.manifest.seed.isdigit() else 0)
        data = load(app, seed=seed)
        x, y = data.x_test, data.y_test
        source: dict[str, Any] = {"source": f"app:{app} test split", "app": app, "split_seed": seed}
    else:
        x, y = np.asarray(inputs), None if labels is None else np.asarray(labels)
        source = {"source": "array"}
    _, rep = simulate_to_report(b, x, y, source, _mode(multiplier), sram_voltage, runs, fault_seed)
    if report_path is not None:
        atomic.write_json(report_path, rep)
    return _sim_result(rep, report_path)


def explore(bundle: str | Path, app: str, out: str | Path, *, max_loss: float = 0.02, runs: int = 10, fault_seed: int = 0,
            modes: Any = None, voltages: Any = None, force: bool = False, split_seed: int | None = None) -> ExploreResult:
    """Search per-layer modes and the SRAM voltage (``axtrain explore``) and write the chosen plan's bundle.
    ``fault_seed`` draws the fault maps only; ``split_seed`` (default: the bundle's training seed, else 0)
    the app's train/test split and the selection part of the training split, as the command does."""
    from axtrain.compiler.replan import write_replanned
    from axtrain.datasets import load
    from axtrain.datasets.split import split_validation
    from axtrain.explore.search import CONFIDENCE_Z, DEFAULT_MODES, DEFAULT_VOLTAGES, SELECTION_FRACTION, explore as run_search
    from axtrain.formats.bundle import load_bundle

    out = Path(out)
    if out.exists() and not force:
        raise ConfigError(f"{out} already exists (use --force to replace it)")
    b = load_bundle(bundle)
    if split_seed is None:
        split_seed = int(b.manifest.seed) if b.manifest.seed and b.manifest.seed.isdigit() else 0
    data = load(app, seed=split_seed)
    _, _, x_sel, y_sel = split_validation(data.x_train, data.y_train, SELECTION_FRACTION, split_seed)
    result = run_search(b, x_sel, y_sel, max_loss, tuple(modes or DEFAULT_MODES), tuple(voltages or DEFAULT_VOLTAGES), runs, fault_seed, confidence_z=CONFIDENCE_Z)
    write_replanned(b, result.chosen.plan, out, overwrite=force)
    c = result.chosen
    return ExploreResult(out, c.plan.label(), float(c.energy_joules), float(result.saving_vs_baseline), float(c.accuracy), result.as_dict())


def pipeline(app: str | None = None, out: str | Path | None = None, *, config: str | Path | None = None, force: bool = False,
             progress: bool = False, **settings: Any) -> PipelineResult:
    """Train, export, compile, verify and simulate (``axtrain pipeline``). ``config`` is a pipeline
    file (docs/pipeline.md); ``settings`` are its keys flat (``method``, ``epochs``, ``multiplier``,
    ``sram_voltage``, ``runs``, ``fault_seed``, ``seed``, ``arch``) and override the file."""
    from axtrain.pipeline.config import options_from
    from axtrain.pipeline.run import run_pipeline

    given = {"app": app, "out": out, **settings}
    options = options_from(Path(config) if config else None, {k: v for k, v in given.items() if v is not None}, force=force, progress=progress)
    r = run_pipeline(options)
    rep = r.report
    acc = rep["accuracy"]
    root = options.out
    paths = {"run": root / "run", "onnx": root / "model.onnx", "bundle": root / "bundle", "report": root / "report.json", "summary": root / "summary.md"}
    return PipelineResult(
        root, None if acc is None else float(acc["mean"]), float(rep["latency"]["seconds_per_inference"]), float(rep["energy"]["joules_per_inference"]),
        tuple(r.ran), tuple(r.reused), paths, rep,
    )
