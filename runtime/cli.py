"""``axtrain verify`` (and, from the runtime engineer, ``axtrain simulate``)."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np


def verify_bundle(path: Path) -> list[str]:
    """Re-check hashes and replay the golden vectors through the reference interpreter.

    Returns one line per layer; a mismatch raises BundleError naming the layer and the first
    differing value.
    """
    from axtrain.errors import BundleError
    from axtrain.formats.bundle import load_bundle
    from axtrain.hwmodels.fixedpoint import FixedPointFormat, dequantize
    from axtrain.runtime.interpreter import run_bundle

    bundle = load_bundle(path)  # versions and every sha256 first
    inputs = bundle.golden_inputs()
    outputs = run_bundle(bundle, inputs)
    lines = []
    for layer, produced in zip(bundle.layers, outputs):
        golden = bundle.golden_layer(layer.index)
        if golden.shape != produced.shape:
            raise BundleError(f"layer {layer.index} ({layer.name}): golden shape {golden.shape} != interpreter shape {produced.shape}")
        wrong = np.argwhere(golden != produced)
        if wrong.size:
            where = tuple(int(i) for i in wrong[0])
            raise BundleError(
                f"layer {layer.index} ({layer.name}): {len(wrong)} values differ from the golden vectors; "
                f"first at {where}: interpreter {int(produced[where])}, golden {int(golden[where])}"
            )
        lines.append(f"layer {layer.index:>2} {layer.name:<16} {layer.op:<8} OK  ({produced.shape[0]} inputs x {produced[0].size} values, bit-exact)")
    final = dequantize(outputs[-1], FixedPointFormat.parse(bundle.manifest.output.format))
    if not np.array_equal(final, bundle.golden_outputs()):
        raise BundleError("golden/outputs.npy differs from the dequantised output of the last layer")
    lines.append(f"output            OK  ({final.shape[0]} x {final[0].size} float32 values equal golden/outputs.npy)")
    return lines


@click.command("verify")
@click.argument("bundle", type=click.Path(path_type=Path))
def verify_command(bundle: Path) -> None:
    """Check BUNDLE's hashes and replay its golden vectors through the reference interpreter."""
    for line in verify_bundle(bundle):
        click.echo(line)
    click.echo(f"verify: {bundle} OK")
