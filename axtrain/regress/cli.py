"""``axtrain diff`` and ``axtrain check``."""

from __future__ import annotations

from pathlib import Path

import click

from axtrain.cli_params import deprecated_alias, multiplier_option, sram_voltage_option, take_alias
from axtrain.hwmodels.multipliers import MultiplierMode


@click.command("diff")
@click.argument("a", type=click.Path(path_type=Path))
@click.argument("b", type=click.Path(path_type=Path))
def diff(a: Path, b: Path) -> None:
    """Compare bundles A and B semantically (program, weights, modes, architecture, manifest less
    file names and versions). Exit 0 when equivalent, 1 when they differ."""
    from axtrain.formats.bundle import load_bundle
    from axtrain.regress.diff import diff_bundles, summary

    ba, bb = load_bundle(a), load_bundle(b)
    differences = diff_bundles(ba, bb)
    for line in summary(ba, bb, differences):
        click.echo(line)
    if differences:
        raise SystemExit(1)  # drift or difference: exit 1 (errors are exit 2)


@click.command("check")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--expect", "expect_file", required=True, type=click.Path(dir_okay=False, path_type=Path), help="YAML/JSON: dotted report path -> {value, rel_tol | abs_tol}.")
@click.option("--app", help="Feed the test split of this application (as simulate).")
@click.option("--inputs", "inputs_file", type=click.Path(dir_okay=False, path_type=Path), help="Feed a float32 .npy (as simulate).")
@click.option("--labels", "labels_file", type=click.Path(dir_okay=False, path_type=Path), help="Labels .npy for --inputs.")
@multiplier_option("Override every layer's multiplier")
@sram_voltage_option("Override every layer's weight-SRAM voltage")
@click.option("--runs", type=int, default=1, show_default=True, help="Monte Carlo runs.")
@click.option("--fault-seed", "seed", type=int, help="Seed of the NTV fault maps, as simulate's --fault-seed.  [default: 0]")
@deprecated_alias("--seed", "--fault-seed")
@click.option("--split-seed", type=int, help="Seed of the --app data split (as simulate; default: the bundle's training seed, else 0).")
def check(
    bundle: Path, expect_file: Path, app: str | None, inputs_file: Path | None, labels_file: Path | None,
    multiplier: MultiplierMode | None, sram_voltage: float | None, runs: int, seed: int | None, seed_alias: int | None,
    split_seed: int | None,
) -> None:
    """Simulate BUNDLE and compare the report with the pinned figures of EXPECT.yaml: one line per
    pin; exit 1 when a figure drifted beyond its tolerance."""
    from axtrain.errors import ConfigError
    from axtrain.formats.bundle import load_bundle
    from axtrain.limits import MAX_SEED, check_range
    from axtrain.regress.check import evaluate, load_expect
    from axtrain.runtime.cli import simulation_inputs
    from axtrain.runtime.report import simulate_to_report

    # The seeds as simulate names them (docs/decisions.md 91, 150): --seed is a deprecated --fault-seed.
    seed = take_alias(seed, seed_alias, "--seed", "--fault-seed")
    seed = 0 if seed is None else seed
    pins = load_expect(expect_file)  # a bad expect file fails before any simulation
    if runs < 1:
        raise ConfigError(f"--runs must be at least 1, got {runs}")
    check_range("--fault-seed", seed, 0, MAX_SEED)
    check_range("--split-seed", split_seed, 0, MAX_SEED)
    b = load_bundle(bundle)
    x, y, source = simulation_inputs(b, app, inputs_file, labels_file, split_seed)
    _, report = simulate_to_report(b, x, y, source, multiplier, sram_voltage, runs, seed)
    outcomes = evaluate(report, pins)
    for outcome in outcomes:
        click.echo(outcome.line())
    drifted = [o for o in outcomes if not o.ok]
    click.echo(f"check: {len(outcomes) - len(drifted)}/{len(outcomes)} pins hold" + (f", {len(drifted)} drifted" if drifted else ""))
    if drifted:
        raise SystemExit(1)  # drift or difference: exit 1 (errors are exit 2)
