"""``axtrain explore BUNDLE --app APP --out PLAN_BUNDLE``: search, print the Pareto front, write the plan.

Selection data: a stratified validation part of the app's *training* split (``split_validation``),
so the plan is never chosen on test data; the chosen plan, the baseline and the best uniform plan are
then measured once on the test split and reported separately (docs/explore.md).
"""

from __future__ import annotations

from pathlib import Path

import click

from axtrain.errors import ConfigError

SELECTION_FRACTION = 0.2


def _split_list(text: str, option: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ConfigError(f"{option}: expected a comma-separated list, got {text!r}")
    return items


def _floats(text: str, option: str) -> list[float]:
    out = []
    for item in _split_list(text, option):
        try:
            out.append(float(item))
        except ValueError:
            raise ConfigError(f"{option}: {item!r} is not a voltage in volts") from None
    return out


@click.command("explore")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--app", required=True, help="Application whose data selects (training-split validation part) and tests the plan.")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Write the chosen plan as a bundle here.")
@click.option("--max-loss", type=float, default=0.02, show_default=True, help="Accuracy budget: mean accuracy may drop this much below the baseline.")
@click.option("--runs", type=int, default=10, show_default=True, help="NTV Monte Carlo runs per evaluation.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fault maps and of the selection split.")
@click.option("--modes", default="exact,drum:4,drum:3,drum:2,drum:1", show_default=True, help="Multiplier modes, least aggressive first.")
@click.option("--voltages", default="1.1,0.85,0.66,0.5,0.4", show_default=True, help="Weight-SRAM voltages (V), highest first.")
@click.option("--split-seed", type=int, help="Seed of the app's train/test split (default: the bundle's training seed, else 0).")
@click.option("--report", "report_file", type=click.Path(dir_okay=False, path_type=Path), help="Write a JSON report here.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def explore(
    bundle: Path, app: str, out: Path, max_loss: float, runs: int, seed: int, modes: str, voltages: str,
    split_seed: int | None, report_file: Path | None, force: bool,
) -> None:
    """Search per-layer multiplier modes and the weight-SRAM voltage of BUNDLE for the lowest energy
    per inference within --max-loss of the baseline (first mode, first voltage) accuracy."""
    from axtrain.datasets.applications import APPLICATIONS, unknown_application_message
    from axtrain.errors import DataError
    from axtrain.explore.search import parse_modes, parse_voltages
    from axtrain.limits import MAX_RUNS, MAX_SEED, check_range
    from axtrain.locks import output_locks

    if runs < 1:
        raise ConfigError(f"--runs must be at least 1, got {runs}")
    if seed < 0:
        raise ConfigError(f"--seed must be non-negative, got {seed}")
    check_range("--runs", runs, 1, MAX_RUNS)
    check_range("--seed", seed, 0, MAX_SEED)
    check_range("--split-seed", split_seed, 0, MAX_SEED)
    if not 0.0 <= max_loss <= 1.0:
        raise ConfigError(f"--max-loss must be a fraction in [0, 1], got {max_loss}")
    mode_list = parse_modes(_split_list(modes, "--modes"))
    volt_list = parse_voltages(_floats(voltages, "--voltages"))
    if out.exists() and not force:
        raise ConfigError(f"{out} already exists (use --force to replace it)")
    if app not in APPLICATIONS:  # before the lock creates anything
        raise DataError(unknown_application_message(app))
    if report_file is not None and report_file.resolve() == out.resolve():
        raise ConfigError(f"--report and --out name the same path {out}; give each its own")
    with output_locks((out, False), (report_file, False)):
        _explore(bundle, app, out, max_loss, runs, seed, mode_list, volt_list, split_seed, report_file, force)


def _explore(
    bundle: Path, app: str, out: Path, max_loss: float, runs: int, seed: int, mode_list: list, volt_list: list,
    split_seed: int | None, report_file: Path | None, force: bool,
) -> None:
    from axtrain import atomic
    from axtrain.datasets import load
    from axtrain.datasets.split import split_validation
    from axtrain.explore.replan import apply_plan, write_replanned
    from axtrain.explore.search import explore as run_search, format_table
    from axtrain.formats.bundle import load_bundle
    from axtrain.runtime.simulation import simulate

    b = load_bundle(bundle)
    if split_seed is None:
        split_seed = int(b.manifest.seed) if b.manifest.seed and b.manifest.seed.isdigit() else 0
    data = load(app, seed=split_seed)
    _, _, x_sel, y_sel = split_validation(data.x_train, data.y_train, SELECTION_FRACTION, seed)
    result = run_search(b, x_sel, y_sel, max_loss, mode_list, volt_list, runs, seed)

    marks = {"chosen": result.chosen, "best-uniform": result.best_uniform, "baseline": result.baseline}
    click.echo(f"explore: {len(result.points)} plans evaluated on {len(y_sel)} selection samples of {app} (training split), {runs} NTV runs each")
    click.echo(f"baseline accuracy {result.baseline.accuracy:.4f}; budget: >= {result.threshold:.4f} (max loss {max_loss})")
    click.echo("Pareto front (energy per inference vs mean selection accuracy):")
    click.echo(format_table(result.pareto, result.baseline, marks))
    test = {}
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
        f"{test['best-uniform']['accuracy']:.4f}, baseline {test['baseline']['accuracy']:.4f}"
    )
    write_replanned(b, result.chosen.plan, out, overwrite=force)
    click.echo(f"plan bundle: {out}")
    if report_file is not None:
        report = {
            "bundle": str(bundle), "app": app, "split_seed": split_seed, "selection": {"source": "training split validation part", "fraction": SELECTION_FRACTION, "count": int(len(y_sel))},
            "modes": list(mode_list), "voltages": list(volt_list), **result.as_dict(), "test": test, "out": str(out),
        }
        atomic.write_json(report_file, report)
        click.echo(f"report: {report_file}")
