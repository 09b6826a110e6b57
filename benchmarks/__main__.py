"""Run every benchmark: ``python -m benchmarks [--quick] [--only NAME ...] [--out FILE]``.

Discovers ``benchmarks/bench_*.py``, calls each module's ``run(quick)``, prints one table and writes
the results (with the versions that produced them) to ``benchmarks/results.json`` atomically. A module
that fails to import or run is reported as a FAILED row and the others still run. Each row with a
limit gets a printed verdict (met / MISSED) with the load average of the run: the machine may be
shared, so a missed limit is reported, never an error. The exit status is 1 only if a module failed
(a bug), else 0.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/__main__.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from axtrain.atomic import write_json
from axtrain.provenance import versions
from benchmarks.common import Result, format_table

HERE = Path(__file__).resolve().parent


def discover() -> list[str]:
    """Short names (``hwmodels`` for ``bench_hwmodels.py``) of every benchmark module, sorted."""
    return sorted(path.stem[len("bench_"):] for path in HERE.glob("bench_*.py"))


def run_module(name: str, quick: bool) -> tuple[list[Result], str | None]:
    """Import ``benchmarks.bench_<name>`` and run it; on any failure, one FAILED row and the reason."""
    try:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        results = list(module.run(quick=quick))
        if not all(isinstance(r, Result) for r in results):
            raise TypeError("run() must return a list of benchmarks.common.Result")
        return results, None
    except Exception as exc:  # noqa: BLE001 - one broken benchmark must not stop the others
        reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        traceback.print_exc(file=sys.stderr)
        failed = Result(name=f"{name} (FAILED)", measured_s=math.nan, baseline_name=f"FAILED: {type(exc).__name__}"[:28],
                        baseline_s=math.nan, note=reason)
        return [failed], reason


def _json_safe(row: dict) -> dict:
    # JSON has no NaN: a failed row's times become null.
    return {key: (None if isinstance(value, float) and not math.isfinite(value) else value) for key, value in row.items()}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller inputs (a smoke run)")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only this benchmark (e.g. 'hwmodels' or 'bench_hwmodels'); repeatable")
    parser.add_argument("--out", type=Path, default=HERE / "results.json", help="results file (default: benchmarks/results.json)")
    args = parser.parse_args(argv)

    available = discover()
    wanted = [name.removeprefix("bench_").removesuffix(".py") for name in args.only] or available
    unknown = [name for name in wanted if name not in available]
    if unknown:
        print(f"error: unknown benchmark {', '.join(unknown)}; available: {', '.join(available)}", file=sys.stderr)
        return 2

    rows: list[Result] = []
    failures: dict[str, str] = {}
    started = time.time()
    for name in wanted:
        print(f"running bench_{name} ...", file=sys.stderr, flush=True)
        results, reason = run_module(name, args.quick)
        rows.extend(results)
        if reason is not None:
            failures[name] = reason

    print(format_table(rows))
    for name, reason in failures.items():
        print(f"FAILED bench_{name}: {reason}")
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    print(f"verdicts (load average {load} on {os.cpu_count()} CPUs; ratios are measured within one run):")
    for r in rows:
        if r.ok is not None:
            print(f"  {'met   ' if r.ok else 'MISSED'} {r.name.strip()}: {r.ratio:.2f} (limit {r.limit:g})")
    write_json(args.out, {
        "quick": args.quick,
        "started_unix": started,
        "seconds": time.time() - started,
        "versions": versions(),
        "benchmarks": wanted,
        "failed": failures,
        "results": [_json_safe(r.as_dict()) for r in rows],
    })
    print(f"wrote {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
