"""Fig. 4: sensitivity maps of the last layer for BP, AxTrain-act and AxTrain-pas (one application).

``R_ji = |w_ji| * mean_n sum_k |dO_nk / dw_ji|`` over training samples (trainer/sensitivity_maps.py),
stored raw by the cell and drawn on one colour scale shared by every map (0 to the largest ``R`` of
all of them), so that a map's colours can be compared with another's: a network whose outputs are
less sensitive overall looks darker, not just differently shaped. The paper's point: act spreads the
sensitivity out (no weight the outputs hang on), pas keeps BP's pattern but tolerates the target
hardware. The pas network is BP followed by pas at K1 (the most aggressive multiplier). The
application is the first of the profile's (``--apps`` picks it).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from axtrain.atomic import write_bytes
from axtrain.errors import RunError
from axtrain.reproduce import networks as nets
from axtrain.reproduce.cells import Cell, CellStore
from axtrain.reproduce.plots import pyplot
from axtrain.reproduce.profile import Profile
from axtrain.reproduce.report import md_table, write_csv

NAME = "fig4"
TITLE = "Fig. 4: last-layer sensitivity maps"
NETWORKS = ("BP", "AxTrain-act", "AxTrain-pas (K1)")


def _cell(profile: Profile) -> Cell:
    app, seed = profile.apps[0], 0
    networks = {
        "BP": nets.bp(profile, app, seed),
        "AxTrain-act": nets.act(profile, app, seed),
        "AxTrain-pas (K1)": nets.pas_from_bp(profile, app, seed, "K1"),
    }
    return nets.sensitivity(profile, app, seed, networks)


def cells(profile: Profile) -> list[Cell]:
    return [_cell(profile)]


def _what_it_shows(shares: dict[str, float], means: dict[str, float] | None = None) -> str:
    """One sentence per comparison with BP, from the top-10 % shares and (on the shared scale) the
    mean sensitivities (the numbers decide the words)."""
    bp = shares.get("BP")
    if bp is None:
        return ""
    parts = []
    bp_mean = (means or {}).get("BP")
    if means and bp_mean is not None and bp_mean > 0:
        for name in ("AxTrain-act", "AxTrain-pas (K1)"):
            if name not in means:
                continue
            ratio = means[name] / bp_mean
            word = "darker than" if ratio < 0.9 else "brighter than" if ratio > 1.1 else "about as bright as"
            parts.append(f"On the shared scale {name}'s map is {word} BP's (mean sensitivity {ratio:.2f} x BP's).")
    for name in ("AxTrain-act", "AxTrain-pas (K1)"):
        if name not in shares:
            continue
        ratio = shares[name] / bp if bp > 0 else float("nan")
        if ratio < 0.9:
            word = "flatter than BP's"
        elif ratio > 1.1:
            word = "more concentrated than BP's"
        else:
            word = "about as concentrated as BP's"
        parts.append(f"{name}'s map is {word} (top-10 % share {100 * shares[name]:.1f} % vs {100 * bp:.1f} %).")
    act = shares.get("AxTrain-act")
    if act is not None and bp > 0 and act / bp > 1.1:
        parts.append(
            "The paper's claim is that act spreads the sensitivity out; our act map is more concentrated instead: "
            "act changes the total (the mean above) without evening out which last-layer weights carry the outputs."
        )
    elif act is not None and bp > 0 and act / bp >= 0.9:
        parts.append(
            "The paper's claim is that act spreads the sensitivity out; on this network act's map keeps BP's "
            "shape (how concentrated it is) and changes only its level (the mean above)."
        )
    elif act is not None and bp > 0:
        parts.append("This is the paper's claim: act spreads the sensitivity out, so the outputs do not hang on a few weights.")
    return " ".join(parts)


def shared_norm(maps: dict[str, np.ndarray]) -> tuple[float, float]:
    """The colour scale every map is drawn on: 0 to the largest value of all maps (1 if all are 0)."""
    top = max((float(np.max(m)) for m in maps.values() if np.size(m)), default=0.0)
    return 0.0, top if top > 0 else 1.0


def render(maps: dict[str, np.ndarray], title: str) -> bytes:
    """PNG bytes: one heatmap per map, side by side, on the shared scale of :func:`shared_norm`."""
    plt = pyplot()
    # matplotlib loads only when a figure is drawn (after pyplot() has chosen the Agg backend)
    from matplotlib.colors import Normalize
    from matplotlib.ticker import MaxNLocator

    low, high = shared_norm(maps)
    norm = Normalize(vmin=low, vmax=high)
    names = list(maps)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.2), squeeze=False, constrained_layout=True)
    image = None
    for ax, name in zip(axes[0], names, strict=True):
        # viridis: perceptually uniform and readable in grey (jet's bands suggest edges that are not there)
        image = ax.imshow(np.asarray(maps[name]), norm=norm, cmap="viridis", aspect="auto", interpolation="nearest")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # rows are neurons: whole numbers only
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(name)
        ax.set_xlabel("input of the last layer")
        ax.set_ylabel("output neuron")
    assert image is not None  # write() draws at least one map
    fig.colorbar(image, ax=axes[0].tolist(), label="|w| |dO/dw| (one scale, all maps)")
    fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})  # no version stamp: reproducible bytes
    plt.close(fig)
    return buffer.getvalue()


def _ordered(maps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Paper order (BP, act, pas), then any other name (the record's JSON sorts its keys)."""
    return {name: maps[name] for name in (*NETWORKS, *sorted(set(maps) - set(NETWORKS))) if name in maps}


