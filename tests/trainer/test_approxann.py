"""ApproxAnn: criticality against its definition, and the search's invariants on a small problem."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from axtrain.datasets.split import split_validation
from axtrain.errors import ConfigError
from axtrain.hwmodels.fixedpoint import quantize
from axtrain.hwmodels.layers import forward
from axtrain.hwmodels.multipliers import EXACT, parse_mode
from axtrain.trainer.approxann import ApproxAnnConfig, criticality, run_approxann
from axtrain.trainer.hardware import calibrate


def _blobs(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = rng.normal(0, 0.8, (3, 6))
    x = (centres[y] + rng.normal(0, 1.0, (n, 6))).astype(np.float32)
    return x, y.astype(np.int64)


def _trained_mlp(x: np.ndarray, y: np.ndarray, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.tensor(x), torch.tensor(y)
    for _ in range(100):
        opt.zero_grad()
        F.cross_entropy(model(xt), yt).backward()
        opt.step()
    return model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: a second intra-op thread only waits for the busy shared cores (10x slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def problem() -> tuple[nn.Sequential, list, np.ndarray, np.ndarray]:
    x, y = _blobs()
    model = _trained_mlp(x, y)
    return model, calibrate(model, torch.tensor(x)), x, y


def test_criticality_dense_matches_bias_gradient_definition() -> None:
    """For a dense layer dE_n/dz_j = dE_n/db_j, so c_j = mean_n |dE_n/db_j| * sum_i |W_ji| |a_ni|."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    x = torch.randn(7, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (7,))
    got = criticality(model, x, y, batch_size=3)  # batches of 3: the sum across batches is exercised
    expected = [torch.zeros(5, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)]
    for n in range(7):
        loss = F.cross_entropy(model(x[n : n + 1]), y[n : n + 1])
        gb = torch.autograd.grad(loss, [model[0].bias, model[2].bias])
        inputs = [x[n], torch.relu(model[0](x[n]))]
        for k, (layer, g, a) in enumerate(zip([model[0], model[2]], gb, inputs, strict=True)):
            for j in range(layer.out_features):
                mag = sum(abs(layer.weight[j, i].item()) * abs(a[i].item()) for i in range(layer.in_features))
                expected[k][j] += abs(g[j].item()) * mag / 7
    for g, e in zip(got, expected, strict=True):
        assert torch.allclose(g, e, rtol=1e-12, atol=0)


def test_criticality_conv_matches_per_position_definition() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).double()
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    y = torch.tensor([0, 2, 1])
    got = criticality(model, x, y)[0]
    expected = torch.zeros(2, dtype=torch.float64)
    for n in range(3):
        z = model[0](x[n : n + 1])
        loss = F.cross_entropy(model[1:](z), y[n : n + 1])
        (gz,) = torch.autograd.grad(loss, z)
        patches = F.unfold(x[n : n + 1], 3, padding=1)[0]  # [9, 16]: one column per position
        w = model[0].weight.reshape(2, -1)
        for o in range(2):
            for p in range(16):
                mag = (w[o].abs() * patches[:, p].abs()).sum()
                expected[o] += gz[0, o].reshape(-1)[p].abs() * mag / 3
    assert torch.allclose(got, expected, rtol=1e-12, atol=0)


