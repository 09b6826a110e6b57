"""Exact mode: ``axtrain simulate --dump-outputs`` equals onnxruntime on the ONNX file the bundle was
compiled from, on every test sample of each application's data set.

Networks have each application's topology with seeded random integer weights (the simulator's
numerics do not care whether weights were trained; trained runs are compared the same way by the
trainer's end-to-end tests). onnxruntime runs through ``trainer.export.bit_exact_session`` (QDQ
fusions off, docs/decisions.md item 7). The four UCI applications run in the fast tier; the two MNIST
ones (10,000 samples each) are marked slow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from axtrain.cli import main
from axtrain.datasets import APPLICATIONS, load
from axtrain.hwmodels.fixedpoint import FixedPointFormat as F
from axtrain.hwmodels.layers import QuantizedLayer

pytest.importorskip("onnxruntime", reason="onnxruntime is the reference of this comparison")


def app_network(app: str, seed: int = 0) -> tuple[list[QuantizedLayer], tuple[int, ...]]:
    """The application's topology with random 8-bit weights; formats fixed by hand (inputs are
    standardised, |x| < 8 -> s8.4)."""
    rng = np.random.default_rng(seed)
    spec = APPLICATIONS[app]

    def dense(name, n_out, n_in, fi, fo, relu):
        return QuantizedLayer(name, "dense", fi, fo, rng.integers(-90, 90, (n_out, n_in)), F(8, 7), rng.integers(-4000, 4000, n_out), relu)

    if spec.kind == "mlp":
        widths = spec.topology
        layers, fmt = [], F(8, 4)
        for i in range(len(widths) - 1):
            last = i == len(widths) - 2
            out = F(8, 2 if last else 1)
            layers.append(dense(f"fc{i}", widths[i + 1], widths[i], fmt, out, not last))
            fmt = out
        return layers, tuple(spec.input_shape)

    def conv(name, oc, ic, fi, fo, pad):
        return QuantizedLayer(name, "conv", fi, fo, rng.integers(-90, 90, (oc, ic, 5, 5)), F(8, 7), rng.integers(-4000, 4000, oc), True, padding=pad)

    return [
        conv("conv1", 6, 1, F(8, 4), F(8, 1), 2),
        QuantizedLayer("pool1", "maxpool", F(8, 1), F(8, 1), kernel=2, stride=2),
        conv("conv2", 16, 6, F(8, 1), F(8, -1), 0),
        QuantizedLayer("pool2", "maxpool", F(8, -1), F(8, -1), kernel=2, stride=2),
        QuantizedLayer("flatten", "flatten", F(8, -1), F(8, -1)),
        dense("fc1", 120, 400, F(8, -1), F(8, -1), True),
        dense("fc2", 84, 120, F(8, -1), F(8, 0), True),
        dense("fc3", 10, 84, F(8, 0), F(8, 1), False),
    ], tuple(spec.input_shape)


def compare_with_onnxruntime(app: str, tmp_path: Path) -> tuple[int, int]:
    """(values compared, mismatches) between the simulator's dump and onnxruntime on the test split."""
    from axtrain.trainer.export import bit_exact_session

    from .conftest import compile_layers  # noqa: PLC0415

    layers, shape = app_network(app)
    bundle = compile_layers(layers, shape, tmp_path / f"{app}.bundle", app=app)
    data = load(app, seed=0)
    code = 0
    try:
        main(["simulate", str(bundle), "--app", app, "--split-seed", "0", "--dump-outputs", str(tmp_path / "out.npy")])
    except SystemExit as stop:
        code = int(stop.code or 0)
    assert code == 0
    dumped = np.load(tmp_path / "out.npy", allow_pickle=False)
    session = bit_exact_session(bundle.with_suffix(".onnx"))
    expected = session.run(None, {"input": data.x_test})[0]
    assert dumped.shape == expected.shape and dumped.dtype == expected.dtype == np.float32
    # The outputs must not be trivially constant, or the comparison would prove little.
    assert np.unique(expected).size > 10
    return int(expected.size), int(np.sum(dumped.view(np.int32) != expected.view(np.int32)))


@pytest.mark.parametrize("app", [a for a, s in sorted(APPLICATIONS.items()) if s.dataset != "mnist"])
def test_exact_mode_bit_identical_to_onnxruntime_uci(app: str, tmp_path: Path, capsys) -> None:
    compared, mismatches = compare_with_onnxruntime(app, tmp_path)
    assert compared == APPLICATIONS[app].n_test * int(np.prod(APPLICATIONS[app].topology[-1:] if APPLICATIONS[app].kind == "mlp" else (10,)))
    assert mismatches == 0


@pytest.mark.slow
@pytest.mark.parametrize("app", [a for a, s in sorted(APPLICATIONS.items()) if s.dataset == "mnist"])
def test_exact_mode_bit_identical_to_onnxruntime_mnist(app: str, tmp_path: Path, capsys) -> None:
    compared, mismatches = compare_with_onnxruntime(app, tmp_path)
    assert compared == 10000 * 10 and mismatches == 0
