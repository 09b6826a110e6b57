"""Start-up cost of ``axtrain simulate`` and ``axtrain compile`` (issue 15): what a fresh process
imports before it does any work, measured with ``python -X importtime`` in this run.

Baselines from the same run: ``import numpy`` (every axtrain command needs it) and ``python -c pass``.
Rows: the import time of each command (the sum of its top-level imports, as ``-X importtime``
reports them) against ``import numpy``'s, and the whole-process wall time of ``axtrain simulate`` on a
one-input job against an empty interpreter. The note lists heavy modules that were imported (it
should say none; tests/runtime/test_startup_imports.py enforces it).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as `python benchmarks/bench_startup.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Result, format_table

HEAVY = ("torch", "matplotlib", "yaml", "tqdm", "onnxruntime", "pandas", "scipy")
_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")
_CLI = "import sys; from axtrain.cli import main; sys.exit(main())"


def import_profile(args: list[str], cwd: Path) -> tuple[float, float, set[str]]:
    """``python -X importtime ARGS``: (seconds of top-level imports, wall seconds, modules imported)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited with {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    total_us, modules = 0, set()
    for line in done.stderr.splitlines():
        match = _LINE.match(line)
        if match:
            modules.add(match.group(4).split(".")[0])
            if not match.group(3).strip(" ") and len(match.group(3)) == 1:  # a top-level import (one space)
                total_us += int(match.group(2))
    return total_us / 1e6, wall, modules


def _bundle(tmp: Path) -> Path:
    from axtrain.compiler.pipeline import compile_to_bundle
    from axtrain.hwmodels.fixedpoint import FixedPointFormat as F
    from axtrain.hwmodels.layers import QuantizedLayer
    from axtrain.trainer.export import export_layers, save_model

    rng = np.random.default_rng(0)
    layers = [
        QuantizedLayer("fc1", "dense", F(8, 4), F(8, 1), rng.integers(-90, 90, (32, 64)), F(8, 7), rng.integers(-4000, 4000, 32), True),
        QuantizedLayer("fc2", "dense", F(8, 1), F(8, 2), rng.integers(-90, 90, (10, 32)), F(8, 7), rng.integers(-4000, 4000, 10), False),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_model(export_layers(layers, (64,), {"app": "custom", "seed": "0"}), tmp / "m.onnx")
    np.save(tmp / "x.npy", rng.uniform(-1, 1, (1, 64)).astype(np.float32))
    return compile_to_bundle(tmp / "m.onnx", tmp / "b", overwrite=True)


def run(quick: bool = False) -> list[Result]:
    """Import times of compile and simulate against ``import numpy``, measured alternately."""
    rounds = 2 if quick else 5
    best: dict[str, tuple[float, float]] = {}
    seen: dict[str, set[str]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        cwd = Path(tmp)
        _bundle(cwd)
        jobs = {
            "pass": ["-c", "pass"],
            "numpy": ["-c", "import numpy"],
            "simulate": ["-c", _CLI, "simulate", "b", "--inputs", "x.npy"],
            "compile": ["-c", _CLI, "compile", "m.onnx", "--out", "b2", "--force"],
        }
        for _ in range(rounds):  # alternated, so that a change of load hits every job alike
            for name, args in jobs.items():
                imports, wall, modules = import_profile(args, cwd)
                previous = best.get(name, (float("inf"), float("inf")))
                best[name] = (min(previous[0], imports), min(previous[1], wall))
                seen[name] = modules
    heavy = {name: sorted(seen[name] & set(HEAVY)) for name in ("simulate", "compile")}
    note = "; ".join(f"{name} imports {', '.join(mods) if mods else 'none'} of {', '.join(HEAVY)}" for name, mods in heavy.items())
    return [
        Result("axtrain simulate: imports (-X importtime)", best["simulate"][0], "import numpy (-X importtime)", best["numpy"][0], note=note),
        Result("axtrain compile: imports (-X importtime)", best["compile"][0], "import numpy (-X importtime)", best["numpy"][0], note="compile needs onnx"),
        Result("axtrain simulate 1 input: whole process", best["simulate"][1], "python -c pass", best["pass"][1]),
        Result("  same, against import numpy", best["simulate"][1], "python -c 'import numpy'", best["numpy"][1]),
    ]


if __name__ == "__main__":
    results = run(quick="--quick" in sys.argv)
    print(format_table(results))
    for r in results:
        if r.note:
            print(f"  {r.name}: {r.note}")