def write(store: CellStore, profile: Profile, out: Path) -> str:
    """fig4.csv (raw and shared-scale values), fig4.png and the REPORT section, from the finished cell."""
    app = profile.apps[0]
    result = store.result(_cell(profile))
    if result.get("scale") != "absolute":  # a cell of the per-map-normalised era cannot share a scale
        raise RunError("fig4: the sensitivity cell holds per-map-normalised maps; delete it to recompute the raw maps")
    maps = _ordered({name: np.asarray(m, dtype=np.float64) for name, m in result["maps"].items()})
    _, top = shared_norm(maps)
    rows = [
        {"network": name, "output": j, "input": i, "sensitivity": float(v), "shared_scale": float(v) / top}
        for name, m in maps.items() for (j, i), v in np.ndenumerate(m)
    ]
    write_csv(out / f"{NAME}.csv", rows)
    write_bytes(out / f"{NAME}.png", render(maps, f"{TITLE} ({app}, seed 0)"))
    stats, shares, means = [], {}, {}
    bp_mean = float(maps["BP"].mean()) if "BP" in maps else float("nan")
    for name, m in maps.items():
        flat = np.sort(m.ravel())[::-1]
        top10 = flat[: max(1, len(flat) // 10)].sum() / flat.sum() if flat.sum() > 0 else float("nan")
        shares[name], means[name] = float(top10), float(m.mean())
        versus = f"{m.mean() / bp_mean:.2f}" if bp_mean > 0 else "-"
        stats.append([name, f"{m.mean():.2e}", f"{np.median(m):.2e}", f"{m.max():.2e}", versus, f"{100 * top10:.1f} %"])
    shows = _what_it_shows(shares, means)
    return "\n".join([
        f"## {TITLE}",
        "",
        "![fig4](fig4.png)",
        "",
        f"{app}, seed 0: sensitivity `|w| mean_n sum_k |dO_k/dw|` of every last-layer weight, with O the "
        f"networks' {profile.output_layer} outputs (rows: output neurons; columns: inputs of the last layer), all maps "
        f"on one colour scale (0 to {top:.3g}, the largest value of the {len(maps)} maps), so their colours compare. "
        "The mean (x its number of weights: the last layer's share of S) says how sensitive the outputs are overall; "
        "the top-10 % share (the fraction of the map's total held by its largest 10 % of weights) says how much they "
        "hang on a few weights (lower: flatter).",
        "",
        md_table(["network", "mean", "median", "largest", "mean / BP's", "share of the top 10 % weights"], stats),
        "",
        f"**What the figure shows.** {shows}",
        "",
        "**Where and why we differ.** The paper shows the maps without numbers; ours are per-sample sensitivities of "
        "our 8-bit-trained networks on a scale shared by the three maps, so compare them with each other (level and "
        "how concentrated), not their colours with the paper's.",
    ])
