"""Check a simulation report (schema ``axtrain-simulation-report/2``, docs/report-schema.md).

:func:`check_report` lists what is wrong with a report: a missing key, a wrong type, or numbers that
disagree with each other (accuracy summary vs ``per_run``, energy total vs its parts and breakdown,
latency vs cycles and clock, throughput vs batch and cycles, power vs energy and the batch's time,
the per-layer table vs the totals). An empty list means the report is valid.
Used by the tests of ``axtrain simulate`` and ``axtrain pipeline``; users can run it on reports they
keep in regression suites::

    python -m axtrain.runtime.report_check out/p/report.json
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Mapping

from axtrain.runtime.report import SCHEMA

#: Top-level keys and their JSON types.
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "schema": str, "app": str, "bundle_sha256": str, "source_onnx_sha256": str, "inputs": dict, "config": dict,
    "accuracy": dict, "latency": dict, "throughput": dict, "energy": dict, "power_watts": (int, float), "utilization": (int, float),
    "events": dict, "per_layer": list,
}
REL_TOL = 1e-9  # sums of floats in a different order


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-30)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_report(report: Mapping[str, Any]) -> list[str]:
    """Every problem found in ``report`` (empty: valid)."""
    problems: list[str] = []
    for key, kind in REQUIRED.items():
        if key not in report:
            problems.append(f"missing key {key!r}")
        elif not isinstance(report[key], kind) or isinstance(report[key], bool):
            problems.append(f"{key!r} has type {type(report[key]).__name__}")
    if problems:
        return problems
    if report["schema"] != SCHEMA:
        problems.append(f"schema is {report['schema']!r}, expected {SCHEMA!r}")

    acc, runs = report["accuracy"], report["config"].get("runs")
    per_run = acc.get("per_run")
    if per_run is not None:
        if not isinstance(per_run, list) or not per_run or not all(_number(a) and 0.0 <= a <= 1.0 for a in per_run):
            problems.append("accuracy.per_run must be a non-empty list of numbers in [0, 1]")
        else:
            if runs is not None and len(per_run) != runs:
                problems.append(f"accuracy.per_run has {len(per_run)} entries, config.runs is {runs}")
            mean = sum(per_run) / len(per_run)
            std = math.sqrt(sum((a - mean) ** 2 for a in per_run) / len(per_run))
            for name, expected in (("mean", mean), ("min", min(per_run)), ("max", max(per_run))):
                if not _number(acc.get(name)) or not math.isclose(acc[name], expected, abs_tol=1e-12):
                    problems.append(f"accuracy.{name} is {acc.get(name)!r}, per_run gives {expected!r}")
            if not _number(acc.get("std")) or not math.isclose(acc["std"], std, abs_tol=1e-9):
                problems.append(f"accuracy.std is {acc.get('std')!r}, per_run gives {std!r}")

    lat = report["latency"]
    cycles, seconds, clock = lat.get("cycles_per_inference"), lat.get("seconds_per_inference"), lat.get("clock_hz")
    batch, batch_cycles, batch_seconds = lat.get("batch"), lat.get("cycles_per_batch"), lat.get("seconds_per_batch")
    if not (isinstance(cycles, int) and cycles > 0 and _number(seconds) and _number(clock) and clock > 0):
        problems.append("latency needs a positive integer cycles_per_inference and positive seconds_per_inference, clock_hz")
        return problems
    if not _close(seconds, cycles / clock):
        problems.append(f"latency.seconds_per_inference {seconds!r} != cycles / clock_hz {cycles / clock!r}")
    if not (isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1 and isinstance(batch_cycles, int) and _number(batch_seconds)):
        problems.append("latency needs a positive integer batch, an integer cycles_per_batch and seconds_per_batch")
        return problems
    if not _close(batch_seconds, batch_cycles / clock):
        problems.append(f"latency.seconds_per_batch {batch_seconds!r} != cycles_per_batch / clock_hz {batch_cycles / clock!r}")
    if not cycles <= batch_cycles <= batch * cycles:
        problems.append(f"latency.cycles_per_batch {batch_cycles} is outside [cycles_per_inference, batch x cycles_per_inference] = [{cycles}, {batch * cycles}]")
    thr = report["throughput"]
    if thr.get("batch") != batch or not _number(thr.get("cycles_per_inference")) or not _close(thr["cycles_per_inference"], batch_cycles / batch):
        problems.append(f"throughput.batch / cycles_per_inference disagree with latency (batch {batch}, {batch_cycles} cycles)")
    elif not _number(thr.get("inferences_per_second")) or not _close(thr["inferences_per_second"], batch / batch_seconds):
        problems.append(f"throughput.inferences_per_second {thr.get('inferences_per_second')!r} != batch / seconds_per_batch {batch / batch_seconds!r}")

    energy = report["energy"]
    parts = {k: energy.get(k) for k in ("compute_joules", "storage_joules", "leakage_joules")}
    total = energy.get("joules_per_inference")
    if not all(_number(v) and v >= 0 for v in (*parts.values(), total)):
        problems.append("energy needs non-negative joules_per_inference, compute_joules, storage_joules, leakage_joules")
    else:
        if not _close(total, sum(parts.values())):
            problems.append(f"energy.joules_per_inference {total!r} != compute + storage + leakage {sum(parts.values())!r}")
        breakdown = energy.get("breakdown", {})
        for group in ("compute", "storage", "leakage"):
            items = breakdown.get(group)
            if not isinstance(items, dict) or not all(_number(v) for v in items.values()):
                problems.append(f"energy.breakdown.{group} must map names to numbers")
            elif not _close(sum(items.values()), parts[f"{group}_joules"]):
                problems.append(f"energy.breakdown.{group} sums to {sum(items.values())!r}, energy.{group}_joules is {parts[f'{group}_joules']!r}")
        if not problems and not _close(report["power_watts"], total * batch / batch_seconds):
            problems.append(f"power_watts {report['power_watts']!r} != joules per inference x batch / seconds_per_batch {total * batch / batch_seconds!r}")
        if not problems:
            problems += _check_per_layer(report, batch_cycles, total)

    problems += _check_output_error(report)
    if not 0.0 <= report["utilization"] <= 1.0:
        problems.append(f"utilization {report['utilization']!r} is outside [0, 1]")
    if report["events"].get("cycles") not in (None, batch_cycles):
        problems.append(f"events.cycles {report['events'].get('cycles')!r} != latency.cycles_per_batch {batch_cycles!r}")
    return problems


def _check_per_layer(report: Mapping[str, Any], batch_cycles: int, joules: float) -> list[str]:
    """``per_layer``: each row's cycles split into compute + transfer + stall; the rows' cycles sum
    to the batch's, their energies to the energy per inference, their MACs to the events'."""
    rows = report["per_layer"]
    if not rows:
        return ["per_layer is empty"]
    problems = []
    cycle_sum, energy_sum, macs = 0, 0.0, 0
    for index, row in enumerate(rows):
        c, e = row.get("cycles"), row.get("energy")
        if not isinstance(c, dict) or not all(isinstance(c.get(k), int) and c[k] >= 0 for k in ("total", "compute", "transfer", "stall")):
            return [f"per_layer[{index}].cycles needs non-negative integers total, compute, transfer, stall"]
        if c["compute"] + c["transfer"] + c["stall"] != c["total"]:
            problems.append(f"per_layer[{index}].cycles: compute + transfer + stall != total ({c})")
        if not isinstance(e, dict) or not all(_number(v) and v >= 0 for v in e.values()) or "total" not in e:
            return [f"per_layer[{index}].energy must map components to non-negative joules, with a total"]
        if not _close(sum(v for k, v in e.items() if k != "total"), e["total"]):
            problems.append(f"per_layer[{index}].energy: the components sum to {sum(v for k, v in e.items() if k != 'total')!r}, total is {e['total']!r}")
        if not (_number(row.get("pe_utilization")) and 0.0 <= row["pe_utilization"] <= 1.0):
            problems.append(f"per_layer[{index}].pe_utilization {row.get('pe_utilization')!r} is outside [0, 1]")
        cycle_sum += c["total"]
        energy_sum += e["total"]
        macs += int(row.get("macs", 0))
    if cycle_sum != batch_cycles:
        problems.append(f"per_layer cycles sum to {cycle_sum}, latency.cycles_per_batch is {batch_cycles}")
    if not math.isclose(energy_sum, joules, rel_tol=1e-9, abs_tol=1e-30):
        problems.append(f"per_layer energies sum to {energy_sum!r}, energy.joules_per_inference is {joules!r}")
    multiplies = report["events"].get("multiplies")
    if isinstance(multiplies, dict) and macs != sum(multiplies.values()):
        problems.append(f"per_layer MACs sum to {macs}, events.multiplies to {sum(multiplies.values())}")
    return problems


_METRICS = ("mse", "ce", "brier", "error_rate")


def _check_output_error(report: Mapping[str, Any]) -> list[str]:
    """``output_error``: null without labels; else each metric a number in its range, the mean of
    ``per_run`` (one entry per run), and ``error_rate`` = 1 - accuracy of each run. A report from
    before the key existed (no ``output_error`` at all) passes."""
    if "output_error" not in report:
        return []
    err, acc = report["output_error"], report["accuracy"]
    labelled = acc.get("per_run") is not None
    if err is None:
        return ["output_error is null, but the inputs were labelled (accuracy.per_run is set)"] if labelled else []
    if not isinstance(err, dict):
        return [f"output_error has type {type(err).__name__}"]
    if not labelled:
        return ["output_error is set, but accuracy.per_run is null (no labels)"]
    problems = []
    if err.get("outputs") not in ("sigmoid", "softmax"):
        problems.append(f"output_error.outputs is {err.get('outputs')!r}, expected 'sigmoid' or 'softmax'")
    limits = {"mse": None, "ce": None, "brier": 2.0, "error_rate": 1.0}
    per_run = err.get("per_run")
    if not isinstance(per_run, list) or len(per_run) != len(acc["per_run"]) or not all(isinstance(r, dict) for r in per_run):
        return problems + [f"output_error.per_run must be a list of {len(acc['per_run'])} objects (one per run)"]
    for name in _METRICS:
        values = [r.get(name) for r in per_run]
        upper = limits[name]
        if not all(_number(v) and v >= 0 and (upper is None or v <= upper + 1e-12) for v in values):
            problems.append(f"output_error.per_run[].{name} must be numbers in [0, {upper if upper is not None else 'inf'}]")
            continue
        mean = sum(values) / len(values)
        if not _number(err.get(name)) or not math.isclose(err[name], mean, rel_tol=1e-9, abs_tol=1e-12):
            problems.append(f"output_error.{name} is {err.get(name)!r}, per_run gives {mean!r}")
    if not problems:
        # strict=False: a length mismatch is a problem reported on its own, not an exception here
        for index, (run, accuracy) in enumerate(zip(per_run, acc["per_run"], strict=False)):
            if not math.isclose(run["error_rate"], 1.0 - accuracy, abs_tol=1e-9):
                problems.append(f"output_error.per_run[{index}].error_rate {run['error_rate']!r} != 1 - accuracy {1.0 - accuracy!r}")
                break
    return problems


def main(argv: list[str] | None = None) -> int:
    """``python -m axtrain.runtime.report_check FILE...``: one line per problem, exit 2 if any."""
    args = sys.argv[1:] if argv is None else argv
    usage = "usage: python -m axtrain.runtime.report_check REPORT.json [...]"
    if args and args[0] in ("-h", "--help"):
        print(f"{usage}\n\nChecks each simulation report's keys, types and internal consistency ({SCHEMA});\n"
              "prints one line per problem and exits 2 if any report has one, else 0.")
        return 0
    options = [a for a in args if a.startswith("-") and a != "-"]
    if options:
        print(f"error: unknown option {options[0][:200]!r} ({usage})", file=sys.stderr)
        return 2
    if not args:
        print(usage, file=sys.stderr)
        return 2
    bad = 0
    for name in args:
        try:
            report = json.loads(Path(name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            print(f"error: {name}: cannot read a JSON report ({' '.join(str(exc).split())[:200]})", file=sys.stderr)
            bad += 1
            continue
        problems = check_report(report) if isinstance(report, dict) else ["not a JSON object"]
        for problem in problems:
            print(f"error: {name}: {problem}", file=sys.stderr)
        bad += bool(problems)
        if not problems:
            print(f"{name}: valid {SCHEMA} report")
    return 2 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
