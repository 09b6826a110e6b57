"""``axtrain hw``: query the hardware models from the command line (kept out of hwmodels/, which
imports nothing of ours but axtrain.errors).

    axtrain hw drum --k 6 --bits 16 [--signed] [--samples N] [--seed S] [--json]
    axtrain hw ntv --voltage 0.66 [--json]
    axtrain hw tech [--table FILE] [--json]

Errors (k out of range, a voltage outside the NTV model, a bad table file) are raised as
AxTrainError subclasses; ``axtrain.cli.main`` prints them as one line and exits with 2.
"""

from __future__ import annotations

import json

import click

from axtrain.cli_params import sram_voltage_option
from axtrain.formats.technology import load_table
from axtrain.hwmodels import ntv
from axtrain.hwmodels.stats import drum_error_stats
from axtrain.hwmodels.technology import DEFAULT_65NM


@click.group("hw")
def hw() -> None:
    """Query the hardware models: DRUM error statistics, NTV SRAM bit-error rate, the energy table."""


@hw.command("drum")
@click.option("--k", "k", type=int, required=True, help="DRUM kept bits (1..16); K1..K4 of the paper are k = 1..4.")
@click.option("--bits", type=int, required=True, help="Operand width in bits (2..32); up to 8 bits every pair is enumerated.")
@click.option("--signed", is_flag=True, help="Signed (two's complement range, sign-magnitude DRUM) instead of unsigned operands.")
@click.option("--samples", type=int, default=10**6, show_default=True, help="Random operand pairs above 8 bits.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the operand sampler.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (errors as fractions).")
def drum(k: int, bits: int, signed: bool, samples: int, seed: int, as_json: bool) -> None:
    """Error of DRUM(k) products over uniform non-zero operands: bias, mean and max relative error."""
    from axtrain.limits import MAX_SAMPLES, MAX_SEED, check_range

    check_range("--seed", seed, 0, MAX_SEED)
    check_range("--samples", samples, 1, MAX_SAMPLES)
    stats = drum_error_stats(k, bits, signed=signed, samples=samples, seed=seed)
    if as_json:
        click.echo(json.dumps(stats, sort_keys=True))
        return
    how = "all pairs" if stats["exhaustive"] else f"{stats['pairs']} random pairs, seed {seed}"
    click.echo(f"DRUM(k={k}) on {bits}-bit {'signed' if signed else 'unsigned'} operands ({how}, zero products excluded)")
    click.echo(f"  bias (mean relative error, signed): {stats['bias'] * 100:+.4f} %")
    click.echo(f"  mean relative error:                {stats['mean_relative_error'] * 100:.4f} %")
    click.echo(f"  max relative error:                 {stats['max_relative_error'] * 100:.4f} %")


@hw.command("ntv")
@sram_voltage_option("SRAM supply voltage", name="--voltage", required=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def ntv_command(voltage: float, as_json: bool) -> None:
    """Bit-error rate of near-threshold SRAM at a supply voltage."""
    rate = ntv.bit_error_rate(voltage)
    result = {
        "bit_error_rate": rate,
        "voltage": voltage,
        "nominal_voltage": ntv.NOMINAL_VOLTAGE,
        "calibration": [{"voltage": v, "bit_error_rate": p} for v, p in ntv.CALIBRATION],
    }
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"bit-error rate at {voltage:g} V: {rate:.6g} ({rate * 100:.4g} % of stored bits flip)")


@hw.command("tech")
@click.option("--table", "table_path", type=click.Path(dir_okay=False), default=None,
              help="A YAML or JSON technology table (omitted keys keep the 65 nm defaults).")
@click.option("--json", "as_json", is_flag=True, help="Print the table as one JSON object.")
def tech(table_path: str | None, as_json: bool) -> None:
    """Print the technology table (energy per operation, leakage, clock) with units and sources."""
    table = DEFAULT_65NM if table_path is None else load_table(table_path)
    if as_json:
        click.echo(json.dumps(table.model_dump()))
        return
    click.echo(f"technology table: {'default 65 nm-class estimate' if table_path is None else table_path}")
    for name, value, description in table.describe():
        click.echo(f"{name:<32} {value:>12.6g}   {description}")
    click.echo("derived (J per op):")
    for mode in ("exact", "drum:1", "drum:2", "drum:3", "drum:4"):
        e8, e16 = table.multiplier_energy(mode, 8), table.multiplier_energy(mode, 16)
        click.echo(f"  multiplier {mode:<7} 8-bit {e8:.3e}   16-bit {e16:.3e}")
