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


def _pyplot():
    # matplotlib loads only when a figure is drawn, and its backend must be chosen before pyplot
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    # after matplotlib.use: pyplot must not pick a display backend
    import matplotlib.pyplot as plt

    return plt


def _draw(ax, panel: Panel) -> None:
    n_series, n_groups = len(panel.series), len(panel.groups)
    width = 0.8 / max(n_series, 1)
    x = np.arange(n_groups)
    top = 0.0
    for s, name in enumerate(panel.series):
        values = np.asarray([np.nan if v is None else v for v in panel.values[s]], dtype=np.float64)
        errors = None if panel.errors is None else np.asarray([0 if e is None or math.isnan(e) else e for e in panel.errors[s]], dtype=np.float64)
        pos = x - 0.4 + width * (s + 0.5)
        ax.bar(pos, np.nan_to_num(values), width, yerr=errors, capsize=2, label=name, color=COLOURS[s % len(COLOURS)],
               edgecolor="black", linewidth=0.4, error_kw={"elinewidth": 0.8})
        finite = values[np.isfinite(values)]
        if finite.size:
            top = max(top, float(np.max(finite + (errors[np.isfinite(values)] if errors is not None else 0))))
        if panel.notes is not None:
            for p, v, note in zip(pos, values, panel.notes[s]):
                if note and np.isfinite(v):
                    ax.text(p, v, note, ha="center", va="bottom", fontsize=6, rotation=90)
    if panel.reference is not None:
        ax.axhline(panel.reference, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels(panel.groups, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(panel.ylabel)
    ax.set_title(panel.title, fontsize=10)
    if panel.ylim is not None:
        ax.set_ylim(*panel.ylim)
    elif panel.notes is not None:
        ax.set_ylim(0, top * 1.35 if top > 0 else 1)
    ax.grid(axis="y", linewidth=0.3)
    ax.set_axisbelow(True)


def grouped_bars(panels: Sequence[Panel], path: Path, title: str | None = None, columns: int = 2) -> Path:
    """Draw the panels in a grid (``columns`` wide) with one shared legend; save a PNG at ``path``."""
    plt = _pyplot()
    rows = math.ceil(len(panels) / columns)
    cols = min(columns, len(panels))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.4 * rows), squeeze=False, constrained_layout=True)
    for ax, panel in zip(axes.flat, panels):
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
