"""The search: per-layer multiplier modes and one weight-SRAM voltage with the lowest energy per
inference whose mean accuracy stays within ``max_loss`` of the baseline (docs/explore.md).

* baseline: every layer at ``modes[0]`` and ``voltages[0]`` (by default exact at 1.1 V, nominal);
  the budget is ``max_loss`` below the baseline's accuracy, or below ``reference_accuracy`` when a
  caller gives one (Fig. 9 measures every network against BP's exact accuracy);
* uniform plans: every mode x every voltage, the same for all layers (the paper's design space);
* greedy: from the baseline, repeatedly take the single change (one layer one step further down
  ``modes``, or the voltage one step further down ``voltages``) with the best energy saving per unit
  of accuracy lost among the changes that save energy and stay within budget; stop when none is left;
* chosen plan: the lowest-energy plan within budget among everything evaluated (so it is never worse
  than the best uniform plan; its ``source`` says whether the greedy walk found it). With a
  ``reference_accuracy`` even the baseline may miss the budget; if no plan meets it, the chosen and
  best uniform plans are the baseline and ``within_budget`` is False.

Confidence bound (``confidence_z``, docs/explore.md "Keeping the budget"): a plan is within budget
when ``(reference - acc_plan) + z * se <= max_loss``, with ``se`` the standard error of the paired
per-sample accuracy difference between the baseline and the plan on the selection data
(``std_i(c_base,i - c_plan,i) / sqrt(n)``, ``c`` the correctness averaged over the runs). A small
selection split then cannot claim a plan keeps the budget on the strength of a few lucky samples;
``z = 0`` is the plain point estimate (the behaviour before the bound).

Each evaluation simulates the bundle under the plan in memory (:func:`axtrain.compiler.replan.apply_plan`) with
``runs`` NTV runs seeded by ``seed``; evaluations are cached by plan, so the same inputs give the same
result. Energy is data independent (runtime/energy.py); accuracy is the mean over the runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from axtrain.compiler.replan import Plan, apply_plan, compute_layers
from axtrain.errors import ConfigError
from axtrain.formats.bundle import Bundle
from axtrain.formats.target import modes_of, voltages_of
from axtrain.hwmodels.multipliers import MultiplierMode
from axtrain.hwmodels.ntv import NOMINAL_VOLTAGE
from axtrain.hwmodels.technology import DEFAULT_65NM, TechnologyTable
from axtrain.runtime.simulation import simulate

DEFAULT_MODES = modes_of(("exact", "drum:4", "drum:3", "drum:2", "drum:1"))
DEFAULT_VOLTAGES = (NOMINAL_VOLTAGE, 0.85, 0.66, 0.5, 0.4)
SELECTION_FRACTION = 0.5  # of the training split (breast-cancer: 228 samples; 0.2 gave 91, too few to hold 2 points)
CONFIDENCE_Z = 1.645  # one-sided 95 % bound on each plan's loss (docs/explore.md "Keeping the budget")


@dataclass(frozen=True)
class PlanPoint:
    """One evaluated plan."""

    plan: Plan
    energy_joules: float  # per inference
    accuracy: float  # mean over runs
    accuracy_std: float  # over runs
    source: str  # "baseline", "uniform" or "greedy"
    compute_joules: float = 0.0  # multipliers and adders (part of energy_joules)
    storage_joules: float = 0.0  # dynamic memory and DRAM accesses (part of energy_joules)
    leakage_joules: float = 0.0  # (part of energy_joules)

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.plan.as_dict(), "energy_joules": self.energy_joules, "compute_joules": self.compute_joules,
            "storage_joules": self.storage_joules, "leakage_joules": self.leakage_joules,
            "accuracy": self.accuracy, "accuracy_std": self.accuracy_std, "source": self.source,
        }


@dataclass(frozen=True)
class ExploreResult:
    """What :func:`explore` found (accuracies on the selection inputs it was given)."""

    baseline: PlanPoint
    points: tuple[PlanPoint, ...]  # every distinct plan evaluated
    pareto: tuple[PlanPoint, ...]  # non-dominated points, ascending energy
    uniform: tuple[PlanPoint, ...]  # every uniform plan
    greedy_path: tuple[PlanPoint, ...]  # the steps the greedy walk took, baseline first
    chosen: PlanPoint  # lowest energy within budget
    best_uniform: PlanPoint  # lowest-energy uniform plan within budget
    max_loss: float
    runs: int
    seed: int
    reference_accuracy: float | None = None  # the budget's reference (None: the baseline's accuracy)
    confidence_z: float = 0.0  # z of the paired confidence bound on each plan's loss (0: none)
    loss_bounds: dict[str, float] | None = None  # plan label -> reference - accuracy + z * se

    @property
    def chosen_loss_bound(self) -> float:
        """The upper bound on the chosen plan's loss against the reference that the search used."""
        return (self.loss_bounds or {}).get(self.chosen.plan.label(), float(self.reference() - self.chosen.accuracy))

    def reference(self) -> float:
        return self.baseline.accuracy if self.reference_accuracy is None else self.reference_accuracy

    @property
    def threshold(self) -> float:
        """The lowest mean accuracy within budget."""
        reference = self.baseline.accuracy if self.reference_accuracy is None else self.reference_accuracy
        return reference - self.max_loss

    @property
    def within_budget(self) -> bool:
        """False only when a ``reference_accuracy`` was given and no evaluated plan reached the budget."""
        return self.chosen_loss_bound <= self.max_loss + 1e-12

    @property
    def saving_vs_uniform(self) -> float:
        """Fraction of the best uniform plan's energy the chosen plan saves (>= 0)."""
        return 1.0 - self.chosen.energy_joules / self.best_uniform.energy_joules

    @property
    def saving_vs_baseline(self) -> float:
        return 1.0 - self.chosen.energy_joules / self.baseline.energy_joules

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_loss": self.max_loss,
            "runs": self.runs,
            "seed": self.seed,
            "threshold": self.threshold,
            "reference_accuracy": self.reference_accuracy,
            "within_budget": self.within_budget,
            "confidence_z": self.confidence_z,
            "chosen_loss_bound": self.chosen_loss_bound,
            "baseline": self.baseline.as_dict(),
            "chosen": self.chosen.as_dict(),
            "best_uniform": self.best_uniform.as_dict(),
            "saving_vs_uniform": self.saving_vs_uniform,
            "saving_vs_baseline": self.saving_vs_baseline,
            "pareto": [p.as_dict() for p in self.pareto],
            "greedy_path": [p.as_dict() for p in self.greedy_path],
            "uniform": [p.as_dict() for p in self.uniform],
            "evaluations": len(self.points),
        }


