"""Plot layout rules: outlier bars clipped with their value printed, zoomed accuracy axes,
no zero-length error caps, reproducible PNG bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from axtrain.reproduce.plots import Panel, _clip_level, _zoom_limits, grouped_bars

GROUPS = ["a", "b", "c", "d", "Average"]


def test_an_outlier_bar_sets_a_clip_below_it() -> None:
    values = np.array([1.2, 4.3, 1.6, 3.6, 19.5, 1.1, 2.0, 2.4])
    clip = _clip_level(values)
    assert clip is not None
    assert clip == pytest.approx(1.3 * 4.3, rel=1e-12)  # 1.3x the tallest ordinary bar
    assert clip < 19.5


@pytest.mark.parametrize("values", [[1.0, 1.1, 0.9, 1.2, 1.3], [2.0, 3.0], [0.0, 0.0, 0.0, 0.0]])
def test_no_clip_without_an_outlier(values: list[float]) -> None:
    assert _clip_level(np.array(values)) is None


def test_zoom_keeps_every_bar_and_its_spread_inside_the_axis() -> None:
    values = np.array([0.85, 0.95, 0.90, np.nan])
    errors = np.array([0.02, 0.01, 0.0, 0.0])
    low, high = _zoom_limits(values, errors)
    assert 0.0 < low < 0.83 and high > 0.96
    assert high - low < 0.3  # the point: 0.85 vs 0.95 is a visible difference


def _png(tmp_path: Path, name: str, errors: list[list[float]]) -> bytes:
    panel = Panel("t", "y", GROUPS, ["BP", "AxTrain"], [[1, 2, 3, 1, 2], [2, 1, 25, 1, 3]], errors, reference=1.0)
    return grouped_bars([panel], tmp_path / name).read_bytes()


def test_png_bytes_are_reproducible_and_zero_spread_draws_no_caps(tmp_path: Path) -> None:
    first = _png(tmp_path, "a.png", [[0.0] * 5, [0.0] * 5])
    again = _png(tmp_path, "b.png", [[0.0] * 5, [0.0] * 5])
    assert first == again and first.startswith(b"\x89PNG")
    # Zero spread everywhere is the same picture as no spread at all (no flat caps drawn).
    panel = Panel("t", "y", GROUPS, ["BP", "AxTrain"], [[1, 2, 3, 1, 2], [2, 1, 25, 1, 3]], None, reference=1.0)
    assert grouped_bars([panel], tmp_path / "c.png").read_bytes() == first
