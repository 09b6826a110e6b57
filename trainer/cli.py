"""``axtrain train`` and ``axtrain export``: thin click commands over the trainer's Python API."""

from __future__ import annotations

import click

from axtrain.cli_params import multiplier_option, sram_voltage_option
from axtrain.hwmodels.multipliers import MultiplierMode
from axtrain.trainer.config import METHOD_NAMES


@click.command("train")
@click.option("--app", help="Application (breast-cancer, image-segmentation, ionosphere, satimage, mnist-mlp, mnist-cnn).")
@click.option("--method", type=click.Choice(METHOD_NAMES), help="Training method.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Run directory to create or resume.")
@click.option("--seed", type=int, help="Seed of split, initial weights, shuffling and fault maps.")
@click.option("--epochs", type=int, help="Epochs of the first phase (bp/act; act cap of axtrain; BP warm-up of pas).")
@click.option("--pas-epochs", type=int, help="Epochs of the pas phase (pas, axtrain).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML or JSON file of TrainConfig keys.")
@multiplier_option("Target multiplier; pas trains with it")
@sram_voltage_option("Target weight-SRAM voltage")
@click.option("--bits", type=int, help="Weight and activation width in bits (4..16).")
@click.option(
    "--output-layer",
    type=click.Choice(["sigmoid", "softmax"]),
    help="Output layer: sigmoid (default; the paper's: MSE loss on Sigmoid outputs, S on them) or softmax (cross-entropy, S on the logits).",
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where to train.")
@click.option("--force", is_flag=True, help="Retrain even if RUN_DIR holds a finished (or different) run.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train(
    app: str | None,
    method: str | None,
    out: str,
    seed: int | None,
    epochs: int | None,
    pas_epochs: int | None,
    config_file: str | None,
    multiplier: MultiplierMode | None,
    sram_voltage: float | None,
    bits: int | None,
    output_layer: str | None,
    device: str | None,
    force: bool,
    quiet: bool,
) -> None:
    """Train a network for the target hardware into a run directory (resumable)."""
    from axtrain.trainer.config import load_config
    from axtrain.trainer.engine import summary_line, train as run_training

    config = load_config(
        config_file,
        app=app,
        method=method,
        seed=seed,
        epochs=epochs,
        pas_epochs=pas_epochs,
        multiplier=multiplier,
        sram_voltage=sram_voltage,
        bits_w=bits,
        bits_a=bits,
        output_layer=output_layer,
        device=device,
    )
    from axtrain.errors import OutputError
    from axtrain.locks import output_lock

    with output_lock(out, inside=True):
        try:
            result = run_training(config, out, force=force, progress=not quiet)
        except OutputError as exc:
            # The epochs finished so far are in the checkpoint, written atomically: nothing is lost.
            from pathlib import Path

            from axtrain.trainer.rundir import CHECKPOINT

            if (Path(out) / CHECKPOINT).is_file():
                raise OutputError(f"{exc}; the run's last checkpoint in {out} is kept: make room and rerun the same command to resume") from None
            raise OutputError(f"{exc}; no epoch was saved yet: make room and rerun the same command") from None
    click.echo(f"{summary_line(result.summary)} -> {result.run_dir}")


@click.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="ONNX file to write.")
@multiplier_option("Annotate with this multiplier instead of the run's target")
@sram_voltage_option("Annotate with this SRAM voltage instead of the run's target")
def export(run_dir: str, out: str, multiplier: MultiplierMode | None, sram_voltage: float | None) -> None:
    """Export a finished run as annotated dynamic-fixed-point ONNX."""
    from axtrain.locks import output_lock
    from axtrain.trainer.export import export_run

    with output_lock(out):
        path = export_run(run_dir, out, multiplier=multiplier, sram_voltage=sram_voltage)
    click.echo(f"wrote {path}")