def _numpy_accuracy(layers: list, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the records by the numpy reference forward (hwmodels), not the torch emulation."""
    q = quantize(x, layers[0].input_format)
    out = forward(layers, q)[-1]
    return float((out.argmax(1) == y).mean())


def test_search_invariants(problem) -> None:
    model, layers, x, y = problem
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = ApproxAnnConfig(retrain_epochs=1, initial_fraction=0.5, max_rounds=8)
    result = run_approxann(model, layers, (x, y), "drum:2", budget=0.02, seed=5, config=cfg)
    # This problem is tuned so that the retrain and undo paths both run.
    assert any(r.retrained and not r.accepted for r in result.rounds)

    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # caller's model untouched
    assert result.bound == pytest.approx(result.exact_accuracy - 0.02, abs=1e-15)
    assert result.accuracy >= result.bound
    # The records compute what the search measured: recompute on the same validation split with numpy.
    _, _, x_val, y_val = split_validation(x, y, cfg.val_fraction, 5)
    assert _numpy_accuracy(result.layers, x_val, y_val) == result.accuracy
    k1 = parse_mode("drum:2")
    modes = [m for layer in result.layers if layer.has_weights for m in layer.neuron_modes()]
    assert set(modes) <= {EXACT, k1}
    assert result.n_approx == sum(m == k1 for m in modes) and result.n_neurons == 11
    assert result.n_approx == (result.rounds[-1].n_approx if result.rounds else 0)
    approx_macs = sum(
        layer.weight.shape[1] * sum(m == k1 for m in layer.neuron_modes()) for layer in result.layers if layer.has_weights
    )
    assert result.approx_mac_fraction == approx_macs / (6 * 8 + 8 * 3)

    digest = json.loads(json.dumps(result.summary(), allow_nan=False))
    assert digest["n_approx"] == result.n_approx and len(digest["rounds"]) == len(result.rounds)

    again = run_approxann(model, layers, (x, y), "drum:2", budget=0.02, seed=5, config=cfg)
    assert again.modes == result.modes
    assert all(np.array_equal(a.weight, b.weight) for a, b in zip(again.layers, result.layers, strict=True) if a.has_weights)


def test_first_round_switches_the_least_critical(problem) -> None:
    model, layers, x, y = problem
    cfg = ApproxAnnConfig(max_rounds=1, initial_fraction=0.3, retrain_epochs=0)
    result = run_approxann(model, layers, (x, y), "K2", budget=1.0, seed=1, config=cfg)
    x_tr, y_tr, _, _ = split_validation(x, y, cfg.val_fraction, 1)
    scores = criticality(model, torch.tensor(x_tr), torch.tensor(y_tr))
    flat = sorted((float(s[j]), k, j) for k, s in enumerate(scores) for j in range(len(s)))
    chunk = round(0.3 * 11)
    expected = {(k, j) for _, k, j in flat[:chunk]}
    weighted = [layer for layer in result.layers if layer.has_weights]
    got = {(k, j) for k, layer in enumerate(weighted) for j, m in enumerate(layer.neuron_modes()) if not m.is_exact}
    assert got == expected and result.n_approx == chunk


def test_unlimited_budget_makes_everything_approximate(problem) -> None:
    model, layers, x, y = problem
    result = run_approxann(model, layers, (x, y), "drum:3", budget=1.0, seed=0)
    assert result.n_approx == result.n_neurons == 11
    assert result.approx_mac_fraction == 1.0


def test_cnn_counts_channels_and_positions() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3 * 2 * 2, 2))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 1, 4, 4)).astype(np.float32)
    y = (x[:, 0, :2].sum((1, 2)) > 0).astype(np.int64)
    layers = calibrate(model, torch.tensor(x))
    result = run_approxann(model, layers, (x, y), "K1", budget=1.0, seed=0, config=ApproxAnnConfig(retrain_epochs=0))
    assert result.n_neurons == 5 and result.n_approx == 5
    # conv: 9 products x 16 positions per channel; dense: 12 per neuron
    partial = run_approxann(model, layers, (x, y), "K1", budget=1.0, seed=0,
                            config=ApproxAnnConfig(retrain_epochs=0, max_rounds=1, initial_fraction=0.2))
    conv_approx = sum(not m.is_exact for m in partial.layers[0].neuron_modes())
    dense_approx = sum(not m.is_exact for m in partial.layers[-1].neuron_modes())
    assert partial.n_approx == 1
    assert partial.approx_mac_fraction == (conv_approx * 144 + dense_approx * 12) / (3 * 144 + 2 * 12)


def test_bad_arguments(problem) -> None:
    model, layers, x, y = problem
    with pytest.raises(ConfigError, match="exact"):
        run_approxann(model, layers, (x, y), "exact")
    with pytest.raises(ConfigError, match="budget"):
        run_approxann(model, layers, (x, y), "K1", budget=1.5)
    with pytest.raises(ConfigError, match="DataSplit"):
        run_approxann(model, layers, 3, "K1")
