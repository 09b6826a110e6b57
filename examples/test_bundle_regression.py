"""Keep a compiled bundle under regression in CI with `axtrain check` (a recipe to copy).

    pytest examples/test_bundle_regression.py

The model is examples/handbuilt_mlp.py's 8-16-3 MLP, compiled afresh by each run, so a change in the
compiler, the timing model or the energy model that moves its figures fails here. The figures and
their tolerances are pinned in handbuilt_mlp.expect.yaml, next to this file: after an intended
change, re-pin them from `axtrain simulate ... --report r.json` and say why in the commit.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
EXPECT = HERE / "handbuilt_mlp.expect.yaml"


def axtrain(*args: object) -> subprocess.CompletedProcess:
    """Run the axtrain command line as CI would (a fresh process)."""
    return subprocess.run([sys.executable, "-m", "axtrain.cli", *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = importlib.util.spec_from_file_location("handbuilt_mlp", HERE / "handbuilt_mlp.py")
    assert spec and spec.loader
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    root = tmp_path_factory.mktemp("regression")
    (root / "m.onnx").write_bytes(example.build().SerializeToString())
    done = axtrain("compile", root / "m.onnx", "--out", root / "m.bundle")
    assert done.returncode == 0, done.stderr
    # Seeded inputs: the same 64 samples every run (the report records their sha256).
    np.save(root / "x.npy", np.random.default_rng(0).uniform(-4, 4, size=(64, 8)).astype(np.float32))
    return root / "m.bundle"


def test_bundle_verifies(bundle: Path) -> None:
    done = axtrain("verify", bundle)
    assert done.returncode == 0, done.stderr


def test_pinned_figures_hold(bundle: Path) -> None:
    done = axtrain("check", bundle, "--expect", EXPECT, "--inputs", bundle.parent / "x.npy")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_moved_figure_fails_the_check(bundle: Path, tmp_path: Path) -> None:
    # The recipe's own guard: the same pins with latency 10 % off must fail with exit 1.
    text = EXPECT.read_text()
    pinned = int(text.split("latency.cycles_per_inference: {value: ")[1].split(",")[0])
    (tmp_path / "moved.yaml").write_text(text.replace(f"value: {pinned},", f"value: {round(pinned * 1.1)},"))
    done = axtrain("check", bundle, "--expect", tmp_path / "moved.yaml", "--inputs", bundle.parent / "x.npy")
    assert done.returncode == 1 and "DRIFT  latency.cycles_per_inference" in done.stdout
