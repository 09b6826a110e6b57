"""``axtrain pipeline``: the whole flow in one command."""

from __future__ import annotations

from pathlib import Path

import click

from axtrain.cli_params import multiplier_option, sram_voltage_option
from axtrain.hwmodels.multipliers import MultiplierMode
from axtrain.trainer.config import METHOD_NAMES


@click.command("pipeline")
@click.option("--app", required=True, help="Application (see `axtrain data list`), e.g. breast-cancer.")
@click.option("--method", default="axtrain", show_default=True, type=click.Choice(METHOD_NAMES), help="Training method.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output directory (run, ONNX, bundle, report, summary).")
@multiplier_option("Target multiplier the network is trained for and annotated with (default: the config's, else exact)")
@sram_voltage_option("Target weight-SRAM voltage (default: the config's, else nominal)")
@click.option("--runs", type=int, default=50, show_default=True, help="Monte Carlo runs of the simulation (one NTV fault map each).")
@click.option("--seed", type=int, default=0, show_default=True, help="Training seed (data split, initial weights, shuffling).")
@click.option("--sim-seed", type=int, default=0, show_default=True, help="Seed of the simulation's fault maps.")
@click.option("--epochs", type=int, help="Override the training epochs.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), help="Training config (YAML/JSON, see docs/trainer.md).")
@click.option("--arch", "arch_file", type=click.Path(dir_okay=False, path_type=Path), help="Accelerator architecture (YAML/JSON, see docs/compiler.md).")
@click.option("--force", is_flag=True, help="Redo every stage instead of reusing finished ones.")
def pipeline(
    app: str,
    method: str,
    out: Path,
    multiplier: MultiplierMode | None,
    sram_voltage: float | None,
    runs: int,
    seed: int,
    sim_seed: int,
    epochs: int | None,
    config_file: Path | None,
    arch_file: Path | None,
    force: bool,
) -> None:
    """Train, export, compile, verify and simulate APP in one go, leaving everything in --out.

    Re-running with the same arguments reuses finished stages (keyed by their parameters and input
    hashes, recorded in OUT/pipeline.json); an interrupted pipeline resumes where it stopped.
    """
    import time

    from axtrain.formats.target import HardwareTarget
    from axtrain.pipeline.run import PipelineOptions, run_pipeline
    from axtrain.trainer.config import load_config

    start = time.perf_counter()
    target = None
    if multiplier is not None or sram_voltage is not None:
        # What is not given on the command line comes from the config file (else the defaults).
        base = load_config(config_file, app=app).hardware
        given = {"multiplier": multiplier, "sram_voltage": sram_voltage}
        target = HardwareTarget.model_validate({**base.model_dump(), **{key: value for key, value in given.items() if value is not None}})
    options = PipelineOptions(
        app=app, method=method, out=out, target=target, runs=runs, seed=seed,
        sim_seed=sim_seed, epochs=epochs, config_file=config_file, arch_file=arch_file, force=force, progress=True,
    )
    from axtrain.errors import OutputError
    from axtrain.locks import output_lock
    from axtrain.pipeline.run import validate_options

    validate_options(options)  # before the lock creates OUT
    with output_lock(out, inside=True):
        try:
            result = run_pipeline(options, log=lambda line: click.echo(line, err=True))
        except OutputError as exc:
            raise OutputError(f"{exc}; finished stages (and the training checkpoint) in {out} are kept: make room and rerun the same command to resume") from None
    click.echo((out / "summary.md").read_text())
    click.echo(f"pipeline: {out} ({len(result.ran)} stages ran, {len(result.reused)} reused) in {time.perf_counter() - start:.1f} s")
