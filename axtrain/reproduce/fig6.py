"""Fig. 6: output error under DRUM K1..K4, normalised to the exact-multiplier error, BP vs AxTrain-act
vs AxTrain, per application and on average.

* Networks per (app, seed): BP, AxTrain-act, and one AxTrain network per K (the act network followed
  by pas *at that K*: pas trained for one K does not protect another, DESIGN.md).
* Output error = the classification error rate ``1 - accuracy`` of the bit-exact fixed-point network
  on the test split (trainer emulation, bit-identical with the runtime): the trainer's Fig. 6 metric
  (``trainer.evaluate.FIG6_METRIC``; docs/trainer.md). The Brier score of the same outputs is in the
  CSV as a diagnostic only: DRUM K1 shrinks the logits, which moves a softmax-based score without
  changing any decision.
* Normalisation: by the *BP network's* exact-multiplier error of the same (app, seed), so bars of
  different methods compare directly and method/BP at the same K is their error ratio (the CSV also
  has each network's error over its own exact error).
* Reduction vs BP at K = ``1 - err_method(K) / err_BP(K)`` of the seed means, averaged over apps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from axtrain.reproduce import networks as nets
from axtrain.reproduce.cells import Cell, CellStore
from axtrain.reproduce.plots import Panel, grouped_bars
from axtrain.reproduce.profile import MODES, Profile
from axtrain.reproduce.report import combined_spread, fmt, md_table, mean_std

NAME = "fig6"
TITLE = "Fig. 6: output error under approximate multipliers (normalised to BP's exact-multiplier error)"
METHODS = ("BP", "AxTrain-act", "AxTrain")
PAPER_REDUCTION = {"AxTrain-act": {"K1": 0.4077, "K2": 0.3456, "K3": 0.2515}, "AxTrain": {"K1": 0.7561, "K2": 0.5845, "K3": 0.3766}}
ALL_MODES = ("exact", *MODES)


def _cells(profile: Profile, app: str, seed: int) -> dict[str, Cell]:
    out = {
        "BP": nets.evaluate(profile, nets.bp(profile, app, seed), app, seed, ALL_MODES),
        "AxTrain-act": nets.evaluate(profile, nets.act(profile, app, seed), app, seed, ALL_MODES),
    }
    for mode in MODES:
        out[f"AxTrain@{mode}"] = nets.evaluate(profile, nets.axtrain(profile, app, seed, multiplier=mode), app, seed, ("exact", mode))
    return out


def cells(profile: Profile) -> list[Cell]:
    return [c for app in profile.apps for seed in profile.seeds(app) for c in _cells(profile, app, seed).values()]


def _error(entry: dict) -> float:
    """Fig. 6's output error: the error rate 1 - accuracy."""
    return 1.0 - entry["accuracy"]


def _ratio(a: float, b: float) -> float:
    """a / b; NaN when b is 0 (a perfect reference: nothing to normalise by; left out of the means)."""
    return a / b if b > 0 else float("nan")


def collect(store: CellStore, profile: Profile) -> list[dict]:
    """One row per (app, seed, method, mode)."""
    rows = []
    for app in profile.apps:
        for seed in profile.seeds(app):
            results = {k: store.result(c)["modes"] for k, c in _cells(profile, app, seed).items()}
            bp_exact = _error(results["BP"]["exact"])
            for method in METHODS:
                for mode in ALL_MODES:
                    if method == "AxTrain":
                        if mode == "exact":
                            continue
                        network, r = f"axtrain@{mode}", results[f"AxTrain@{mode}"]
                    else:
                        network, r = method.lower(), results[method]
                    rows.append({
                        "app": app, "seed": seed, "method": method, "network": network, "mode": mode,
                        "accuracy": r[mode]["accuracy"], "output_error": _error(r[mode]),
                        "normalised_to_bp_exact": _ratio(_error(r[mode]), bp_exact),
                        "normalised_to_own_exact": _ratio(_error(r[mode]), _error(r["exact"])),
                        "bp_exact_output_error": bp_exact, "brier_score": r[mode]["output_error"],
                    })
    return rows


def summarise(rows: list[dict], apps: tuple[str, ...]) -> dict:
    """Per (app, method, mode): seed mean/std of the normalised error and of the raw error/accuracy;
    per method and K: reduction vs BP per app and on average."""
    table: dict = {}
    for app in apps:
        for method in METHODS:
            for mode in ALL_MODES:
                sel = [r for r in rows if r["app"] == app and r["method"] == method and r["mode"] == mode]
                if not sel:
                    continue
                table[(app, method, mode)] = {
                    "norm": mean_std(r["normalised_to_bp_exact"] for r in sel if np.isfinite(r["normalised_to_bp_exact"])),
                    "error": mean_std(r["output_error"] for r in sel),
                    "accuracy": mean_std(r["accuracy"] for r in sel),
                }
    reduction: dict = {}
    for method in METHODS[1:]:
        for mode in MODES:
            per_app = {app: 1 - _ratio(table[(app, method, mode)]["error"][0], table[(app, "BP", mode)]["error"][0]) for app in apps}
            finite = [v for v in per_app.values() if np.isfinite(v)]
            reduction[(method, mode)] = (float(np.mean(finite)) if finite else float("nan"), per_app)
    return {"table": table, "reduction": reduction}


