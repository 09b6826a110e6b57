"""``axtrain hdl``, ``axtrain trace`` and ``axtrain compare`` (docs/bringup.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    import numpy as np

    from axtrain.formats.bundle import Bundle


@click.command("hdl")
@click.argument("bundle", required=False, type=click.Path(path_type=Path))
@click.option("--arch", "arch_file", type=click.Path(dir_okay=False, path_type=Path), help="Generate from an architecture file instead of a bundle (no testbench).")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Folder to write (replaced with --force).")
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
def hdl(bundle: Path | None, arch_file: Path | None, out: Path, force: bool) -> None:
    """Generate a SystemVerilog package and C header from the ISA and BUNDLE's architecture (or
    --arch FILE); from a bundle also a self-checking testbench and its hex images."""
    from axtrain.bringup.hdl import generate
    from axtrain.errors import ConfigError
    from axtrain.formats.arch import load_arch
    from axtrain.formats.bundle import load_bundle

    if (bundle is None) == (arch_file is None):
        raise ConfigError("give exactly one of BUNDLE or --arch FILE")
    if out.exists() and not force:
        raise ConfigError(f"{out} already exists (use --force to replace it)")
    if bundle is not None:
        b = load_bundle(bundle)
        names = generate(out, b.arch, b, f" and bundle {b.manifest.content_sha256 or bundle.name}", overwrite=force)
    else:
        assert arch_file is not None
        names = generate(out, load_arch(arch_file), None, f" and architecture {arch_file.name}", overwrite=force)
    click.echo(f"hdl: {len(names)} files -> {out}: {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}")


def _one_input(bundle: Bundle, spec: str, index: int) -> tuple[np.ndarray, str]:
    """The quantised input named by ``--input``: ``golden:K`` or a float32 .npy (sample ``index``)."""
    import numpy as np

    from axtrain.errors import ConfigError
    from axtrain.hwmodels.fixedpoint import FixedPointFormat, quantize
    from axtrain.runtime.cli import _load_npy
    from axtrain.runtime.simulation import check_inputs

    if spec.startswith("golden:"):
        goldens = bundle.golden_inputs()
        try:
            k = int(spec.split(":", 1)[1])
        except ValueError:
            raise ConfigError(f"--input {spec}: expected golden:K with K an integer") from None
        if not 0 <= k < len(goldens):
            raise ConfigError(f"--input {spec}: the bundle has goldens 0..{len(goldens) - 1}")
        x, label = goldens[k : k + 1], f"golden input {k}"
    else:
        x, _ = check_inputs(bundle, _load_npy(Path(spec), "--input"), where="--input")
        if not 0 <= index < len(x):
            raise ConfigError(f"--index {index}: {spec} holds samples 0..{len(x) - 1}")
        x, label = x[index : index + 1], f"{Path(spec).name}[{index}]"
    return quantize(np.asarray(x, np.float32), FixedPointFormat.parse(bundle.manifest.input.format))[0], label


@click.command("trace")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--input", "input_spec", required=True, help="golden:K (the bundle's K-th golden) or a float32 .npy of inputs.")
@click.option("--index", type=int, default=0, show_default=True, help="Sample of the --input .npy to trace.")
@click.option("--format", "form", type=click.Choice(["text", "csv", "vcd"]), default="text", show_default=True, help="text: one line per instruction; csv: one row per written word; vcd: the cycle timeline per unit.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of standard output.")
def trace_command(bundle: Path, input_spec: str, index: int, form: str, out: Path | None) -> None:
    """Trace one input through BUNDLE: each instruction's cycles, unit and writes (accumulators,
    buffers), from the reference interpreter and the reference cycle simulator."""
    from axtrain import atomic
    from axtrain.formats.bundle import load_bundle
    from axtrain.runtime.trace import format_csv, format_text, format_vcd, trace

    b = load_bundle(bundle)
    q, label = _one_input(b, input_spec, index)
    records = trace(b, q)
    text = format_text(records) if form == "text" else format_csv(records) if form == "csv" else format_vcd(records, b.arch.clock_hz)
    if out is None:
        click.echo(text, nl=False)
    else:
        atomic.write_bytes(out, text.encode("utf-8"))
        click.echo(f"trace: {label}, {len(records)} instructions, {records[-1].end} cycles -> {out}")


@click.command("compare")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("dump", type=click.Path(path_type=Path))
def compare(bundle: Path, dump: Path) -> None:
    """Compare DUMP (an RTL run's layer_<i>.hex / .npy outputs, a folder or one file) with BUNDLE's
    goldens; name the first mismatch's layer, instruction, tile and PE. Exit 1 on a mismatch."""
    from axtrain.bringup.compare import compare_dump
    from axtrain.formats.bundle import load_bundle

    b = load_bundle(bundle)
    lines, mismatch = compare_dump(b, dump)
    for line in lines:
        click.echo(line)
    if mismatch is not None:
        click.echo(mismatch.line(b.arch.pe_cols))
        raise SystemExit(1)
    click.echo(f"compare: {dump} matches the goldens")
