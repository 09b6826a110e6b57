"""NTV fault maps over a bundle's weight memory image (one map per Monte Carlo run, i.e. per chip).

Each compute layer's weights occupy a slice of the weight image (``layers.json``: ``weights.dram``,
``weights.count``). A weight is stored in the near-threshold weight SRAM in its own format's width
``b`` (``weight_format``, e.g. 8 bits) as two's complement; the image word is that value sign-extended
to ``weight_word_bits``. Each of the ``b`` stored bits flips independently with ``p(V)`` at the
layer's weight-SRAM voltage (docs/numerics.md, docs/decisions.md): exactly what the trainer's
AxTrain-pas emulation and ``hwmodels.layers.forward`` with a faulted weight copy compute. Biases sit
at nominal voltage and never flip.

Seeding: run ``i`` of a simulation with seed ``S`` draws from
``np.random.default_rng(np.random.SeedSequence([S, i]))``, so a run's fault map does not depend on
how many runs there are, and layers are drawn in layer order from that one generator.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from axtrain.errors import BundleError
from axtrain.formats.bundle import LayerRecord
from axtrain.hwmodels.ntv import bit_error_rate, inject
from axtrain.runtime.overrides import Overrides, override_layers


@dataclass(frozen=True)
class FaultRegion:
    """One layer's weights in the image: where, how many words, stored bits, bit-error rate."""

    layer: str
    start: int
    count: int
    bits: int
    voltage: float
    p: float


def run_generator(seed: int, run: int) -> np.random.Generator:
    """The generator of Monte Carlo run ``run`` under simulation seed ``seed`` (independent of N)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(run)]))


def fault_regions(layers: Sequence[LayerRecord], sram_voltage: float | None = None) -> list[FaultRegion]:
    """The weight-image slices of ``layers`` with their bit-error rates at each layer's voltage.

    Pass a run plan's layers (runtime/overrides.py); ``sram_voltage``, for callers holding a
    bundle's own layer table, applies that override first. An out-of-range voltage raises
    HardwareModelError."""
    if sram_voltage is not None:
        layers = override_layers(layers, Overrides(sram_voltage=sram_voltage))
    regions = []
    for layer in layers:
        if layer.weights is None:
            continue
        weight_format = layer.formats.weight
        if weight_format is None:
            raise BundleError(f"layer {layer.index} ({layer.name}) has weights but no weight_format")
        bits = weight_format.bits
        regions.append(FaultRegion(layer.name, layer.weights.dram, layer.weights.count, bits, layer.sram_voltage, bit_error_rate(layer.sram_voltage)))
    return regions


def has_faults(regions: Sequence[FaultRegion]) -> bool:
    """Whether any region can flip a bit (p > 0)."""
    return any(r.p > 0.0 and r.count > 0 for r in regions)


def faulted_image(image: np.ndarray, regions: Sequence[FaultRegion], rng: np.random.Generator, out: np.ndarray | None = None) -> np.ndarray:
    """A copy of the weight image with one fault map drawn over every region (layer order), written
    into ``out`` (int64, the image's size) when given."""
    if out is None:
        out = np.array(image, dtype=np.int64, copy=True)
    else:
        out[...] = image
    for region in regions:
        if region.p <= 0.0 or region.count == 0:
            continue
        words = out[region.start : region.start + region.count]
        out[region.start : region.start + region.count] = inject(words, region.bits, region.p, rng)
    return out


def run_image(image: np.ndarray, regions: Sequence[FaultRegion], seed: int, run: int) -> np.ndarray:
    """The weight image of Monte Carlo run ``run`` (the clean image when no region can fault)."""
    if not has_faults(regions):
        return np.asarray(image, dtype=np.int64)
    return faulted_image(image, regions, run_generator(seed, run))


def run_images(image: np.ndarray, regions: Sequence[FaultRegion], seed: int, runs: range, workers: int = 1) -> np.ndarray:
    """The weight images of Monte Carlo runs ``runs``, stacked ``[len(runs), words]`` (int64): row
    ``i`` is ``run_image(image, regions, seed, runs[i])``, bit for bit.

    Each run draws from its own generator (``SeedSequence([seed, run])``), so the runs can be drawn
    in ``workers`` threads in any order with the same result; numpy releases the GIL in the draws
    and the mask arithmetic (50 MNIST-MLP maps: about half the wall time on two threads). Each
    image is written straight into its row (no stacking copy)."""
    out = np.empty((len(runs), np.asarray(image).size), dtype=np.int64)
    if not has_faults(regions):
        out[...] = np.asarray(image, dtype=np.int64).reshape(-1)
        return out

    def draw(index: int) -> None:
        faulted_image(image, regions, run_generator(seed, runs[index]), out=out[index])

    if workers > 1 and len(runs) > 1:
        with ThreadPoolExecutor(min(workers, len(runs))) as pool:
            list(pool.map(draw, range(len(runs))))
    else:
        for index in range(len(runs)):
            draw(index)
    return out
