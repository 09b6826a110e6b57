"""``axtrain train`` and ``axtrain export``: thin click commands over the trainer's Python API."""

from __future__ import annotations

from pathlib import Path

import click

from axtrain.cli_params import multiplier_option, sram_voltage_option
from axtrain.hwmodels.multipliers import MultiplierMode
from axtrain.trainer.config import APP_DEFAULTS, METHOD_NAMES, TrainConfig

# The defaults shown in --help come from the config model and the per-app table (the options are
# None so that a --config file can set them; the help states what applies when neither does).
_FIELDS = TrainConfig.model_fields


def _per_app(key: str) -> str:
    return ", ".join(f"{app} {values[key]}" for app, values in APP_DEFAULTS.items())


@click.command("train", epilog=(
    "Expected times on 2 CPU cores (README 'How long it takes'): breast-cancer's whole demo pipeline 24 s to 2 min; one "
    "MNIST-MLP epoch about 1 min (bp) and 2-7.5 min (act), one MNIST-CNN act epoch about an hour; default epochs (first + pas) "
    + ", ".join(f"{app} {APP_DEFAULTS[app]['epochs']}+{APP_DEFAULTS[app]['pas_epochs']}" for app in ("mnist-mlp", "mnist-cnn")) + ". "
    "The pas phase's emulated arithmetic runs as numba kernels on the CPU (the same bits as the torch path; "
    "AXTRAIN_KERNELS=torch in the environment selects the torch path; docs/trainer.md)."
))
@click.option("--app", help="Application (breast-cancer, image-segmentation, ionosphere, satimage, mnist-mlp, mnist-cnn).")
@click.option("--method", type=click.Choice(METHOD_NAMES), help=f"Training method.  [default: {_FIELDS['method'].default.value}]")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Run directory to create or resume.")
@click.option("--seed", type=int, help=f"Training seed: split, initial weights, shuffling and the pas phase's fault maps.  [default: {_FIELDS['seed'].default}]")
@click.option("--epochs", type=int, help=f"Epochs of the first phase (bp/act; act cap of axtrain; BP warm-up of pas).  [default per app: {_per_app('epochs')}]")
@click.option("--pas-epochs", type=int, help=f"Epochs of the pas phase (pas, axtrain).  [default per app: {_per_app('pas_epochs')}]")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML or JSON file of TrainConfig keys.")
@multiplier_option("Target multiplier; pas trains with it  [default: exact]")
@sram_voltage_option("Target weight-SRAM voltage  [default: 1.1, nominal]")
@click.option("--bits", type=int, help="Weight and activation width in bits (4..16).  [default: 8]")
@click.option(
    "--output-layer",
    type=click.Choice(["sigmoid", "softmax"]),
    help="Output layer: sigmoid (the paper's: MSE loss on Sigmoid outputs, S on them) or softmax (cross-entropy, S on the logits).  [default: softmax for bp and approxann from bp, else sigmoid]",
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help=f"Where to train (auto: cuda when available).  [default: {_FIELDS['device'].default}]")
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
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
def export(run_dir: str, out: str, multiplier: MultiplierMode | None, sram_voltage: float | None, force: bool) -> None:
    """Export a finished run as annotated dynamic-fixed-point ONNX."""
    from axtrain.locks import output_lock
    from axtrain.overwrite import check_file_output
    from axtrain.trainer.export import export_run
    from axtrain.trainer.rundir import check_run_folder

    check_run_folder(Path(run_dir))
    check_file_output(Path(out), force, "--out")
    with output_lock(out):
        path = export_run(run_dir, out, multiplier=multiplier, sram_voltage=sram_voltage)
    click.echo(f"wrote {path}")
