"""NTV fault maps as files: the flip mask of each Monte Carlo run, so an RTL run can replay the chip.

``axtrain simulate --fault-map-out FILE`` writes, per run, one mask word per weight-image word: bit
``j`` set means stored bit ``j`` of that word flipped (only the low ``bits`` of the layer's
``weight_format`` are stored, docs/numerics.md; words of no compute layer and bits above the stored
ones are always 0). A testbench applies it as ``sext_bits((w & (2**bits - 1)) ^ mask)``, i.e. flip,
then sign-extend from the stored width, exactly what ``runtime/faults.py`` does.
``--fault-map-in FILE`` replays such a file instead of drawing (one run per map in the file).

Formats, by suffix: ``.npy`` int64 ``[runs, weight words]``; ``.hex`` one mask per line
(``weight_word_bits/4`` hex digits), runs back to back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from axtrain import atomic
from axtrain.errors import BundleError, ConfigError
from axtrain.formats.bundle import Bundle, image_hex, npy_bytes, read_hex, read_npy
from axtrain.runtime.faults import FaultRegion, run_image


def flip_masks(bundle: Bundle, regions: list[FaultRegion] | tuple[FaultRegion, ...], seed: int, runs: int) -> np.ndarray:
    """The masks of runs ``0 .. runs-1`` as ``simulate`` draws them: int64 ``[runs, weight words]``."""
    clean = bundle.weights
    masks = np.zeros((runs, clean.size), dtype=np.int64)
    for run in range(runs):
        image = run_image(clean, regions, seed, run)
        for region in regions:
            s = slice(region.start, region.start + region.count)
            masks[run, s] = (image[s] ^ clean[s]) & ((1 << region.bits) - 1)
    return masks


def apply_masks(weights: np.ndarray, regions: list[FaultRegion] | tuple[FaultRegion, ...], masks: np.ndarray) -> np.ndarray:
    """Weight images ``[runs, words]`` with ``masks`` applied: flip the stored bits, sign-extend."""
    out = np.broadcast_to(np.asarray(weights, dtype=np.int64), masks.shape).copy()
    for region in regions:
        s = slice(region.start, region.start + region.count)
        low, sign = (1 << region.bits) - 1, 1 << (region.bits - 1)
        raw = (out[:, s] & low) ^ masks[:, s]
        out[:, s] = (raw ^ sign) - sign
    return out


def fault_map_bytes(path: Path, masks: np.ndarray, word_bits: int) -> bytes:
    """The file contents of ``masks`` for ``path`` (.npy or .hex by suffix)."""
    if path.suffix == ".hex":
        return image_hex(masks.reshape(-1), word_bits).encode("ascii")
    if path.suffix == ".npy":
        return npy_bytes(masks.astype(np.int64))
    raise ConfigError(f"--fault-map-out {path}: name it .npy or .hex")


def write_fault_map(path: Path, masks: np.ndarray, word_bits: int) -> None:
    """Write masks atomically (.npy or .hex by suffix)."""
    atomic.write_bytes(path, fault_map_bytes(path, masks, word_bits))


def read_fault_map(path: Path, bundle: Bundle, regions: list[FaultRegion] | tuple[FaultRegion, ...]) -> np.ndarray:
    """Masks ``[runs, weight words]`` from a file, checked against the bundle's weight regions."""
    words, bits = bundle.weights.size, bundle.arch.weight_word_bits
    if not path.is_file():
        raise ConfigError(f"--fault-map-in: {path} does not exist")
    if path.suffix == ".hex":
        try:
            flat = read_hex(path, bits) & ((1 << bits) - 1)
        except BundleError as exc:
            raise ConfigError(f"--fault-map-in: {exc}") from None
    elif path.suffix == ".npy":
        try:
            flat = read_npy(path)
        except BundleError as exc:  # the safe reader's one line, reworded for the option
            raise ConfigError(f"--fault-map-in: {exc}") from None
        if flat.dtype.kind not in "iu":
            raise ConfigError(f"--fault-map-in {path}: holds {flat.dtype} values, expected integer masks")
        flat = flat.astype(np.int64).reshape(-1)
    else:
        raise ConfigError(f"--fault-map-in {path}: name it .npy or .hex")
    if flat.size == 0 or flat.size % words:
        raise ConfigError(f"--fault-map-in {path}: {flat.size} masks is not a whole number of runs of the bundle's {words} weight words")
    masks = flat.reshape(-1, words)
    allowed = np.zeros(words, dtype=np.int64)
    for region in regions:
        allowed[region.start : region.start + region.count] = (1 << region.bits) - 1
    stray = np.argwhere(masks & ~allowed)
    if stray.size:
        run, word = (int(v) for v in stray[0])
        raise ConfigError(f"--fault-map-in {path}: run {run} word {word} flips bits {int(masks[run, word]):#x} outside the stored bits (mask {int(allowed[word]):#x})")
    return masks
