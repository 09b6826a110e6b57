"""Sensitivity maps: the array is |w| |dO/dw| of the last layer, normalised; the PNG is written."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from axtrain.errors import ConfigError
from axtrain.trainer.sensitivity_maps import last_layer_sensitivity, save_sensitivity_maps


def _net(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).double()


def test_map_is_the_definition() -> None:
    """R_ji = |w_ji| * mean_n sum_k |dO_nk/dw_ji| by autograd, then divided by its max."""
    model = _net(0)
    x = torch.randn(5, 4, dtype=torch.float64)
    w = model[-1].weight
    expected = np.zeros(tuple(w.shape))
    out = model(x)
    for n in range(5):
        for k in range(3):
            (g,) = torch.autograd.grad(out[n, k], w, retain_graph=True)
            expected += (w.abs() * g.abs()).detach().numpy() / 5
    raw = last_layer_sensitivity(model, x, relative=False)
    np.testing.assert_allclose(raw, expected, rtol=1e-12, atol=0)
    rel = last_layer_sensitivity(model, x)
    np.testing.assert_allclose(rel, expected / expected.max(), rtol=1e-12, atol=0)
    assert rel.max() == 1.0 and rel.min() >= 0.0


def test_png_written(tmp_path) -> None:
    x = torch.randn(8, 4, dtype=torch.float64)
    path = tmp_path / "maps" / "fig4.png"
    maps = save_sensitivity_maps({"BP": _net(1), "act": _net(2), "pas": _net(3)}, x, path, title="test")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert set(maps) == {"BP", "act", "pas"}
    np.testing.assert_allclose(maps["act"], last_layer_sensitivity(_net(2), x), rtol=0, atol=0)
    assert not list(path.parent.glob(".tmp-*"))  # written atomically, no leftovers


def test_bad_networks() -> None:
    x = torch.randn(2, 4, dtype=torch.float64)
    with pytest.raises(ConfigError, match="ending in nn.Linear"):
        last_layer_sensitivity(nn.Sequential(nn.Linear(4, 3), nn.ReLU()).double(), x)
    other = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)).double()
    with pytest.raises(ConfigError, match="differ in shape"):
        save_sensitivity_maps({"a": _net(0), "b": other}, x, "/nonexistent/never.png")
    with pytest.raises(ConfigError, match="nothing to draw"):
        save_sensitivity_maps({}, x, "/nonexistent/never.png")
