"""Fig. 4: sensitivity maps of the last layer for BP, AxTrain-act and AxTrain-pas (one application).

``R_ji = |w_ji| * mean_n sum_k |dO_nk / dw_ji|`` over training samples, each map divided by its own
maximum (trainer/sensitivity_maps.py). The paper's point: act spreads the sensitivity out (no weight
the outputs hang on), pas keeps BP's pattern but tolerates the target hardware. The pas network is
BP followed by pas at K1 (the most aggressive multiplier). The application is the first of the
profile's (``--apps`` picks it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from axtrain.reproduce import networks as nets
from axtrain.reproduce.cells import Cell, CellStore
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


def _what_it_shows(shares: dict[str, float]) -> str:
    """One sentence per comparison with BP, from the top-10 % shares (the numbers decide the words)."""
    bp = shares.get("BP")
    if bp is None:
        return ""
    parts = []
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
            "The paper's claim is that act spreads the sensitivity out; our act map is more concentrated instead. A "
            "relative map hides the total: act lowers S (the sum of the unnormalised map) without evening out which "
            "last-layer weights carry the outputs."
        )
    elif act is not None and bp > 0 and act / bp >= 0.9:
        parts.append(
            "The paper's claim is that act spreads the sensitivity out; on this network the relative map keeps BP's "
            "shape: act lowers S (the absolute sensitivities) about evenly rather than flattening their distribution."
        )
    else:
        parts.append("This is the paper's claim: act spreads the sensitivity out, so the outputs hang on fewer weights.")
    return " ".join(parts)


def write(store: CellStore, profile: Profile, out: Path) -> str:
    # the figure needs torch and matplotlib (sensitivity maps); the other figures do not
    from axtrain.atomic import write_bytes
    from axtrain.trainer.sensitivity_maps import render_maps

    app = profile.apps[0]
    maps = {name: np.asarray(m) for name, m in store.result(_cell(profile))["maps"].items()}
    rows = [
        {"network": name, "output": j, "input": i, "relative_sensitivity": float(v)}
        for name, m in maps.items() for (j, i), v in np.ndenumerate(m)
    ]
    write_csv(out / f"{NAME}.csv", rows)
    write_bytes(out / f"{NAME}.png", render_maps(maps, f"{TITLE} ({app}, seed 0)"))
    stats, shares = [], {}
    for name, m in maps.items():
        flat = np.sort(m.ravel())[::-1]
        top = flat[: max(1, len(flat) // 10)].sum() / flat.sum() if flat.sum() > 0 else float("nan")
        shares[name] = float(top)
        stats.append([name, f"{m.mean():.3f}", f"{np.median(m):.3f}", f"{100 * top:.1f} %"])
    shows = _what_it_shows(shares)
    return "\n".join([
        f"## {TITLE}",
        "",
        "![fig4](fig4.png)",
        "",
        f"{app}, seed 0: relative sensitivity `|w| mean_n sum_k |dO_k/dw|` of every last-layer weight, with O the "
        f"networks' {profile.output_layer} outputs (rows: output neurons; columns: inputs of the last layer), each map "
        "divided by its maximum. A flatter map (higher mean, lower top-10 % share) means the outputs do not hang on a few weights.",
        "",
        md_table(["network", "mean", "median", "share of the top 10 % weights"], stats),
        "",
        f"**What the figure shows.** {shows}",
        "",
        "**Where and why we differ.** The paper shows the maps without numbers; ours are per-sample sensitivities of "
        "our 8-bit-trained networks, normalised per map, so compare the shapes (how concentrated), not the colours "
        "across papers.",
    ])
