"""Error statistics of the DRUM multiplier over uniform operands.

The relative error of one product is ``(approx - exact) / exact``; products that are exactly zero
(an operand is zero) are excluded, since their relative error is undefined and DRUM gets them right.
Operands are uniform over the ``bits``-bit range (``[0, 2**bits)`` unsigned, two's complement range
signed); excluding zero products is the same as drawing each operand uniformly from the non-zero
values, which is what the sampler does. Widths up to 8 bits are enumerated exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from axtrain.errors import HardwareModelError
from axtrain.hwmodels.multipliers import MultiplierMode, drum_transform

EXHAUSTIVE_MAX_BITS = 8
MAX_BITS = 32
_CHUNK = 1 << 20


def _nonzero_operands(bits: int, signed: bool) -> np.ndarray:
    """Every non-zero operand of the range, ascending."""
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    values = np.arange(low, high + 1, dtype=np.int64)
    return np.asarray(values[values != 0])


def _sample_nonzero(bits: int, signed: bool, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` operands drawn uniformly from the non-zero values of the range."""
    if signed:
        # Draw from the 2**bits - 1 non-zero values: [1, 2**(b-1)] maps to negatives, the rest positive.
        u = rng.integers(1, 1 << bits, size=size, dtype=np.int64)
        negatives = 1 << (bits - 1)
        return np.where(u <= negatives, -u, u - negatives)
    return rng.integers(1, 1 << bits, size=size, dtype=np.int64)


def _relative_errors(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    # (ta * tb) / (a * b) - 1 as a product of per-operand ratios: no int64 overflow at 32 bits,
    # and each ratio is exact to one float64 rounding.
    return np.asarray((drum_transform(a, k) / a) * (drum_transform(b, k) / b) - 1.0)


def drum_error_stats(k: int, bits: int, signed: bool = False, samples: int = 10**6, seed: int = 0) -> dict[str, Any]:
    """Bias, mean and max relative error of DRUM(``k``) products of uniform ``bits``-bit operands.

    Returns a dict with ``bias`` (mean signed relative error), ``mean_relative_error`` (mean of its
    absolute value) and ``max_relative_error`` (largest absolute value), all fractions, plus the
    inputs, ``pairs`` (how many products were averaged) and ``exhaustive`` (True when every pair of
    the range was enumerated, which happens for ``bits <= 8``; otherwise ``samples`` random pairs
    drawn with ``seed``).
    """
    MultiplierMode(k)  # validates k (raises HardwareModelError)
    if not isinstance(bits, int) or not 2 <= bits <= MAX_BITS:
        raise HardwareModelError(f"operand width must be an integer in [2, {MAX_BITS}] bits, got {bits!r}")
    exhaustive = bits <= EXHAUSTIVE_MAX_BITS
    total = 0.0
    total_abs = 0.0
    worst = 0.0
    pairs = 0
    if exhaustive:
        values = _nonzero_operands(bits, signed)
        # Every pair, one row of a at a time against all of b (at most 255 x 255 here).
        errors = _relative_errors(values[:, None], values[None, :], k)
        total, total_abs, worst, pairs = float(errors.sum()), float(np.abs(errors).sum()), float(np.abs(errors).max()), errors.size
    else:
        if not isinstance(samples, int) or samples < 1:
            raise HardwareModelError(f"number of samples must be a positive integer, got {samples!r}")
        rng = np.random.default_rng(seed)
        remaining = samples
        while remaining > 0:
            n = min(remaining, _CHUNK)
            a = _sample_nonzero(bits, signed, n, rng)
            b = _sample_nonzero(bits, signed, n, rng)
            errors = _relative_errors(a, b, k)
            total += float(errors.sum())
            total_abs += float(np.abs(errors).sum())
            worst = max(worst, float(np.abs(errors).max()))
            remaining -= n
        pairs = samples
    return {
        "k": k,
        "bits": bits,
        "signed": bool(signed),
        "exhaustive": exhaustive,
        "pairs": int(pairs),
        "seed": None if exhaustive else seed,
        "bias": total / pairs,
        "mean_relative_error": total_abs / pairs,
        "max_relative_error": worst,
    }
