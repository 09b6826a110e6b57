"""Run every benchmark: ``python -m benchmarks [--quick] [--only NAME ...] [--out FILE] [--in-process]``.

Discovers ``benchmarks/bench_*.py``, calls each module's ``run(quick)`` in a fresh Python process of
its own (``--in-process``: all in this one), prints one table and writes the results (with the
versions that produced them) to ``benchmarks/results.json`` atomically. A module that fails to
import or run, or whose process dies, is reported as a FAILED row and the others still run. Each row
with a limit gets a printed verdict (met / MISSED) with the load average of the run: the machine may
be shared, so a missed limit is reported, never an error. The exit status is 1 only if a module
failed (a bug), else 0.

Why a process per module (docs/decisions.md 220): a module's figures must not depend on which
modules ran before it. In one process they did: the heap and allocator settings, the imported
modules the garbage collector walks, and the thread pools torch and onnxruntime leave behind moved
some rows by up to 1.6x (decision 177).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from types import ModuleType

if __package__ in (None, ""):  # run as `python benchmarks/__main__.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from axtrain.atomic import write_json
from axtrain.provenance import versions
from benchmarks.common import Result, format_table

HERE = Path(__file__).resolve().parent


def discover(directory: Path | None = None) -> list[str]:
    """Short names (``hwmodels`` for ``bench_hwmodels.py``) of every benchmark module in
    ``directory`` (default: this package), sorted."""
    return sorted(path.stem[len("bench_"):] for path in (directory or HERE).glob("bench_*.py"))


def _load(name: str, directory: Path | None) -> ModuleType:
    """``benchmarks.bench_<name>``, from ``directory`` when given (the runner's own tests)."""
    if directory is None:
        return importlib.import_module(f"benchmarks.bench_{name}")
    spec = importlib.util.spec_from_file_location(f"benchmarks.bench_{name}", directory / f"bench_{name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"no benchmark module bench_{name}.py in {directory}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _failed(name: str, kind: str, reason: str) -> Result:
    """The FAILED row of a module that did not report."""
    return Result(name=f"{name} (FAILED)", measured_s=math.nan, baseline_name=f"FAILED: {kind}"[:28], baseline_s=math.nan, note=reason)


def run_module(name: str, quick: bool, directory: Path | None = None) -> tuple[list[Result], str | None]:
    """Import ``benchmarks.bench_<name>`` and run it here; on any failure, one FAILED row and the reason."""
    try:
        module = _load(name, directory)
        results = list(module.run(quick=quick))
        if not all(isinstance(r, Result) for r in results):
            raise TypeError("run() must return a list of benchmarks.common.Result")
        return results, None
    except Exception as exc:  # noqa: BLE001 - one broken benchmark must not stop the others
        reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        traceback.print_exc(file=sys.stderr)
        return [_failed(name, type(exc).__name__, reason)], reason


def run_isolated(name: str, quick: bool, directory: Path | None = None) -> tuple[list[Result], str | None]:
    """:func:`run_module` in a fresh Python process (this script with ``--child``); its rows come back
    as JSON. A process that dies before it reports (a crash, a kill) is a FAILED row with its status."""
    with tempfile.TemporaryDirectory(prefix="axtrain-bench-") as tmp:
        report = Path(tmp) / "rows.json"
        command = [sys.executable, str(HERE / "__main__.py"), "--child", name, "--out", str(report)]
        command += ["--quick"] if quick else []
        command += ["--modules-dir", str(directory)] if directory is not None else []
        status = subprocess.run(command, cwd=HERE.parent, check=False).returncode
        if not report.exists():
            reason = f"its process exited with status {status} before reporting"
            return [_failed(name, f"exit {status}", reason)], reason
        data = json.loads(report.read_text())
    return [Result(**row) for row in data["rows"]], data["failure"]


def _child(name: str, quick: bool, directory: Path | None, out: Path) -> int:
    """``--child``: run one module here and write its rows to ``out`` (temp file, then rename)."""
    results, reason = run_module(name, quick, directory)
    partial = out.with_name(out.name + ".partial")
    # NaN (a failed row's times) is written as JSON's NaN extension; only this runner reads it back.
    partial.write_text(json.dumps({"rows": [asdict(r) for r in results], "failure": reason}))
    partial.replace(out)
    return 0


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
    parser.add_argument("--in-process", action="store_true",
                        help="run every module in this process instead of one fresh process each (for profiling; "
                             "a module's figures may then depend on the modules run before it)")
    parser.add_argument("--modules-dir", type=Path, default=None, help=argparse.SUPPRESS)  # the runner's tests
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one module, rows to --out (run_isolated)
    args = parser.parse_args(argv)
    if args.child is not None:
        return _child(args.child, args.quick, args.modules_dir, args.out)

    available = discover(args.modules_dir)
    wanted = [name.removeprefix("bench_").removesuffix(".py") for name in args.only] or available
    unknown = [name for name in wanted if name not in available]
    if unknown:
        print(f"error: unknown benchmark {', '.join(unknown)}; available: {', '.join(available)}", file=sys.stderr)
        return 2

    rows: list[Result] = []
    failures: dict[str, str] = {}
    started = time.time()
    run = run_module if args.in_process else run_isolated
    for name in wanted:
        print(f"running bench_{name} ...", file=sys.stderr, flush=True)
        results, reason = run(name, args.quick, args.modules_dir)
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
