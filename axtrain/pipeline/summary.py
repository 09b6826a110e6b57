"""``summary.md``: the pipeline's result for a person (accuracy, latency, energy, provenance)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from axtrain import atomic
from axtrain.provenance import versions


def _si(value: float, unit: str) -> str:
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def summary_markdown(options: Any, config: Any, train: dict[str, Any], report: dict[str, Any]) -> str:
    """The Markdown text of the summary."""
    acc = report["accuracy"]
    lat = report["latency"]
    energy = report["energy"]
    layers = report["config"]["layers"]
    modes = ", ".join(sorted({str(layer.get("multiplier")) for layer in layers}))
    volts = ", ".join(sorted({f"{float(layer.get('sram_voltage')):g} V" for layer in layers}))
    batch = int(energy.get("batch", lat.get("batch", 1)))
    thr = report.get("throughput")  # report schema 2: inferences back to back with resident weights
    throughput = [f"| throughput (batch {batch}) | {thr['inferences_per_second']:.4g} inferences/s ({thr['cycles_per_inference']:.6g} cycles per inference) |"] if thr else []
    spread = f" (std {acc['std']:.4f}, min {acc['min']:.4f}, max {acc['max']:.4f} over {len(acc['per_run'])} runs)" if len(acc["per_run"]) > 1 else ""
    lines = [
        f"# AxTrain pipeline: {options.app}, method {options.method}",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| target hardware | multiplier {modes}; weight SRAM {volts} |",
        f"| accuracy, float network (trainer) | {train['test_accuracy_float']:.4f} |",
        f"| accuracy, exact fixed point (trainer) | {train['test_accuracy_fixed_exact']:.4f} |",
        f"| accuracy on the accelerator (simulator) | {acc['mean']:.4f}{spread} |",
        f"| latency of one inference | {lat['cycles_per_inference']} cycles = {_si(lat['seconds_per_inference'], 's')} at {_si(lat['clock_hz'], 'Hz')} |",
        *throughput,
        f"| energy per inference (batch {batch}) | {_si(energy['joules_per_inference'], 'J')} (compute {_si(energy['compute_joules'], 'J')}, storage {_si(energy['storage_joules'], 'J')}, leakage {_si(energy['leakage_joules'], 'J')}) |",
        f"| average power | {_si(report['power_watts'], 'W')} |",
        f"| PE utilisation | {100 * report['utilization']:.1f} % |",
        "",
        "Artifacts: `run/` (training run), `model.onnx` (annotated QDQ ONNX), `bundle/` (FlexFlow bundle),",
        "`verify.txt`, `report.json` (full report, docs/report-schema.md).",
        "",
        "## Provenance",
        "",
        f"- training config: `{json.dumps(config.identity(), sort_keys=True)}`",
        f"- simulation: {len(acc['per_run'])} runs, seed {report['config']['seed']}, bundle sha256 `{report['bundle_sha256'][:16]}...`",
        f"- versions: {', '.join(f'{k} {v}' for k, v in sorted(versions().items()))}",
        "",
    ]
    return "\n".join(lines)


def write_summary(root: Path, options: Any, config: Any, result: Any) -> Path:
    """Write ``summary.md`` atomically."""
    return atomic.write_text(root / "summary.md", summary_markdown(options, config, result.train_summary, result.report))
