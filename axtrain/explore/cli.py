"""``axtrain explore BUNDLE --app APP --out PLAN_BUNDLE``: search, print the Pareto front, write the plan.

Selection data: a stratified validation part of the app's *training* split (``split_validation``),
so the plan is never chosen on test data; the chosen plan, the baseline and the best uniform plan are
then measured once on the test split and reported separately (docs/explore.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from axtrain.cli_params import MODE_LIST, VOLTAGE_LIST, deprecated_alias, take_alias
from axtrain.errors import ConfigError
from axtrain.explore.search import CONFIDENCE_Z, SELECTION_FRACTION
from axtrain.hwmodels.multipliers import MultiplierMode


@click.command("explore")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--app", required=True, help="Application whose data selects (training-split validation part) and tests the plan.")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Write the chosen plan as a bundle here.")
@click.option("--max-loss", type=float, default=0.02, show_default=True, help="Accuracy budget: mean accuracy may drop this much below the baseline.")
@click.option("--runs", type=int, default=10, show_default=True, help="NTV Monte Carlo runs per evaluation.")
@click.option("--fault-seed", "seed", type=int, help="Seed of the NTV fault maps, as simulate's --fault-seed.  [default: 0]")
@deprecated_alias("--seed", "--fault-seed")
@click.option("--modes", type=MODE_LIST, default="exact,drum:4,drum:3,drum:2,drum:1", show_default=True, help="Multiplier modes, least aggressive first.")
@click.option("--voltages", type=VOLTAGE_LIST, default="1.1,0.85,0.66,0.5,0.4", show_default=True, help="Weight-SRAM voltages (V), highest first.")
@click.option("--selection-fraction", type=float, default=SELECTION_FRACTION, show_default=True, help="Share of the training split the search selects on.")
@click.option("--confidence-z", type=float, default=CONFIDENCE_Z, show_default=True, help="A plan fits when its loss + z standard errors (paired, vs the baseline) is within --max-loss; 0: point estimate.")
@click.option("--split-seed", type=int, help="Seed of the app's data: its train/test split and the selection part of the training split (default: the bundle's training seed, else 0).")
@click.option("--report", "report_file", type=click.Path(dir_okay=False, path_type=Path), help="Write a JSON report here.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def explore(
    bundle: Path, app: str, out: Path, max_loss: float, runs: int, seed: int | None, seed_alias: int | None, modes: tuple[MultiplierMode, ...],
    voltages: tuple[float, ...], selection_fraction: float, confidence_z: float, split_seed: int | None, report_file: Path | None, force: bool,
) -> None:
    """Search per-layer multiplier modes and the weight-SRAM voltage of BUNDLE for the lowest energy
    per inference within --max-loss of the baseline (first mode, first voltage) accuracy."""
    from axtrain.datasets.applications import APPLICATIONS, unknown_application_message
    from axtrain.errors import DataError
    from axtrain.limits import MAX_RUNS, MAX_SEED, check_range
    from axtrain.locks import output_locks

    # One meaning per seed, as simulate (docs/decisions.md 91, 150): --fault-seed draws the fault maps
    # only; the data (train/test split and the selection part) follow --split-seed.
    seed = take_alias(seed, seed_alias, "--seed", "--fault-seed")
    if seed_alias is not None:
        click.echo("note: the selection split now follows --split-seed (it followed --seed before)", err=True)
    seed = 0 if seed is None else seed
    if runs < 1:
        raise ConfigError(f"--runs must be at least 1, got {runs}")
    check_range("--runs", runs, 1, MAX_RUNS)
    check_range("--fault-seed", seed, 0, MAX_SEED)
    check_range("--split-seed", split_seed, 0, MAX_SEED)
    if not 0.0 <= max_loss <= 1.0:
        raise ConfigError(f"--max-loss must be a fraction in [0, 1], got {max_loss}")
    if not 0.0 < selection_fraction < 1.0:
        raise ConfigError(f"--selection-fraction must be in (0, 1), got {selection_fraction}")
    if out.exists() and not force:
        raise ConfigError(f"{out} already exists (use --force to replace it)")
    if app not in APPLICATIONS:  # before the lock creates anything
        raise DataError(unknown_application_message(app))
    if report_file is not None and report_file.resolve() == out.resolve():
        raise ConfigError(f"--report and --out name the same path {out}; give each its own")
    with output_locks((out, False), (report_file, False)):
        _explore(bundle, app, out, max_loss, runs, seed, modes, voltages, selection_fraction, confidence_z, split_seed, report_file, force)


def _explore(
    bundle: Path, app: str, out: Path, max_loss: float, runs: int, seed: int, modes: tuple[MultiplierMode, ...], voltages: tuple[float, ...],
    selection_fraction: float, confidence_z: float, split_seed: int | None, report_file: Path | None, force: bool,
) -> None:
    """The search under the output locks (arguments already checked by :func:`explore`)."""
    from axtrain import atomic
    from axtrain.compiler.replan import apply_plan, write_replanned
    from axtrain.datasets import load
    from axtrain.datasets.split import split_validation
    from axtrain.explore.search import explore as run_search, format_table
    from axtrain.formats.bundle import load_bundle
    from axtrain.runtime.simulation import simulate

    b = load_bundle(bundle)
    if split_seed is None:
        split_seed = int(b.manifest.seed) if b.manifest.seed and b.manifest.seed.isdigit() else 0
    data = load(app, seed=split_seed)
    _, _, x_sel, y_sel = split_validation(data.x_train, data.y_train, selection_fraction, split_seed)
    result = run_search(b, x_sel, y_sel, max_loss, modes, voltages, runs, seed, confidence_z=confidence_z)

    marks = {"chosen": result.chosen, "best-uniform": result.best_uniform, "baseline": result.baseline}
    click.echo(f"explore: {len(result.points)} plans evaluated on {len(y_sel)} selection samples of {app} (training split), {runs} NTV runs each")
    click.echo(
        f"baseline accuracy {result.baseline.accuracy:.4f}; budget: loss + {confidence_z:g} standard errors <= {max_loss} "
        f"(chosen plan's bound {result.chosen_loss_bound:.4f})"
    )
    click.echo("Pareto front (energy per inference vs mean selection accuracy):")
    click.echo(format_table(result.pareto, result.baseline, marks))
    test: dict[str, Any] = {}
    for name, point in marks.items():
        r = simulate(apply_plan(b, point.plan), data.x_test, data.y_test, runs=runs, seed=seed)
        test[name] = {"plan": point.plan.label(), "accuracy": r.accuracy_mean, "energy_joules": r.energy.total_joules}
    click.echo(
        f"chosen {result.chosen.plan.label()} ({result.chosen.source}): {result.chosen.energy_joules * 1e9:.4f} nJ, "
        f"{100 * result.saving_vs_uniform:.4g}% below the best uniform plan {result.best_uniform.plan.label()}, "
        f"{100 * result.saving_vs_baseline:.4g}% below the baseline"
    )
    click.echo(
        f"test split ({len(data.y_test)} samples): chosen {test['chosen']['accuracy']:.4f}, best uniform "
        f"{test['best-uniform']['accuracy']:.4f}, baseline {test['baseline']['accuracy']:.4f}; "
        f"chosen plan's test loss {test['baseline']['accuracy'] - test['chosen']['accuracy']:.4f} against the budget {max_loss}"
    )
    test["chosen_test_loss"] = test["baseline"]["accuracy"] - test["chosen"]["accuracy"]
    write_replanned(b, result.chosen.plan, out, overwrite=force)
    click.echo(f"plan bundle: {out}")
    if report_file is not None:
        report = {
            "bundle": str(bundle), "app": app, "split_seed": split_seed, "fault_seed": seed, "selection": {"source": "training split validation part", "fraction": selection_fraction, "count": int(len(y_sel))},
            "modes": [str(m) for m in modes], "voltages": list(voltages), **result.as_dict(), "test": test, "out": str(out),
        }
        atomic.write_json(report_file, report)
        click.echo(f"report: {report_file}")
