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
    stats = []
    for name, m in maps.items():
        flat = np.sort(m.ravel())[::-1]
        top = flat[: max(1, len(flat) // 10)].sum() / flat.sum() if flat.sum() > 0 else float("nan")
        stats.append([name, f"{m.mean():.3f}", f"{np.median(m):.3f}", f"{100 * top:.1f} %"])
    return "\n".join([
        f"## {TITLE}",
        "",
        "![fig4](fig4.png)",
        "",
        f"{app}, seed 0: relative sensitivity of every last-layer weight (rows: output neurons; columns: inputs of the "
        "last layer), each map divided by its maximum. A flatter map (higher mean, lower top-10 % share) means the "
        "outputs do not hang on a few weights.",
        "",
        md_table(["network", "mean", "median", "share of the top 10 % weights"], stats),
        "",
        "**Where and why we differ.** The paper shows the maps without numbers; ours are per-sample sensitivities of "
        "our 8-bit-trained networks, normalised per map, so compare the shapes (how concentrated), not the colours "
        "across papers.",
    ])
