"""``axtrain pipeline``: the whole flow in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from axtrain.cli_params import deprecated_alias, multiplier_option, sram_voltage_option, take_alias
from axtrain.hwmodels.multipliers import MultiplierMode
from axtrain.trainer.config import METHOD_NAMES


@click.command("pipeline")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), help="Pipeline file (YAML/JSON: app, out, train, export, compile, simulate groups; docs/pipeline.md). Options override its values.")
@click.option("--app", help="Application (see `axtrain data list`), e.g. breast-cancer. Required here or in --config.")
@click.option("--method", type=click.Choice(METHOD_NAMES), help="Training method.  [default: axtrain]")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output directory (run, ONNX, bundle, report, summary). Required here or in --config.")
@multiplier_option("Target multiplier the network is trained for and annotated with  [default: exact]")
@sram_voltage_option("Target weight-SRAM voltage  [default: 1.1, nominal]")
@click.option("--runs", type=int, help="Monte Carlo runs of the simulation (one NTV fault map each).  [default: 50]")
@click.option("--seed", type=int, help="Training seed (data split, initial weights, shuffling), as in `axtrain train`.  [default: 0]")
@click.option("--fault-seed", type=int, help="Seed of the simulation's NTV fault maps, as in `axtrain simulate`.  [default: 0]")
@deprecated_alias("--sim-seed", "--fault-seed")
@click.option("--epochs", type=int, help="Training epochs.  [default: the application's, docs/trainer.md]")
@click.option("--arch", "arch_file", type=click.Path(dir_okay=False, path_type=Path), help="Accelerator architecture (YAML/JSON, see docs/compiler.md).  [default: docs/compiler.md's]")
@click.option("--force", is_flag=True, help="Replace what OUT holds instead of reusing finished stages of the same config.")
def pipeline(
    config_file: Path | None,
    app: str | None,
    method: str | None,
    out: Path | None,
    multiplier: MultiplierMode | None,
    sram_voltage: float | None,
    runs: int | None,
    seed: int | None,
    fault_seed: int | None,
    sim_seed_alias: int | None,
    epochs: int | None,
    arch_file: Path | None,
    force: bool,
) -> None:
    """Train, export, compile, verify and simulate APP in one go, leaving everything in --out.

    Re-running with the same config reuses finished stages (keyed by their parameters and input
    hashes, recorded in OUT/pipeline.json); an interrupted pipeline resumes where it stopped; OUT
    holding another config is refused unless --force. The effective config is kept as OUT/config.json.
    On breast-cancer the whole pipeline takes 24 s to 2 min on 2 CPU cores (README 'How long it takes'); on MNIST training dominates.
    """
    import time

    from axtrain.errors import OutputError
    from axtrain.locks import output_lock
    from axtrain.pipeline.config import options_from
    from axtrain.pipeline.run import run_pipeline, validate_options

    start = time.perf_counter()
    fault_seed = take_alias(fault_seed, sim_seed_alias, "--sim-seed", "--fault-seed")
    given: dict[str, Any] = {
        "app": app, "method": method, "out": out, "multiplier": multiplier, "sram_voltage": sram_voltage, "runs": runs,
        "seed": seed, "fault_seed": fault_seed, "epochs": epochs, "arch": arch_file,
    }
    options = options_from(config_file, {k: v for k, v in given.items() if v is not None}, force=force, progress=True)
    validate_options(options)  # before the lock creates OUT
    with output_lock(options.out, inside=True):
        try:
            result = run_pipeline(options, log=lambda line: click.echo(line, err=True))
        except OutputError as exc:
            raise OutputError(f"{exc}; finished stages (and the training checkpoint) in {options.out} are kept: make room and rerun the same command to resume") from None
    click.echo((options.out / "summary.md").read_text())
    click.echo(f"pipeline: {options.out} ({len(result.ran)} stages ran, {len(result.reused)} reused) in {time.perf_counter() - start:.1f} s")
