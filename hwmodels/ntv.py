"""Near-threshold-voltage SRAM: bit-error rate versus supply voltage, and a seeded fault injector.

The model: each stored bit flips independently with probability ``p(V)``, with ``log p`` linear in
V between the calibration points 10 % @ 0.40 V, 1 % @ 0.66 V, 0.1 % @ 0.85 V, and error-free at the
nominal 1.1 V. Between 0.85 V and 1.1 V the rate keeps falling log-linearly along the last segment
and is 0 at (and only at) the nominal voltage, where an NTV-free SRAM is assumed. A voltage outside
[0.40, 1.10] V is an error: the model was not calibrated there.
"""

from __future__ import annotations

import math

import numpy as np

from axtrain.errors import HardwareModelError

NOMINAL_VOLTAGE = 1.1
# (voltage in volts, bit-error rate), ascending voltage. Source: the AxTrain paper's NTV SRAM model.
CALIBRATION: tuple[tuple[float, float], ...] = ((0.40, 1e-1), (0.66, 1e-2), (0.85, 1e-3))
MIN_VOLTAGE = CALIBRATION[0][0]


def bit_error_rate(voltage: float) -> float:
    """Probability that one stored bit reads back flipped at supply ``voltage`` (volts)."""
    try:
        v = float(voltage)
    except (TypeError, ValueError):
        raise HardwareModelError(f"SRAM voltage must be a number in volts, got {voltage!r}") from None
    if not math.isfinite(v) or v < MIN_VOLTAGE - 1e-12 or v > NOMINAL_VOLTAGE + 1e-12:
        raise HardwareModelError(f"SRAM voltage {voltage!r} V is outside the NTV model's range [{MIN_VOLTAGE}, {NOMINAL_VOLTAGE}] V")
    if v >= NOMINAL_VOLTAGE - 1e-12:
        return 0.0
    points = CALIBRATION
    for v_cal, p_cal in points:
        if abs(v - v_cal) < 1e-9:
            return p_cal  # the calibration points themselves, exactly
    # Pick the segment holding v; beyond the last point, extrapolate along the last segment.
    for (v0, p0), (v1, p1) in zip(points, points[1:]):
        if v <= v1:
            break
    t = (v - v0) / (v1 - v0)
    return float(math.exp(math.log(p0) + t * (math.log(p1) - math.log(p0))))


def flip_positions(n_bits: int, p: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices in ``[0, n_bits)`` of bits that flip, each independently with probability ``p``.

    Exact per-bit Bernoulli sampling by geometric gaps: the gap between successive flips of a
    Bernoulli(p) sequence is Geometric(p). Cost is proportional to the number of flips, not bits.
    """
    if not 0.0 <= p <= 1.0:
        raise HardwareModelError(f"bit-error rate must lie in [0, 1], got {p!r}")
    if n_bits <= 0 or p == 0.0:
        return np.empty(0, dtype=np.int64)
    if p == 1.0:
        return np.arange(n_bits, dtype=np.int64)
    chunks: list[np.ndarray] = []
    position = -1
    expected = n_bits * p
    while True:
        batch = int(expected + 6.0 * math.sqrt(expected + 1.0) + 16)
        gaps = rng.geometric(p, size=batch)
        steps = position + np.cumsum(gaps, dtype=np.int64)
        inside = steps[steps < n_bits]
        chunks.append(inside)
        if inside.size < steps.size:
            break
        position = int(steps[-1])
        expected = (n_bits - position) * p
    return np.concatenate(chunks)


def inject(words: np.ndarray, bits: int, p: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``words`` (integers stored as ``bits``-bit two's complement) with NTV bit flips.

    Bit ``j`` of word ``i`` is global bit ``i * bits + j`` (j = 0 is the LSB). Each flips
    independently with probability ``p``; the result is sign-extended back to signed integers of the
    same dtype as the input.
    """
    words = np.asarray(words)
    if not np.issubdtype(words.dtype, np.integer):
        raise HardwareModelError(f"NTV injection needs an integer weight image, got dtype {words.dtype}")
    if not 1 <= bits <= 32:
        raise HardwareModelError(f"word width must be in [1, 32] bits, got {bits}")
    flat = words.reshape(-1).astype(np.int64)
    positions = flip_positions(flat.size * bits, p, rng)
    if positions.size == 0:
        return words.copy()
    masks = np.zeros(flat.size, dtype=np.int64)
    np.bitwise_or.at(masks, positions // bits, np.int64(1) << (positions % bits))
    low = (1 << bits) - 1
    raw = (flat & low) ^ masks
    if np.issubdtype(words.dtype, np.signedinteger):
        sign = np.int64(1) << (bits - 1)
        raw = (raw ^ sign) - sign  # sign-extend the two's complement word
    return raw.astype(words.dtype).reshape(words.shape)
