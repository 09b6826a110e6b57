"""Monotone trends on a trained network: approximation costs accuracy and saves energy.

The network is trained here in numpy (a two-layer MLP for satimage fitted by least squares on
random ReLU features: deterministic, no torch, < 1 s), quantised to 8 bits with ``choose_frac`` and
compiled; the trends are then read from ``simulate`` like a user would.
"""

from __future__ import annotations

import numpy as np
import pytest

from axtrain.datasets import load
from axtrain.formats.bundle import load_bundle
from axtrain.hwmodels.fixedpoint import FixedPointFormat, choose_frac, quantize
from axtrain.hwmodels.layers import QuantizedLayer
from axtrain.runtime.simulation import simulate


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    from .conftest import compile_layers  # noqa: PLC0415

    data = load("satimage", seed=0)
    rng = np.random.default_rng(0)
    x, y = data.x_train.astype(np.float64), data.y_train
    w1 = rng.normal(0, 0.5 / np.sqrt(x.shape[1]), size=(64, x.shape[1]))
    b1 = rng.normal(0, 0.1, size=64)
    h = np.maximum(x @ w1.T + b1, 0)
    target = np.eye(7)[y]
    design = np.hstack([h, np.ones((len(h), 1))])
    solution = np.linalg.lstsq(design, target, rcond=None)[0]
    w2, b2 = solution[:-1].T, solution[-1]

    def fmt(values: np.ndarray) -> FixedPointFormat:
        return FixedPointFormat(8, choose_frac(float(np.abs(values).max()), 8))

    fa, fh, fo = fmt(x), fmt(h), fmt(h @ w2.T + b2)
    fw1, fw2 = fmt(w1), fmt(w2)
    layers = [
        QuantizedLayer("fc1", "dense", fa, fh, quantize(w1, fw1), fw1, quantize(b1, FixedPointFormat(32, fa.frac + fw1.frac)), True, sram_voltage=0.85),
        QuantizedLayer("fc2", "dense", fh, fo, quantize(w2, fw2), fw2, quantize(b2, FixedPointFormat(32, fh.frac + fw2.frac)), False, sram_voltage=0.85),
    ]
    bundle = load_bundle(compile_layers(layers, (36,), tmp_path_factory.mktemp("trend") / "sat", app="satimage"))
    return bundle, data


def test_k1_costs_accuracy_and_saves_multiplier_energy(trained) -> None:
    bundle, data = trained
    exact = simulate(bundle, data.x_test, data.y_test, multiplier="exact", sram_voltage=1.1)
    k1 = simulate(bundle, data.x_test, data.y_test, multiplier="K1", sram_voltage=1.1)
    assert exact.accuracy_mean > 0.75  # trained: far above chance (1/6)
    assert k1.accuracy_mean < exact.accuracy_mean
    assert k1.energy.multiplier_joules < exact.energy.multiplier_joules


def test_low_voltage_costs_accuracy_and_saves_sram_energy(trained) -> None:
    bundle, data = trained
    low = simulate(bundle, data.x_test, data.y_test, sram_voltage=0.4, runs=5, seed=1)
    high = simulate(bundle, data.x_test, data.y_test, runs=5, seed=1)  # the bundle's 0.85 V
    assert high.sram_voltage is None and low.accuracy_mean < high.accuracy_mean
    assert low.energy.sram_joules < high.energy.sram_joules
