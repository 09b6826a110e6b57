"""Where a network's energy goes on the machine model: shares of compute, on-chip SRAM, PE local
memories and DRAM at batch 1 and 100, and how the multipliers (exact, DRUM K1..K4) and the
weight-SRAM voltage (1.1 / 0.85 / 0.66 V) move the total. The table of docs/runtime.md "Where the
energy goes" is this script's output.

    python benchmarks/energy_shares.py                      # LeNet-5 (seeded random 8-bit weights)
    python benchmarks/energy_shares.py --bundle out/resnet8 # any compiled bundle, e.g. ResNet-8

Cycle and event counts do not depend on data or weights, so no inputs are needed: the events of the
bundle's program are priced with the default 65 nm technology table. Deterministic.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/energy_shares.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from axtrain.formats.bundle import Bundle, load_bundle
from axtrain.hwmodels.multipliers import parse_mode
from axtrain.hwmodels.technology import DEFAULT_65NM
from axtrain.runtime.energy import price
from axtrain.runtime.events import instruction_context
from axtrain.runtime.simulator import simulate_machine

BATCHES = (1, 100)
MODES = (None, "drum:1", "drum:2", "drum:3", "drum:4")
VOLTAGES = (None, 0.85, 0.66)


def shares(bundle: Bundle, mode: str | None, voltage: float | None, batch: int) -> dict[str, float]:
    """Joules per inference and the share of each part."""
    context = instruction_context(bundle.program, bundle.arch, bundle.layers, parse_mode(mode) if mode else None, voltage)
    run = simulate_machine(bundle.program, bundle.arch, context, batch)
    e = price(run.total, DEFAULT_65NM, bundle.arch).scaled(1.0 / batch)
    buffers = sum(e.storage.get(m, 0.0) + e.leakage.get(m, 0.0) for m in ("weight_buffer", "neuron_buffer", "bias_buffer"))
    local = sum(e.storage.get(m, 0.0) + e.leakage.get(m, 0.0) for m in ("weight_local", "neuron_local"))
    total = e.total_joules
    return {
        "total": total, "compute": e.compute_joules / total, "sram": buffers / total, "local": local / total,
        "dram": e.storage.get("dram", 0.0) / total, "cycles": run.total.cycles / batch,
    }


def table(name: str, bundle: Bundle) -> list[str]:
    """Markdown rows: every batch, then every multiplier at nominal and every voltage with exact."""
    lines = [f"{name}: energy per inference (65 nm table, default architecture of the bundle)", "",
             "| batch | multipliers | weight SRAM | energy / inference | vs exact, 1.1 V | compute | on-chip SRAM | PE local memories | DRAM |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for batch in BATCHES:
        base = shares(bundle, None, None, batch)["total"]
        configs = [(m, None) for m in MODES] + [(None, v) for v in VOLTAGES[1:]] + [("drum:1", 0.66)]
        for mode, voltage in configs:
            s = shares(bundle, mode, voltage, batch)
            lines.append(
                f"| {batch} | {mode or 'exact'} | {voltage or 1.1:g} V | {s['total'] * 1e9:.4g} nJ | {100 * (s['total'] / base - 1):+.2f} % | "
                f"{100 * s['compute']:.1f} % | {100 * s['sram']:.1f} % | {100 * s['local']:.1f} % | {100 * s['dram']:.1f} % |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, action="append", default=[], help="a compiled bundle (repeatable); default: LeNet-5")
    args = parser.parse_args(argv)
    out: list[str] = []
    if args.bundle:
        for path in args.bundle:
            out += table(path.name, load_bundle(path)) + [""]
    else:
        from benchmarks.bench_runtime import build, lenet_layers

        with tempfile.TemporaryDirectory() as tmp:
            out += table("LeNet-5", load_bundle(build(lenet_layers(), (1, 28, 28), Path(tmp) / "lenet", "mnist-cnn")))
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
