"""`axtrain simulate` and `axtrain compile` import only what they use (issue 15, start-up): a fresh
process running each command on a small graph never loads torch, numba, matplotlib, PyYAML or tqdm, and
simulate never loads onnx or onnxruntime either. The time it takes is a benchmark
(benchmarks/bench_startup.py), not a test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from .conftest import network

NEVER = ("torch", "matplotlib", "yaml", "tqdm", "safetensors", "pandas", "scipy", "numba", "llvmlite")

_PROBE = """
import sys
from axtrain.cli import main
try:
    main(sys.argv[1:])
except SystemExit as stop:
    assert not stop.code, stop.code
print(",".join(sorted(name for name in sys.modules if "." not in name)))
"""


def _top_level_modules(args: list[str], cwd: Path) -> set[str]:
    done = subprocess.run([sys.executable, "-c", _PROBE, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.strip().splitlines()[-1].split(","))


def test_compile_and_simulate_import_only_what_they_use(tmp_path: Path) -> None:
    import warnings

    from axtrain.trainer.export import export_layers, save_model

    layers, shape = network("mlp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights: the exporter's float32 bound warning is irrelevant
        save_model(export_layers(layers, shape, {"app": "custom", "seed": "0"}), tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).uniform(-1, 1, (5, *shape)).astype(np.float32))

    compiled = _top_level_modules(["compile", "m.onnx", "--out", "b"], tmp_path)
    assert "onnx" in compiled  # the probe sees the modules a command needs
    assert not compiled & set(NEVER), sorted(compiled & set(NEVER))

    simulated = _top_level_modules(["simulate", "b", "--inputs", "x.npy"], tmp_path)
    assert "numpy" in simulated
    unwanted = simulated & set(NEVER + ("onnx", "onnxruntime"))
    assert not unwanted, sorted(unwanted)
