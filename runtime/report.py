"""The simulation report (JSON, docs/report-schema.md) and its terminal summary.

Deterministic: the same bundle, inputs, options and seed give byte-identical JSON (sorted keys, no
timestamps, no file paths: inputs and bundle are identified by sha256).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from axtrain.formats.bundle import Bundle, bundle_content_sha256
from axtrain.hwmodels.multipliers import MultiplierMode
from axtrain.hwmodels.technology import DEFAULT_65NM, TechnologyTable
from axtrain.provenance import versions
from axtrain.runtime.host_tail import METRICS, output_reading, tail_ops
from axtrain.runtime.per_layer import per_layer_rows
from axtrain.runtime.simulation import SimulationResult, array_sha256, layer_settings, simulate

SCHEMA = "axtrain-simulation-report/2"  # 2: batch, throughput, per-layer table, cycles split (machine model v2)
DEFAULT_BATCH = 100  # inferences per batch for `axtrain simulate` and the pipeline (decision 131)


def build_report(
    bundle: Bundle,
    result: SimulationResult,
    inputs: dict[str, Any],
    technology: dict[str, Any],
    tech: TechnologyTable = DEFAULT_65NM,
) -> dict[str, Any]:
    """The report dict. ``inputs`` describes where the inputs came from (app, split seed, sha256,
    count, labelled); ``technology`` names the energy table (``default`` or a file's sha256) and
    ``tech`` is that table (it prices the per-layer rows)."""
    events, energy = result.events, result.energy
    accuracy: dict[str, Any]
    if result.per_run_accuracy is None:
        accuracy = {"mean": None, "std": None, "min": None, "max": None, "per_run": None}
    else:
        per_run = np.array(result.per_run_accuracy)
        accuracy = {
            "mean": float(per_run.mean()),
            "std": float(per_run.std()),  # population standard deviation over the runs (ddof=0)
            "min": float(per_run.min()),
            "max": float(per_run.max()),
            "per_run": [float(a) for a in per_run],
        }
    machine = result.machine
    batch = machine.batch if machine is not None else 1
    first_cycles = machine.first_inference_cycles if machine is not None else int(events.cycles)
    clock = bundle.arch.clock_hz
    batch_seconds = events.cycles / clock
    tail = tail_ops(bundle)
    return {
        "schema": SCHEMA,
        "app": bundle.manifest.app,
        "bundle_sha256": bundle_content_sha256(bundle),  # the identity: what the hardware sees, not file names
        "source_onnx_sha256": bundle.manifest.source_onnx_sha256,
        "inputs": inputs,
        "config": {
            "multiplier": None if result.mode_override is None else str(result.mode_override),
            "sram_voltage": result.sram_voltage,
            "layers": layer_settings(bundle, result.mode_override, result.sram_voltage),
            "runs": result.runs,
            "seed": result.seed,
            "fault_seeding": "run i: numpy.random.SeedSequence([seed, i])",
            "host_tail": tail,
            "technology": technology,
            "arch": bundle.arch.to_json(),
            "versions": versions(),
        },
        "accuracy": accuracy,
        "output_error": output_error_summary(result.per_run_output_error, tail),
        "latency": {
            "batch": batch,
            "cycles_per_inference": int(first_cycles),  # one inference alone (the first of the batch)
            "seconds_per_inference": first_cycles / clock,
            "cycles_per_batch": int(events.cycles),
            "seconds_per_batch": batch_seconds,
            "clock_hz": clock,
            "data_independent": True,
        },
        "throughput": {
            "batch": batch,
            "inferences_per_second": batch / batch_seconds if batch_seconds > 0 else 0.0,
            "cycles_per_inference": events.cycles / batch,
        },
        "energy": {**energy.as_dict(), "batch": batch},
        "power_watts": energy.power_watts,
        "utilization": energy.utilization,
        "events": events.as_dict(),
        "per_layer": per_layer_rows(bundle.layers, machine, tech, bundle.arch) if machine is not None else [],
    }


def output_error_summary(per_run: tuple[dict[str, float], ...] | None, tail: list[str]) -> dict[str, Any] | None:
    """The report's ``output_error`` object: each metric's mean over the runs, which outputs were
    scored and the per-run values; None without labels (docs/report-schema.md)."""
    if per_run is None:
        return None
    summary: dict[str, Any] = {name: float(np.mean([run[name] for run in per_run])) for name in METRICS}
    summary["outputs"] = output_reading(tail)
    summary["per_run"] = [{name: float(run[name]) for name in METRICS} for run in per_run]
    return summary


def simulate_to_report(
    bundle: Bundle,
    x: np.ndarray,
    y: np.ndarray | None,
    source: dict[str, Any],
    multiplier: str | MultiplierMode | None = None,
    sram_voltage: float | None = None,
    runs: int = 1,
    seed: int = 0,
    tech: TechnologyTable = DEFAULT_65NM,
    technology: dict[str, Any] | None = None,
    weight_images: np.ndarray | None = None,
    batch: int = DEFAULT_BATCH,
) -> tuple[SimulationResult, dict[str, Any]]:
    """Simulate ``x`` (labels ``y``) on ``bundle`` and build its report.

    ``source`` says where the inputs came from (e.g. an app's test split); the input count, their
    sha256 and whether they were labelled are added here. ``technology`` names the energy table
    (default: the built-in 65 nm one). ``batch``: inferences run back to back with resident weights
    (latency, throughput and energy per inference at that batch). Shared by ``axtrain simulate`` and
    ``axtrain pipeline``.
    """
    result = simulate(bundle, x, y, multiplier, sram_voltage, runs, seed, tech, weight_images=weight_images, batch=batch)
    described = {**source, "count": int(result.outputs.shape[0]), "sha256": array_sha256(np.asarray(x, dtype=np.float32)), "labelled": y is not None}
    return result, build_report(bundle, result, described, technology or {"source": "default-65nm"}, tech)


def _si(value: float, unit: str) -> str:
    for scale, prefix in ((1.0, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p")):
        if abs(value) >= scale:
            return f"{value / scale:.4g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _cycle_split(events: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary's line of the batch's cycles split (absent in a report without the split)."""
    total = events.get("cycles", 0)
    if not total or "compute_cycles" not in events:
        return []
    parts = ", ".join(f"{name} {100 * events[f'{name}_cycles'] / total:.1f} %" for name in ("compute", "transfer", "stall"))
    return [("cycles", parts)]


def format_summary(report: dict[str, Any]) -> str:
    """A readable summary table of a report."""
    acc = report["accuracy"]
    lat = report["latency"]
    en = report["energy"]
    cfg = report["config"]
    modes = sorted({str(row["multiplier"]) for row in cfg["layers"]})
    volts = sorted({row["sram_voltage"] for row in cfg["layers"]})
    rows = [
        ("app", f"{report['app']}  ({report['inputs'].get('count')} inputs, {report['inputs'].get('source')})"),
        ("multiplier", ", ".join(modes) + ("  (override)" if cfg["multiplier"] else "  (bundle)")),
        ("weight SRAM voltage", ", ".join(f"{v:g} V" for v in volts) + ("  (override)" if cfg["sram_voltage"] is not None else "  (bundle)")),
        ("runs / seed", f"{cfg['runs']} / {cfg['seed']}"),
    ]
    if acc["mean"] is None:
        rows.append(("accuracy", "n/a (no labels)"))
    elif cfg["runs"] > 1:
        rows.append(("accuracy", f"mean {acc['mean']:.4f}  std {acc['std']:.4f}  min {acc['min']:.4f}  max {acc['max']:.4f}"))
    else:
        rows.append(("accuracy", f"{acc['mean']:.4f}"))
    err = report.get("output_error")
    if err is not None:
        rows.append(("output error", f"mse {err['mse']:.4f}  ce {err['ce']:.4f}  brier {err['brier']:.4f}  ({err['outputs']} outputs)"))
    batch = lat.get("batch", 1)
    thr = report.get("throughput", {})
    storage = en["breakdown"]["storage"]
    on_chip = sum(v for k, v in storage.items() if k != "dram")
    rows += [
        ("latency", f"{lat['cycles_per_inference']} cycles = {_si(lat['seconds_per_inference'], 's')} at {lat['clock_hz'] / 1e9:g} GHz (one inference alone)"),
        (f"throughput (batch {batch})", f"{thr.get('inferences_per_second', 0.0):.4g} inferences/s  ({thr.get('cycles_per_inference', lat['cycles_per_inference']):.6g} cycles per inference)"),
        (f"energy / inference (batch {batch})", _si(en["joules_per_inference"], "J")),
        ("  compute", f"{_si(en['compute_joules'], 'J')}  (multipliers {_si(sum(v for k, v in en['breakdown']['compute'].items() if k.startswith('multipliers')), 'J')})"),
        ("  storage", f"{_si(en['storage_joules'], 'J')}  (DRAM {_si(storage.get('dram', 0.0), 'J')}, on-chip {_si(on_chip, 'J')})"),
        ("  leakage", _si(en["leakage_joules"], "J")),
        ("average power", _si(report["power_watts"], "W")),
        *_cycle_split(report.get("events", {})),
        ("PE utilization", f"{100 * report['utilization']:.1f} %"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
