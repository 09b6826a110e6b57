"""Fig. 9: the lowest compute power and storage power at <= 2 % accuracy loss, BP vs ApproxAnn vs AxTrain.

Power = joules of one inference / its latency, from the runtime's event counts priced by the
technology table (runtime/energy.py): *compute* = multipliers + adders, *storage* = the on-chip
SRAM buffers (weight and neuron buffer, dynamic energy + leakage; DRAM and the PE
local memories are in the CSV's total but not in either axis). Accuracy = the runtime's on the test split (mean over
NTV runs below nominal voltage, then over seeds). The budget is 2 points below BP's exact, nominal
accuracy. As in the paper the two axes are searched separately:

* compute: uniform multiplier modes exact, K4..K1 at nominal voltage. BP deploys its one network at
  each K; AxTrain deploys its network trained for that K (act, then pas at K); ApproxAnn deploys its
  per-neuron K1 or K2 network (started from BP). The lowest compute power within budget wins.
* storage: weight-SRAM voltages 1.1 V and Table 1's conservative and aggressive voltages, exact
  multipliers. BP deploys its network at V; AxTrain its network trained at V. ApproxAnn does not
  touch storage (it only picks multipliers), so its storage column is BP's.

* heterogeneous plans (beyond the paper): for each AxTrain-K network, ``axtrain explore``'s search
  (:func:`axtrain.explore.search.explore`) picks per-layer modes at nominal voltage, on a validation
  part of the training split, within 2 points of BP's exact accuracy on that same part; the plan is
  then measured on the test split and competes in the AxTrain compute column like any other setting
  ("het" on the bar). ``hetero_vs_uniform`` is what the AxTrain column saves over its best uniform
  setting. The storage axis has no heterogeneous plan: the weight SRAM has one voltage.

The chosen mode / voltage is printed on each bar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from axtrain.explore.search import CONFIDENCE_Z, SELECTION_FRACTION
from axtrain.hwmodels.ntv import NOMINAL_VOLTAGE
from axtrain.reproduce import networks as nets
from axtrain.reproduce.cells import Cell, CellStore
from axtrain.reproduce.fig7 import voltages
from axtrain.reproduce.plots import Panel, grouped_bars
from axtrain.reproduce.profile import BUDGET, MODES, Profile
from axtrain.reproduce.report import fmt, md_table

NAME = "fig9"
TITLE = "Fig. 9: lowest power within 2 points of accuracy loss (runtime energy model)"
METHODS = ("BP", "ApproxAnn", "AxTrain")
APPROXANN_MODES = ("K1", "K2")
PAPER = {"compute_vs_bp": 0.4157, "storage_vs_bp": 0.3314, "compute_vs_approxann": 0.2573}

#: The per-layer modes the heterogeneous search may use, least aggressive first.
EXPLORE_MODES = ("exact", "K4", "K3", "K2", "K1")
HET = "het"  # setting prefix of a heterogeneous plan: "het K1-net" = the plan explore chose for the AxTrain-K1 network


def _candidates(profile: Profile, app: str, seed: int) -> dict[tuple[str, str, str], Cell]:
    """(method, axis, setting) -> simulate cell. setting: a mode name or a voltage in mV."""
    bp = nets.bp(profile, app, seed)
    out = {("BP", "compute", "exact"): nets.simulate(profile, bp, app, seed, "exact", NOMINAL_VOLTAGE)}
    for mode in MODES:
        out[("BP", "compute", mode)] = nets.simulate(profile, bp, app, seed, mode, NOMINAL_VOLTAGE)
        out[("AxTrain", "compute", mode)] = nets.simulate(profile, nets.axtrain(profile, app, seed, multiplier=mode), app, seed, mode, NOMINAL_VOLTAGE)
    for mode in APPROXANN_MODES:
        out[("ApproxAnn", "compute", mode)] = nets.simulate(profile, nets.approxann(profile, app, seed, "bp", mode), app, seed, None, NOMINAL_VOLTAGE)
    for v in voltages(app).values():
        tag = f"{v * 1000:.0f} mV"
        out[("BP", "storage", tag)] = nets.simulate(profile, bp, app, seed, "exact", v)
        out[("AxTrain", "storage", tag)] = nets.simulate(profile, nets.axtrain(profile, app, seed, sram_voltage=v), app, seed, "exact", v)
    return out


def cells(profile: Profile) -> list[Cell]:
    out = [c for app in profile.apps for seed in profile.seeds(app) for c in _candidates(profile, app, seed).values()]
    out += [explore_cell(profile, app, seed, mode) for app in profile.apps for seed in profile.seeds(app) for mode in MODES]
    return out


SELECTION_CAP = 10000  # selection samples of one explore cell at most (MNIST-MLP: its whole test split's size)


def explore_cell(profile: Profile, app: str, seed: int, mode: str) -> Cell:
    """The heterogeneous plan (per-layer modes, nominal voltage) of the AxTrain network trained at ``mode``."""
    params = {
        "app": app, "seed": seed, "max_loss": BUDGET, "modes": [profile.drum(m) for m in EXPLORE_MODES], "voltages": [NOMINAL_VOLTAGE],
        "runs": 1,  # nominal voltage: nothing flips, one run is exact
        "data": profile.data(app), "selection_fraction": SELECTION_FRACTION, "confidence_z": CONFIDENCE_Z,
        # MNIST: at most as many selection samples as its simulations use test samples, and never more
        # than SELECTION_CAP (the search is ~30-100 simulations; half of MNIST's training split is 30000).
        "selection_cap": min(c for c in (profile.app(app).test_subset, SELECTION_CAP) if c is not None),
    }
    deps = (nets.bundle(nets.axtrain(profile, app, seed, multiplier=mode)), nets.bundle(nets.bp(profile, app, seed)))
    return Cell("explore", params, deps, f"explore axtrain@{mode} {app} s{seed}")


def short_plan(modes: list[str], profile: Profile) -> str:
    """``["drum:1", "exact"]`` -> ``"K1/exact"`` (the paper's names, layer order), through the
    profile's ``--k-map``: with ``2,3,4,5`` DRUM(2) is K1, and a DRUM k no K stands for keeps its name."""
    names = {f"drum:{k}": mode for mode, k in zip(MODES, profile.k_map, strict=True)}
    return "/".join(names.get(m, m) for m in modes)


def _row(app: str, seed: int, method: str, axis: str, setting: str, r: dict, ref: dict, plan: str, **extra: object) -> dict:
    return {
        "app": app, "seed": seed, "method": method, "axis": axis, "setting": setting, "plan": plan,
        "accuracy": r["accuracy_mean"], "accuracy_std_runs": r["accuracy_std"], "reference_accuracy": ref["accuracy_mean"],
        "compute_power_w": r["compute_power_w"], "storage_power_w": r["storage_power_w"], "power_w": r["power_w"],
        "compute_power_rel": r["compute_power_w"] / ref["compute_power_w"], "storage_power_rel": r["storage_power_w"] / ref["storage_power_w"],
        "cycles": r["cycles"], "selection_saving_vs_uniform": extra.get("selection_saving_vs_uniform", ""),
        "uniform_plan": extra.get("uniform_plan", ""),
        "selection_loss_bound": extra.get("selection_loss_bound", ""),
        "test_loss": ref["accuracy_mean"] - r["accuracy_mean"],
    }


def collect(store: CellStore, profile: Profile) -> list[dict]:
    """One row per (app, seed, method, axis, setting) candidate, heterogeneous plans included."""
    rows = []
    for app in profile.apps:
        for seed in profile.seeds(app):
            cands = _candidates(profile, app, seed)
            ref = store.result(cands[("BP", "compute", "exact")])
            for (method, axis, setting), cell in cands.items():
                rows.append(_row(app, seed, method, axis, setting, store.result(cell), ref, setting))
            for mode in MODES:
                r = store.result(explore_cell(profile, app, seed, mode))
                search = r["search"]
                # Compute energy: at one voltage the plans differ only in their multipliers.
                saved = 1 - search["chosen"]["compute_joules"] / search["best_uniform"]["compute_joules"]
                rows.append(_row(
                    app, seed, "AxTrain", "compute", f"{HET} {mode}-net", r["test"]["chosen"], ref, short_plan(r["test"]["chosen"]["modes"], profile),
                    selection_saving_vs_uniform=saved, uniform_plan=short_plan(r["test"]["best_uniform"]["modes"], profile),
                    selection_loss_bound=search.get("chosen_loss_bound", ""),
                ))
    return rows


def _best(options: list[tuple[str, list[dict]]], axis: str, threshold: float) -> dict | None:
    """The lowest seed-mean power among settings whose seed-mean accuracy reaches ``threshold``."""
    key = f"{axis}_power_rel"
    best: dict[str, Any] | None = None
    for setting, rs in options:
        acc = float(np.mean([r["accuracy"] for r in rs]))
        power = float(np.mean([r[key] for r in rs]))
        if acc >= threshold - 1e-12 and (best is None or power < best["power_rel"] - 1e-12):
            best = {"setting": setting, "accuracy": acc, "power_rel": power,
                    "power_w": float(np.mean([r[f"{axis}_power_w"] for r in rs])), "spread": float(np.std([r[key] for r in rs])),
                    "plans": sorted({r["plan"] for r in rs})}
    return best


def summarise(rows: list[dict], apps: tuple[str, ...]) -> dict:
    """Per (app, method, axis): the lowest-power setting whose seed-mean accuracy is within budget.

    ``(app, "AxTrain-uniform", "compute")`` is AxTrain's choice without the heterogeneous plans.
    """
    choice: dict[tuple[str, ...], Any] = {}  # (app, method, axis) -> the best setting; (app, "reference") -> its accuracy
    for app in apps:
        sel = [r for r in rows if r["app"] == app]
        ref_acc = float(np.mean([r["reference_accuracy"] for r in sel]))
        baseline = [r for r in sel if (r["method"], r["axis"], r["setting"]) == ("BP", "compute", "exact")]
        for method in (*METHODS, "AxTrain-uniform"):
            for axis in ("compute", "storage"):
                own = method.removesuffix("-uniform")
                settings: dict[str, list[dict]] = {}
                for r in sel:
                    if method == "AxTrain-uniform" and r["setting"].startswith(HET):
                        continue
                    if r["axis"] == axis and (r["method"] == own or (own == "ApproxAnn" and axis == "storage" and r["method"] == "BP")):
                        settings.setdefault(r["setting"], []).append(r)
                # The exact, nominal deployment of BP's network is always available (no loss).
                options = [("exact" if axis == "compute" else "1100 mV", baseline)] + list(settings.items())
                choice[(app, method, axis)] = _best(options, axis, ref_acc - BUDGET)
        choice[(app, "reference")] = ref_acc
    savings = {}
    for name, (a, b, axis) in {
        "compute_vs_bp": ("AxTrain", "BP", "compute"),
        "storage_vs_bp": ("AxTrain", "BP", "storage"),
        "compute_vs_approxann": ("AxTrain", "ApproxAnn", "compute"),
        "hetero_vs_uniform": ("AxTrain", "AxTrain-uniform", "compute"),
    }.items():
        per_app = {app: 1 - choice[(app, a, axis)]["power_rel"] / choice[(app, b, axis)]["power_rel"] for app in apps}
        savings[name] = {"mean": float(np.mean(list(per_app.values()))), "per_app": per_app}
    het = [r for r in rows if r["setting"].startswith(HET) and r["app"] in apps]
    selection = {app: float(np.mean([r["selection_saving_vs_uniform"] for r in het if r["app"] == app])) for app in apps}
    # The budget as the search kept it (selection data, with its confidence bound) beside what the
    # chosen plans lost on the test split: per app the worst over networks and seeds, and how many broke it.
    test_loss = {}
    for app in apps:
        mine = [r for r in het if r["app"] == app]
        losses = [r["reference_accuracy"] - r["accuracy"] for r in mine]
        bounds = [float(r["selection_loss_bound"]) for r in mine if r.get("selection_loss_bound", "") != ""]
        test_loss[app] = {
            "worst": float(max(losses)) if losses else float("nan"),
            "broken": sum(loss > BUDGET + 1e-12 for loss in losses),
            "plans": len(mine),
            "bound": float(max(bounds)) if bounds else float("nan"),
        }
    return {"choice": choice, "savings": savings, "selection_saving": selection, "test_loss": test_loss}


def _note(setting: str) -> str:
    # Two short lines ("850" over "mV") fit above a narrow bar without tilting the text.
    return HET if setting.startswith(HET) else setting.replace(" mV", "\nmV")


def plot(summary: dict, apps: tuple[str, ...], path: Path) -> Path:
    choice = summary["choice"]
    panels = []
    for axis in ("compute", "storage"):
        values, errors, notes = [], [], []
        for method in METHODS:
            picks = [choice[(a, method, axis)] for a in apps]
            v = [p["power_rel"] for p in picks]
            values.append(v + [float(np.mean(v))])
            errors.append([p["spread"] for p in picks] + [0.0])
            notes.append([_note(p["setting"]) for p in picks] + [""])
        panels.append(Panel(f"{axis} power", f"{axis} power / BP exact @ 1.1 V", [*apps, "Average"], METHODS, values, errors, notes, reference=1.0))
    return grouped_bars(panels, path, TITLE)


def section(summary: dict, apps: tuple[str, ...], profile: Profile) -> str:
    choice, savings = summary["choice"], summary["savings"]
    rows = []
    for app in apps:
        for axis in ("compute", "storage"):
            cells_ = []
            for method in METHODS:
                p = choice[(app, method, axis)]
                cells_.append(f"{p['power_rel']:.3f} ({p['setting']}, acc {p['accuracy']:.3f})")
            rows.append([app, axis, fmt(choice[(app, "reference")]), *cells_])
    avg_rows = []
    for axis in ("compute", "storage"):
        avg_rows.append(["**Average**", axis, "", *[f"{np.mean([choice[(a, m, axis)]['power_rel'] for a in apps]):.3f}" for m in METHODS]])
    sav_rows = [
        [label, fmt(savings[key]["mean"], 3, pct=True), fmt(PAPER[key], 4, pct=True)]
        for key, label in (("compute_vs_bp", "compute power, AxTrain vs BP"), ("storage_vs_bp", "storage power, AxTrain vs BP"),
                           ("compute_vs_approxann", "compute power, AxTrain vs ApproxAnn"))
    ]
    het_rows = []
    for app in apps:
        uni, het = choice[(app, "AxTrain-uniform", "compute")], choice[(app, "AxTrain", "compute")]
        plans = "; ".join(het["plans"]) if het["setting"].startswith(HET) else "-"
        het_rows.append([
            app, f"{uni['power_rel']:.4f} ({uni['setting']})", f"{het['power_rel']:.4f} ({het['setting']})", plans,
            fmt(savings["hetero_vs_uniform"]["per_app"][app], 3, pct=True), fmt(summary["selection_saving"][app], 3, pct=True),
            f"{100 * summary['test_loss'][app]['bound']:.1f}", f"{100 * summary['test_loss'][app]['worst']:.1f}",
            f"{summary['test_loss'][app]['broken']} / {summary['test_loss'][app]['plans']}",
        ])
    het_rows.append(["**Average**", "", "", "", fmt(savings["hetero_vs_uniform"]["mean"], 3, pct=True),
                     fmt(float(np.mean(list(summary["selection_saving"].values()))), 3, pct=True), "", "", ""])
    return "\n".join([
        f"## {TITLE}",
        "",
        "![fig9](fig9.png)",
        "",
        "Lowest power within 2 points of BP's exact accuracy (runtime, test split), relative to BP at exact / 1.1 V; "
        "in brackets the chosen mode or voltage and its accuracy. Compute and storage are searched separately. "
        "AxTrain's compute column also considers the per-layer plans `axtrain explore` chose for each AxTrain-K network "
        "(\"het K-net\"; table below).",
        "",
        md_table(["app", "axis", "BP exact acc", *METHODS], rows + avg_rows),
        "",
        "**Power saved by AxTrain** (1 - P_AxTrain / P_other at each one's best setting, mean over apps):",
        "",
        md_table(["comparison", "ours", "paper"], sav_rows),
        "",
        "**Heterogeneous vs uniform (beyond the paper).** For each AxTrain-K network, `axtrain explore`'s search "
        "chose per-layer multiplier modes (exact, K4..K1; nominal voltage) on a validation part of the training split, "
        "within 2 points of BP's exact accuracy there; each plan was then measured on the test split and competes in the "
        "AxTrain compute column. Compute power relative to BP exact: AxTrain's best uniform setting, its best setting "
        "with the plans, the plans behind it (per seed, modes in layer order), what it saves on the test split, and what "
        "the search's chosen plan saved over its best uniform plan on the selection data (mean over networks and seeds), "
        f"then the budget beside the test split: the largest loss bound of a chosen plan on its selection data (loss against "
        f"BP's exact accuracy + {CONFIDENCE_Z:g} standard errors of the paired difference to the network's exact plan, points; "
        f"budget {100 * BUDGET:g}; above the budget where no plan fitted and the network's exact plan stands in), "
        "the largest test-split loss of a chosen plan against BP's exact accuracy (points), and how many chosen plans "
        "lost more than the budget on the test split:",
        "",
        md_table(["app", "best uniform", "with explore", "plans", "saved (test)", "saved (selection)", "chosen bound (sel.)", "worst test loss", "over budget (test)"], het_rows),
        "",
        f"The search selects on {100 * SELECTION_FRACTION:g} % of the training split (stratified) with a one-sided confidence "
        "bound on each plan's loss, so a few lucky selection samples cannot carry a plan past the budget; the test split can "
        "still differ (it is another sample), and the column applies the budget to test accuracy, as it does for the uniform "
        "settings, so such a plan is not chosen. "
        "Savings are small in absolute terms because the adders, which every plan keeps exact, are most of compute power.",
        "",
        "**Machine model.** The FlexFlow machine model v2 (ISA 2, bundle format 2.0, simulation report "
        "schema 2; docs/isa.md, docs/runtime.md) with the 65 nm energy table (docs/hwmodels.md), at batch 1: "
        "every inference loads its weights from DRAM, as the paper's per-inference accounting does. Power is "
        "energy per inference over latency per inference, so DRAM, which neither approximation touches, is in "
        "neither column (storage power is the weight and neuron buffers only).",
        "",
        "**Where and why we differ.** At 8 bits a DRUM multiplier saves at most 44 % (K1) of an exact one's "
        "energy in our gate-count model (decision 10), and the adders, which approximation does not touch, are a "
        "large share of compute power, which caps the compute saving well below the paper's. Storage power is "
        "the weight and neuron SRAM buffers (dynamic + leakage) and only the weight buffer's voltage is scaled; "
        "our voltage grid is Table 1's two NTV points plus nominal, so a choice is one of three steps. Where "
        "the act network loses more than 2 points at exact multipliers, no AxTrain "
        "network fits the budget and the column falls back to exact / 1.1 V.",
    ])