def plot(summary: dict, apps: tuple[str, ...], path: Path) -> Path:
    table = summary["table"]
    groups = [*apps, "Average"]
    panels = []
    for mode in MODES:
        values, errors = [], []
        for method in METHODS:
            means = [table[(a, method, mode)]["norm"][0] for a in apps]
            stds = [table[(a, method, mode)]["norm"][1] for a in apps]
            values.append(means + [float(np.nanmean(means))])
            errors.append(stds + [combined_spread([x for x in stds if np.isfinite(x)])])
        panels.append(Panel(f"{mode} (DRUM k={mode[1]})", "output error / BP exact", groups, METHODS, values, errors, reference=1.0))
    return grouped_bars(panels, path, TITLE)


def section(summary: dict, apps: tuple[str, ...], profile: Profile) -> str:
    table, reduction = summary["table"], summary["reduction"]
    rows = []
    for app in apps:
        for method in METHODS:
            cells_ = [fmt(table[(app, method, "exact")]["error"][0], 4) if (app, method, "exact") in table else "(per K)"]
            for mode in MODES:
                n = table[(app, method, mode)]["norm"]
                cells_.append(f"{n[0]:.2f} ± {n[1]:.2f}")
            rows.append([app, method, *cells_])
    average = []
    for method in METHODS:
        means = [[table[(a, method, m)]["norm"][0] for a in apps] for m in MODES]
        average.append(["**Average**", method, "", *[f"{np.nanmean(v):.2f}" for v in means]])
    red_rows = []
    for method in METHODS[1:]:
        ours = [fmt(reduction[(method, m)][0], 3, pct=True) for m in MODES]
        paper = [fmt(PAPER_REDUCTION[method].get(m), 3, pct=True) for m in MODES]
        red_rows.append([method, *[f"{o} (paper {p})" for o, p in zip(ours, paper)]])
    per_app = md_table(
        ["app", *[f"{method} {m}" for method in METHODS[1:] for m in MODES]],
        [[app, *[fmt(reduction[(method, m)][1][app], 3, pct=True) for method in METHODS[1:] for m in MODES]] for app in apps],
    )
    acc_rows = []
    for app in [*apps, "**Average**"]:
        for method in METHODS:
            chosen = apps if app == "**Average**" else (app,)
            row = [app, method]
            for mode in ALL_MODES:
                keys = [(a, method, mode) for a in chosen if (a, method, mode) in table]
                row.append(f"{np.mean([table[k]['accuracy'][0] for k in keys]):.3f}" if keys else "-")
            acc_rows.append(row)
    mnist = [a for a in apps if a.startswith("mnist")]
    schedules = "; ".join(
        f"{a}: {profile.app(a).epochs} + {profile.app(a).pas_epochs} pas epochs on "
        f"{profile.app(a).train_subset or 'all'} training samples, {profile.app(a).seeds} seed(s)"
        for a in mnist
    )
    note = (
        f" The MNIST apps run a reduced schedule in this profile ({schedules}): their networks are less converged than the paper's."
        if mnist else ""
    )
    return "\n".join([
        f"## {TITLE}",
        "",
        "![fig6](fig6.png)",
        "",
        "Output error = classification error rate (1 - accuracy) of the bit-exact 8-bit fixed-point network on "
        "the test split, as the ratio to the BP network's exact-multiplier error rate of the same seed (mean ± std "
        "over seeds; a seed whose BP exact error is 0 is left out). "
        "AxTrain is one network per K (the act network, then pas at that K).",
        "",
        md_table(["app", "method", "exact error", *MODES], rows + average),
        "",
        "**Average output-error reduction versus BP** (1 - error rate / BP's error rate at the same K, mean over apps):",
        "",
        md_table(["method", *MODES], red_rows),
        "",
        "Per application:",
        "",
        per_app,
        "",
        "Test accuracy of the same networks (mean over seeds; AxTrain: its network for that K):",
        "",
        md_table(["app", "method", *ALL_MODES], acc_rows),
        "",
        "**Where and why we differ.** We measure output error as the error rate: our DRUM K1 (k = 1 keeps only "
        "the leading one) rounds every operand down to a power of two, products shrink by about half and the "
        "logits of a 3-layer network by ~5-7x, which moves a softmax-based error (the Brier score, in the CSV) "
        "without changing decisions. Error rates on small test splits are coarse (one ionosphere sample = 1.4 "
        "points) and a near-zero BP exact error makes ratios large. The paper does not give K4 averages. At 8 bits the easy apps "
        "(breast-cancer, ionosphere) barely notice DRUM, so their ratios sit near 1 for every method "
        "and small test splits (71 / 114 samples) make single-app reductions noisy; the paper's networks "
        "are likely wider-word, where DRUM's relative error dominates more. AxTrain's pas phase trains "
        "with the deployment multiplier; act alone is the trainer's act at its default gamma, which on our "
        "8-bit networks can cost accuracy under K1 (compare the accuracy table)." + note,
    ])
