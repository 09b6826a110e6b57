"""The Python API end to end on breast-cancer, small enough to run in seconds (docs/api.md).

    python examples/api_quickstart.py [FOLDER]      # default: out/api

Trains a BP network for 3 epochs, exports, compiles and simulates it under DRUM(2) at 0.66 V, then
runs the pipeline on the same settings. tests/examples/test_api_quickstart.py runs this file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import axtrain


def main(folder: Path) -> None:
    run = axtrain.train("breast-cancer", folder / "run", method="bp", epochs=3)
    print(f"train: {run.run_dir}: float {run.accuracy_float:.4f}, exact fixed point {run.accuracy_exact:.4f}")
    onnx = axtrain.export(run.run_dir, folder / "bc.onnx")
    bundle = axtrain.compile(onnx.path, folder / "bc.bundle")
    print(f"compile: {bundle.path}: {bundle.layers} layers, {bundle.instructions} instructions")
    sim = axtrain.simulate(bundle.path, "breast-cancer", multiplier="drum:2", sram_voltage=0.66, runs=5, report=folder / "bc.json")
    print(f"simulate: accuracy {sim.accuracy:.4f} (std {sim.accuracy_std:.4f}), {sim.latency_cycles} cycles, {sim.energy_joules * 1e9:.3f} nJ per inference")
    p = axtrain.pipeline("breast-cancer", folder / "pipe", method="bp", epochs=3, runs=5)
    print(f"pipeline: {p.out}: accuracy {p.accuracy:.4f}, {p.energy_joules * 1e9:.3f} nJ; ran {', '.join(p.ran)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("out/api"))
