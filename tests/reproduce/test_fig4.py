"""Fig. 4: raw sensitivity maps in the cell, one colour scale shared by every map in the figure."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from axtrain.reproduce import fig4
from axtrain.reproduce.cells import CellStore
from axtrain.reproduce.profile import QUICK


def _tiny():
    profile = QUICK.with_options(apps=("breast-cancer",), seeds=1, runs=2)
    return replace(profile, settings={a: replace(s, epochs=1, pas_epochs=1) for a, s in profile.settings.items()})


def _pixels(png: bytes) -> np.ndarray:
    import matplotlib.image

    rgba = matplotlib.image.imread(io.BytesIO(png), format="png")
    return np.round(rgba[..., :3] * 255).astype(np.int64)


def _count(pixels: np.ndarray, value: float) -> int:
    """Pixels drawn in viridis' colour for ``value`` in [0, 1] (within one 8-bit step per channel)."""
    import matplotlib

    colour = np.round(np.asarray(matplotlib.colormaps["viridis"](value)[:3]) * 255).astype(np.int64)
    return int(np.sum(np.all(np.abs(pixels - colour) <= 1, axis=-1)))


def _fake_store(tmp_path: Path, maps: dict[str, np.ndarray]) -> CellStore:
    store = CellStore(tmp_path)
    store.write(fig4._cell(_tiny()), {"maps": {k: v.tolist() for k, v in maps.items()}, "samples": 8, "scale": "absolute"}, 0.0)
    return store


def test_maps_of_different_magnitude_get_different_colours(tmp_path: Path) -> None:
    """The same pattern at a quarter of BP's magnitude is drawn in the colours of 1/4 and 1/8 of the
    scale, not in BP's (a per-map-normalised figure would draw both maps alike)."""
    pattern = np.array([[1.0, 0.5], [0.5, 1.0]])
    maps = {"BP": 2.0 * pattern, "AxTrain-act": 0.5 * pattern, "AxTrain-pas (K1)": 2.0 * pattern}
    markdown = fig4.write(_fake_store(tmp_path, maps), _tiny(), tmp_path)
    pixels = _pixels((tmp_path / "fig4.png").read_bytes())
    panel = _count(pixels, 1.0)  # BP's and pas's two top cells: two quarters of two panels
    assert panel > 4000
    # act's cells hold 1/4 and 1/8 of the scale's top; only the colour bar (a few pixel rows) has them otherwise
    assert _count(pixels, 0.25) > panel / 4
    assert _count(pixels, 0.125) > panel / 4
    # the colour bar alone: BP's and pas's values 1.0 and 0.5 fill none of act's panel
    assert _count(pixels, 0.5) == pytest.approx(panel, rel=0.1)
    with (tmp_path / "fig4.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    act = [r for r in rows if r["network"] == "AxTrain-act"]
    assert sorted(float(r["sensitivity"]) for r in act) == [0.25, 0.25, 0.5, 0.5]
    assert sorted(float(r["shared_scale"]) for r in act) == [0.125, 0.125, 0.25, 0.25]
    assert "mean / BP's" in markdown and "| AxTrain-act | 3.75e-01 | 3.75e-01 | 5.00e-01 | 0.25 |" in markdown
    assert "AxTrain-act's map is darker than BP's (mean sensitivity 0.25 x BP's)" in markdown
    # same shape: the top-10 % share cannot tell act from BP
    assert "AxTrain-act's map is about as concentrated as BP's" in markdown


def test_a_normalised_era_cell_is_refused(tmp_path: Path) -> None:
    from axtrain.errors import RunError

    store = CellStore(tmp_path)
    store.write(fig4._cell(_tiny()), {"maps": {"BP": [[1.0]]}, "samples": 8}, 0.0)
    with pytest.raises(RunError, match="per-map-normalised"):
        fig4.write(store, _tiny(), tmp_path)


def test_shared_norm_spans_every_map() -> None:
    assert fig4.shared_norm({"a": np.array([[0.2, 3.0]]), "b": np.array([[7.5]])}) == (0.0, 7.5)
    assert fig4.shared_norm({"a": np.zeros((2, 2))}) == (0.0, 1.0)


def test_tiny_fig4_stores_the_raw_maps(tmp_path: Path) -> None:
    """End to end (1-epoch networks): the cell keeps |w| |dO/dw| itself, so the maps' maxima differ
    and only the largest reaches the top of the shared scale."""
    from axtrain.reproduce.run import reproduce

    out = tmp_path / "r"
    result = reproduce(["fig4"], out, _tiny(), jobs=1)
    assert result["cells"]["ran"] == result["cells"]["total"] == 4  # BP, act, BP+pas, sensitivity
    with (out / "fig4.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    tops = {name: max(float(r["sensitivity"]) for r in rows if r["network"] == name) for name in fig4.NETWORKS}
    assert len(set(tops.values())) == 3  # per-map normalisation made every one 1.0
    assert max(float(r["shared_scale"]) for r in rows) == 1.0
    for r in rows:
        assert float(r["shared_scale"]) == pytest.approx(float(r["sensitivity"]) / max(tops.values()), rel=1e-5)
    assert "## Fig. 4" in (out / "REPORT.md").read_text()


@pytest.mark.parametrize("act_share, words", [
    (0.30, "our act map is more concentrated instead"),
    (0.20, "act's map keeps BP's shape"),
    (0.10, "This is the paper's claim: act spreads the sensitivity out"),
])
def test_the_sentence_follows_the_numbers(act_share: float, words: str) -> None:
    text = fig4._what_it_shows({"BP": 0.2, "AxTrain-act": act_share}, {"BP": 1.0, "AxTrain-act": 1.5})
    assert words in text
    assert "AxTrain-act's map is brighter than BP's (mean sensitivity 1.50 x BP's)" in text
    assert "paper's claim" not in fig4._what_it_shows({"BP": 0.2})  # no act map: nothing to say about act