def check_levels(modes: Sequence[MultiplierMode | str], voltages: Sequence[float]) -> tuple[tuple[MultiplierMode, ...], tuple[float, ...]]:
    """The search's mode and voltage levels, in the order given (least aggressive first); text from
    a caller's parameters is typed here; an empty or repeated list -> ConfigError."""
    mode_list, volt_list = modes_of(modes), voltages_of(voltages)
    if not mode_list or len(set(mode_list)) != len(mode_list):
        raise ConfigError(f"modes must be distinct multiplier modes, got {','.join(map(str, modes)) or 'nothing'}")
    if not volt_list or len(set(volt_list)) != len(volt_list):
        raise ConfigError(f"voltages must be distinct, got {','.join(map(str, voltages)) or 'nothing'}")
    return mode_list, volt_list


def pareto_front(points: Sequence[PlanPoint]) -> tuple[PlanPoint, ...]:
    """Points no other point beats on both energy (lower) and accuracy (higher), ascending energy."""
    ordered = sorted(points, key=lambda p: (p.energy_joules, -p.accuracy, p.plan.label()))
    front: list[PlanPoint] = []
    for point in ordered:
        if not front or point.accuracy > front[-1].accuracy:
            front.append(point)
    return tuple(front)


def explore(
    bundle: Bundle,
    x_sel: np.ndarray,
    y_sel: np.ndarray,
    max_loss: float = 0.02,
    modes: Sequence[MultiplierMode | str] = DEFAULT_MODES,
    voltages: Sequence[float] = DEFAULT_VOLTAGES,
    runs: int = 10,
    seed: int = 0,
    tech: TechnologyTable = DEFAULT_65NM,
    progress: Callable[[PlanPoint], None] | None = None,
    reference_accuracy: float | None = None,
    confidence_z: float = 0.0,
) -> ExploreResult:
    """Search per-layer modes and the weight-SRAM voltage on the selection data ``x_sel``/``y_sel``.

    The budget is ``max_loss`` below ``reference_accuracy`` if given, else below the baseline's
    accuracy (then the baseline itself is always within budget). ``confidence_z`` > 0 requires each
    plan's loss plus ``z`` standard errors of its paired difference to the baseline to fit the
    budget (module docstring).
    """
    if not (isinstance(confidence_z, (int, float)) and 0.0 <= confidence_z <= 10.0):
        raise ConfigError(f"--confidence-z must be a number in [0, 10], got {confidence_z!r}")
    if not (isinstance(max_loss, (int, float)) and 0.0 <= max_loss <= 1.0):
        raise ConfigError(f"--max-loss must be a fraction in [0, 1], got {max_loss!r}")
    if reference_accuracy is not None and not 0.0 <= reference_accuracy <= 1.0:
        raise ConfigError(f"reference accuracy must be in [0, 1], got {reference_accuracy!r}")
    if y_sel is None:
        raise ConfigError("explore needs labelled selection data")
    mode_list, volt_list = check_levels(modes, voltages)
    n = len(compute_layers(bundle))
    if n == 0:
        raise ConfigError(f"{bundle.path}: has no compute layers to plan")
    cache: dict[Plan, PlanPoint] = {}
    correct: dict[Plan, np.ndarray] = {}  # per-sample correctness, averaged over the runs
    labels = np.asarray(y_sel)

    def evaluate(plan: Plan, source: str) -> PlanPoint:
        if plan not in cache:
            result = simulate(apply_plan(bundle, plan), x_sel, y_sel, runs=runs, seed=seed, tech=tech)
            correct[plan] = (np.asarray(result.predictions) == labels[None, :]).mean(axis=0)
            accs = np.asarray(result.per_run_accuracy, dtype=np.float64)
            e = result.energy
            cache[plan] = PlanPoint(plan, e.total_joules, float(accs.mean()), float(accs.std()), source, e.compute_joules, e.storage_joules, e.leakage_joules)
            if progress is not None:
                progress(cache[plan])
        return cache[plan]

    baseline = evaluate(Plan.uniform(n, mode_list[0], volt_list[0]), "baseline")
    reference = baseline.accuracy if reference_accuracy is None else float(reference_accuracy)
    def loss_bound(point: PlanPoint) -> float:
        d = correct[baseline.plan] - correct[point.plan]
        se = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else 0.0
        return reference - point.accuracy + confidence_z * se

    def fits(point: PlanPoint) -> bool:
        return loss_bound(point) <= max_loss + 1e-12

    uniform = tuple(evaluate(Plan.uniform(n, m, v), "uniform") for v in volt_list for m in mode_list)

    # Greedy walk over (mode index per layer, voltage index).
    levels, volt = [0] * n, 0
    current = baseline
    path = [baseline]
    while True:
        candidates: list[tuple[float, float, PlanPoint, list[int], int]] = []
        moves: list[tuple[int | None, int | None]] = [(i, None) for i in range(n) if levels[i] + 1 < len(mode_list)]
        if volt + 1 < len(volt_list):
            moves.append((None, volt + 1))
        for layer, new_volt in moves:
            new_levels = list(levels)
            if layer is not None:
                new_levels[layer] += 1
            v_index = volt if new_volt is None else new_volt
            plan = Plan(tuple(mode_list[k] for k in new_levels), (volt_list[v_index],) * n)
            point = evaluate(plan, "greedy")
            saving = current.energy_joules - point.energy_joules
            if saving <= 0 or not fits(point):
                continue
            lost = current.accuracy - point.accuracy
            # A change that loses nothing ranks above any that loses something; among those, the larger saving.
            ratio = float("inf") if lost <= 0 else saving / lost
            candidates.append((ratio, saving, point, new_levels, v_index))
        if not candidates:
            break
        candidates.sort(key=lambda c: (c[0], c[1], c[2].plan.label()), reverse=True)
        _, _, current, levels, volt = candidates[0]
        path.append(current)

    points = tuple(cache.values())
    feasible = [p for p in points if fits(p)]
    by_energy = lambda p: (p.energy_joules, -p.accuracy, p.plan.label())  # noqa: E731 - a sort key
    # Without a reference the baseline is always feasible (loss 0), so both minima exist; with one,
    # nothing may be, and the baseline stands in (``within_budget`` then says so).
    chosen = min(feasible, key=by_energy) if feasible else baseline
    best_uniform = min((p for p in feasible if p.plan.is_uniform), key=by_energy, default=baseline)
    return ExploreResult(
        baseline, points, pareto_front(points), uniform, tuple(path), chosen, best_uniform, float(max_loss), runs, seed,
        None if reference_accuracy is None else float(reference_accuracy),
        float(confidence_z), {p.plan.label(): loss_bound(p) for p in points},
    )


def format_table(points: Sequence[PlanPoint], baseline: PlanPoint, marks: dict[str, PlanPoint] | None = None) -> str:
    """A text table: plan, energy (nJ and % of baseline), accuracy (mean +- std), source, marks."""
    marks = marks or {}
    rows = [("plan", "energy nJ", "vs base", "accuracy", "std", "source", "")]
    for p in points:
        tag = ",".join(name for name, q in marks.items() if q.plan == p.plan)
        rows.append((
            p.plan.label(), f"{p.energy_joules * 1e9:.4f}", f"{100 * p.energy_joules / baseline.energy_joules:.3f}%",
            f"{p.accuracy:.4f}", f"{p.accuracy_std:.4f}", p.source, tag,
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)
