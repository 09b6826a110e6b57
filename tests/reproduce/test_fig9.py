"""Fig. 9's choice rule on hand-made rows: the budget, the heterogeneous plans, the savings."""

from __future__ import annotations

import pytest

from axtrain.reproduce import fig9
from axtrain.reproduce.profile import QUICK


def _row(method: str, axis: str, setting: str, accuracy: float, compute: float, storage: float = 1.0, seed: int = 0) -> dict:
    return {
        "app": "a", "seed": seed, "method": method, "axis": axis, "setting": setting, "plan": setting,
        "accuracy": accuracy, "reference_accuracy": 0.90,
        "compute_power_rel": compute, "storage_power_rel": storage, "compute_power_w": compute, "storage_power_w": storage,
        "selection_saving_vs_uniform": 0.1 if setting.startswith(fig9.HET) else "",
    }


def _rows(het_accuracy: float) -> list[dict]:
    return [
        _row("BP", "compute", "exact", 0.90, 1.0),
        _row("BP", "compute", "K1", 0.80, 0.70),  # out of budget (>2 points lost)
        _row("BP", "compute", "K2", 0.89, 0.80),
        _row("BP", "storage", "660 mV", 0.89, 1.0, 0.5),
        _row("ApproxAnn", "compute", "K1", 0.885, 0.78),
        _row("AxTrain", "compute", "K1", 0.87, 0.70),  # out of budget
        _row("AxTrain", "compute", "K2", 0.89, 0.76),
        _row("AxTrain", "compute", f"{fig9.HET} K1-net", het_accuracy, 0.72),
        _row("AxTrain", "storage", "660 mV", 0.895, 1.0, 0.45),
    ]


def test_a_heterogeneous_plan_within_budget_wins_the_axtrain_compute_column() -> None:
    summary = fig9.summarise(_rows(het_accuracy=0.885), ("a",))
    choice, savings = summary["choice"], summary["savings"]
    assert choice[("a", "BP", "compute")]["setting"] == "K2"
    assert choice[("a", "AxTrain-uniform", "compute")]["setting"] == "K2"
    assert choice[("a", "AxTrain", "compute")]["setting"] == f"{fig9.HET} K1-net"
    assert savings["hetero_vs_uniform"]["mean"] == pytest.approx(1 - 0.72 / 0.76, abs=1e-12)
    assert savings["compute_vs_bp"]["mean"] == pytest.approx(1 - 0.72 / 0.80, abs=1e-12)
    assert savings["compute_vs_approxann"]["mean"] == pytest.approx(1 - 0.72 / 0.78, abs=1e-12)
    # Storage: ApproxAnn uses BP's network, AxTrain its own.
    assert choice[("a", "ApproxAnn", "storage")]["power_rel"] == 0.5
    assert savings["storage_vs_bp"]["mean"] == pytest.approx(1 - 0.45 / 0.5, abs=1e-12)
    assert summary["selection_saving"]["a"] == pytest.approx(0.1, abs=1e-12)


def test_a_heterogeneous_plan_that_loses_too_much_on_test_is_not_chosen() -> None:
    summary = fig9.summarise(_rows(het_accuracy=0.879), ("a",))
    assert summary["choice"][("a", "AxTrain", "compute")]["setting"] == "K2"
    assert summary["savings"]["hetero_vs_uniform"]["mean"] == 0.0


def test_every_network_of_every_seed_gets_an_explore_cell() -> None:
    profile = QUICK.with_options(apps=("breast-cancer", "ionosphere"), seeds=2)
    cells = [c for c in fig9.cells(profile) if c.kind == "explore"]
    assert len(cells) == 2 * 2 * 4
    assert len({c.key for c in cells}) == len(cells)
    one = fig9.explore_cell(profile, "ionosphere", 1, "K2")
    # deps: the AxTrain-K2 bundle searched and BP's bundle as the budget's reference
    assert [d.label for d in one.deps] == ["bundle axtrain@K2 ionosphere s1", "bundle bp ionosphere s1"]
    assert one.params["modes"] == list(fig9.EXPLORE_MODES) and one.params["voltages"] == [1.1]


def test_short_plan_uses_the_papers_names() -> None:
    assert fig9.short_plan(["drum:1", "exact", "drum:4"], QUICK) == "K1/exact/K4"


def test_short_plan_follows_the_k_map() -> None:
    """With --k-map 2,3,4,5, DRUM(2) is K1 and DRUM(5) K4; DRUM(1) is no K and keeps its own name
    (the DRUM k printed as 'K' once: 'K2/exact/K5')."""
    shifted = QUICK.with_options(k_map="2,3,4,5")
    assert fig9.short_plan(["drum:2", "exact", "drum:5"], shifted) == "K1/exact/K4"
    assert fig9.short_plan(["drum:1", "drum:3"], shifted) == "drum:1/K2"
