"""Paper-style plots: grouped bars (one group per application plus 'Average'), error bars, Agg backend.

PNG bytes are reproducible (no version stamp in the metadata) and written atomically.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from axtrain.atomic import write_bytes

# Colour-blind-safe palette (Okabe-Ito), in series order.
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00")


@dataclass
class Panel:
    """One subplot of grouped bars: ``values[s][g]`` / ``errors[s][g]`` for series s and group g;
    ``notes[s][g]`` (optional) is printed above the bar (e.g. the chosen mode)."""

    title: str
    ylabel: str
    groups: Sequence[str]
    series: Sequence[str]
    values: Sequence[Sequence[float]]
    errors: Sequence[Sequence[float]] | None = None
    notes: Sequence[Sequence[str]] | None = None
    reference: float | None = None  # a dashed horizontal line (e.g. 1.0 = exact)
    ylim: tuple[float, float] | None = None
    extra: dict = field(default_factory=dict)


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    # matplotlib loads only when a figure is drawn, and its backend must be chosen before pyplot
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    # after matplotlib.use: pyplot must not pick a display backend
    import matplotlib.pyplot as plt

    return plt


def _clip_level(values: np.ndarray) -> float | None:
    """A y limit below an outlier bar that would squash the rest of the panel, or None.

    A bar counts as an outlier when it is more than 3x the 75th percentile of the panel's bars;
    the axis then stops at 1.3x the tallest ordinary bar and the outliers are labelled with their value.
    """
    finite = values[np.isfinite(values) & (values > 0)]
    if finite.size < 4:
        return None
    bound = 3.0 * float(np.percentile(finite, 75))
    ordinary = finite[finite <= bound]
    if ordinary.size == finite.size or not ordinary.size:
        return None
    return 1.3 * float(ordinary.max())


def _zoom_limits(values: np.ndarray, errors: np.ndarray | None) -> tuple[float, float]:
    """y limits around the bars' range (with their spread) so that 0.85 vs 0.95 stays visible."""
    finite = np.isfinite(values)
    spread = errors if errors is not None else np.zeros_like(values)
    low = float(np.min(values[finite] - spread[finite]))
    high = float(np.max(values[finite] + spread[finite]))
    margin = max(0.05 * (high - low), 0.01)
    return max(0.0, low - margin), high + margin


def _draw(ax, panel: Panel) -> None:
    n_series, n_groups = len(panel.series), len(panel.groups)
    width = 0.8 / max(n_series, 1)
    x = np.arange(n_groups)
    all_values = np.asarray(
        [[np.nan if v is None else v for v in row] for row in panel.values], dtype=np.float64
    ).reshape(n_series, n_groups)
    all_errors = None
    if panel.errors is not None:
        all_errors = np.asarray(
            [[0.0 if e is None or math.isnan(e) else e for e in row] for row in panel.errors], dtype=np.float64
        ).reshape(n_series, n_groups)
        if not np.any(all_errors > 0):
            all_errors = None  # one seed: no zero-length caps pretending to be a spread
    clip = None if panel.ylim is not None or panel.extra.get("zoom") else _clip_level(all_values.ravel())
    top = 0.0
    for s, name in enumerate(panel.series):
        values = all_values[s]
        errors = None if all_errors is None else all_errors[s]
        shown = np.nan_to_num(values) if clip is None else np.minimum(np.nan_to_num(values), clip)
        pos = x - 0.4 + width * (s + 0.5)
        if errors is not None:
            # No cap where there is no spread (a single seed) or where the bar is clipped.
            errors = np.where((errors > 0) & ((values <= clip) if clip is not None else True), errors, np.nan)
        ax.bar(pos, shown, width, yerr=errors, capsize=2 if errors is not None else 0, label=name,
               color=COLOURS[s % len(COLOURS)], edgecolor="black", linewidth=0.4, error_kw={"elinewidth": 0.8})
        finite = np.isfinite(values)
        if finite.any():
            tops = values[finite] + (np.nan_to_num(errors[finite]) if errors is not None else 0)
            top = max(top, float(np.max(tops if clip is None else np.minimum(tops, clip))))
        if clip is not None:
            for p, v in zip(pos, values, strict=True):
                if np.isfinite(v) and v > clip:
                    # staggered by series, so the labels of neighbouring clipped bars do not overprint
                    ax.text(p, clip * (1 + 0.04 * s), f"{v:.3g}", ha="center", va="bottom", fontsize=7, fontweight="bold")
        if panel.notes is not None:
            for p, v, e, note in zip(pos, values, np.nan_to_num(errors) if errors is not None else np.zeros_like(values), panel.notes[s], strict=True):
                if note and np.isfinite(v):
                    # Above the error bar's cap, horizontal, so it neither hides the cap nor needs a tilt.
                    ax.annotate(note, (p, v + e), xytext=(0, 1.5), textcoords="offset points",
                                ha="center", va="bottom", fontsize=6.5, linespacing=0.9)
    if panel.reference is not None:
        ax.axhline(panel.reference, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels(panel.groups, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(panel.ylabel)
    ax.set_title(panel.title + (" (tall bars clipped, value printed)" if clip is not None else ""), fontsize=10)
    if panel.ylim is not None:
        ax.set_ylim(*panel.ylim)
    elif panel.extra.get("zoom"):
        ax.set_ylim(*_zoom_limits(all_values.ravel(), None if all_errors is None else all_errors.ravel()))
    elif clip is not None:
        ax.set_ylim(0, clip * 1.12)
    elif panel.notes is not None:
        ax.set_ylim(0, top * 1.25 if top > 0 else 1)
    ax.grid(axis="y", linewidth=0.3)
    ax.set_axisbelow(True)


def grouped_bars(panels: Sequence[Panel], path: Path, title: str | None = None, columns: int = 2) -> Path:
    """Draw the panels in a grid (``columns`` wide) with one shared legend; save a PNG at ``path``."""
    plt = pyplot()
    rows = math.ceil(len(panels) / columns)
    cols = min(columns, len(panels))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.4 * rows), squeeze=False, constrained_layout=True)
    for ax, panel in zip(axes.flat, panels, strict=False):  # the grid may have more cells than panels
        _draw(ax, panel)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return write_bytes(path, buffer.getvalue())
