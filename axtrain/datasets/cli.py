"""``axtrain data``: list the applications and show one application's split."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from axtrain.datasets.applications import APPLICATIONS, Application
from axtrain.datasets.loader import get_application, load


def _row(app: Application) -> dict[str, object]:
    return {
        "app": app.name,
        "samples": app.n_samples,
        "features": app.n_features,
        "classes": app.n_classes,
        "train": app.n_train,
        "test": app.n_test,
        "kind": app.kind,
        "topology": app.topology_text if app.kind == "cnn" else list(app.topology),
        "input_shape": list(app.input_shape),
        "sram_voltages_mv": {"aggressive": app.sram_voltages_mv[0], "conservative": app.sram_voltages_mv[1]},
    }


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A plain left-aligned text table (numbers right-aligned)."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        parts = [c.rjust(w) if c.isdigit() else c.ljust(w) for c, w in zip(cells, widths, strict=True)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


@click.group("data")
def data() -> None:
    """Inspect the bundled data sets of the paper's six applications."""


@data.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def list_command(as_json: bool) -> None:
    """List the applications: samples, features, classes, train/test sizes, topology."""
    if as_json:
        click.echo(json.dumps([_row(app) for app in APPLICATIONS.values()], indent=2))
        return
    header = ["app", "samples", "features", "classes", "train", "test", "topology"]
    rows = [
        [a.name, str(a.n_samples), str(a.n_features), str(a.n_classes), str(a.n_train), str(a.n_test), a.topology_text]
        for a in APPLICATIONS.values()
    ]
    click.echo(_table(header, rows))


@data.command("show")
@click.argument("app")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Split seed (UCI apps).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of text.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Another copy of the data folder (uci/, mnist/); default: the bundled files.",
)
def show_command(app: str, seed: int, as_json: bool, data_dir: Path | None) -> None:
    """Show one application: description, class counts per split, voltages, standardisation."""
    application = get_application(app)
    split = load(app, seed=seed, data_dir=data_dir)
    n_classes = len(split.class_names)
    train_counts = np.bincount(split.y_train, minlength=n_classes).tolist()
    test_counts = np.bincount(split.y_test, minlength=n_classes).tolist()
    info = _row(application) | {
        "description": application.description,
        "seed": seed,
        "split": "official 60k/10k" if application.dataset == "mnist" else "stratified 80/20",
        "class_counts": {
            name: {"train": tr, "test": te}
            for name, tr, te in zip(split.class_names, train_counts, test_counts, strict=True)
        },
    }
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    volts = application.sram_voltages_mv
    click.echo(f"{application.name}: {application.description}")
    click.echo(f"  kind {application.kind}, topology {application.topology_text}, input {application.input_shape}")
    click.echo(f"  {application.n_samples} samples, {application.n_features} features, {n_classes} classes")
    click.echo(f"  split {info['split']} (seed {seed}): train {split.y_train.size}, test {split.y_test.size}")
    click.echo(f"  SRAM voltages: aggressive {volts[0]} mV, conservative {volts[1]} mV")
    scope = "one global value" if split.mean.ndim == 0 else "per feature"
    click.echo(f"  standardised with training-split statistics, {scope}")
    rows = [[name, str(tr), str(te)] for name, tr, te in zip(split.class_names, train_counts, test_counts, strict=True)]
    click.echo(_table(["class", "train", "test"], rows))
