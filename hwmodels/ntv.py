"""Near-threshold-voltage SRAM: bit-error rate versus supply voltage, and a seeded fault injector.

The model: each stored bit flips independently with probability ``p(V)``, with ``log p`` linear in
V between the calibration points 10 % @ 0.40 V, 1 % @ 0.66 V, 0.1 % @ 0.85 V, and error-free at the
nominal 1.1 V. Between 0.85 V and 1.1 V the rate keeps falling log-linearly along the last segment
and is 0 at (and only at) the nominal voltage, where an NTV-free SRAM is assumed. A voltage outside
[0.40, 1.10] V is an error: the model was not calibrated there.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable

import numpy as np

from axtrain.errors import HardwareModelError

NOMINAL_VOLTAGE = 1.1  # V: the SRAM supply at which no bit flips; the one statement of the nominal voltage
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
    segments = list(itertools.pairwise(points))
    (v0, p0), (v1, p1) = next((seg for seg in segments if v <= seg[1][0]), segments[-1])
    t = (v - v0) / (v1 - v0)
    return float(math.exp(math.log(p0) + t * (math.log(p1) - math.log(p0))))


def flip_positions(n_bits: int, p: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices in ``[0, n_bits)`` of bits that flip, each independently with probability ``p``.

    Per-bit Bernoulli sampling by geometric gaps: the gap between successive flips of a Bernoulli(p)
    sequence is Geometric(p). Cost is proportional to the number of flips, not bits. The gaps are
    drawn as ``1 + floor(E / -log(1 - p))`` with ``E`` standard exponential, which is Geometric(p)
    exactly in real arithmetic and ~5x faster than ``rng.geometric``.
    """
    return flip_positions_from(n_bits, p, rng.standard_exponential)


def flip_positions_from(n_bits: int, p: float, exponentials: Callable[[int], np.ndarray]) -> np.ndarray:
    """:func:`flip_positions` with the standard exponentials drawn by ``exponentials(count)`` (a
    fresh float64 array of ``count`` values, which the walk overwrites): the one gap walk, whatever generator feeds it (the trainer's
    is a torch generator: ``trainer.emulation.draw_fault_masks``)."""
    if not 0.0 <= p <= 1.0:
        raise HardwareModelError(f"bit-error rate must lie in [0, 1], got {p!r}")
    if n_bits <= 0 or p == 0.0:
        return np.empty(0, dtype=np.int64)
    if p == 1.0:
        return np.arange(n_bits, dtype=np.int64)
    scale = 1.0 / -math.log1p(-p)
    chunks: list[np.ndarray] = []
    position = -1
    expected = n_bits * p
    while True:
        batch = int(expected + 6.0 * math.sqrt(expected + 1.0) + 16)
        gaps = np.asarray(exponentials(batch), dtype=np.float64)  # a fresh array: scaled in place
        gaps *= scale
        # Capped at n_bits so a tiny p cannot overflow int64 (any gap that long ends the draw anyway);
        # the cast truncates, which is floor for these non-negative values.
        np.minimum(gaps, n_bits, out=gaps)
        steps = np.cumsum(gaps.astype(np.int64) + 1)
        steps += position
        inside = steps[: np.searchsorted(steps, n_bits)]  # steps ascend: no boolean mask needed
        chunks.append(inside)
        if inside.size < steps.size:
            break
        position = int(steps[-1])
        expected = (n_bits - position) * p
    return np.concatenate(chunks)


# The bit-array route needs one byte per stored bit (padded to 8/16/32-bit words); above this many
# bytes the masks are summed per word with bincount instead, which needs memory per flip only.
_BIT_ARRAY_LIMIT = 1 << 26


def _flip_masks(positions: np.ndarray, n_words: int, bits: int) -> np.ndarray:
    """Per-word XOR masks (unsigned or int64 integers) from sorted, distinct global flip positions."""
    padded = 8 if bits <= 8 else 16 if bits <= 16 else 32
    if n_words * padded <= _BIT_ARRAY_LIMIT:
        if padded != bits:  # move bit j of word i to i * padded + j
            positions = positions + (positions // bits) * (padded - bits)
        flags = np.zeros(n_words * padded, dtype=np.uint8)
        flags[positions] = 1
        # packbits, little bit order: byte b holds flags 8b..8b+7 with flag 8b as its LSB, and the
        # bytes of one word read as a little-endian integer give that word's mask (~10x bincount).
        packed = np.packbits(flags, bitorder="little")
        return packed.view(f"<u{padded // 8}")
    word, bit = np.divmod(positions, bits)
    # Positions are distinct, so the flipped bits of one word sum to their OR; every sum is below
    # 2**32 and therefore exact in float64.
    return np.bincount(word, weights=np.ldexp(1.0, np.arange(bits))[bit], minlength=n_words).astype(np.int64)


def inject(words: np.ndarray, bits: int, p: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``words`` (integers stored as ``bits``-bit two's complement) with NTV bit flips.

    Bit ``j`` of word ``i`` is global bit ``i * bits + j`` (j = 0 is the LSB). Each flips
    independently with probability ``p``; the result is sign-extended back to signed integers of the
    same dtype as the input.
    """
    words = np.asarray(words)
    if not np.issubdtype(words.dtype, np.integer):
        raise HardwareModelError(f"NTV injection needs an integer weight image, got dtype {words.dtype}")
    if not 1 <= bits <= min(32, 8 * words.dtype.itemsize):
        raise HardwareModelError(f"word width must be in [1, {min(32, 8 * words.dtype.itemsize)}] bits for dtype {words.dtype}, got {bits}")
    positions = flip_positions(words.size * bits, p, rng)
    if positions.size == 0:
        return words.copy()
    masks = _flip_masks(positions, words.size, bits)
    if bits == 8 * words.dtype.itemsize and masks.dtype.itemsize == words.dtype.itemsize and words.dtype.isnative:
        # The word fills its dtype: flipping bits of the two's complement word is a plain XOR.
        unsigned = np.ascontiguousarray(words).reshape(-1).view(masks.dtype)
        return np.asarray((unsigned ^ masks).view(words.dtype).reshape(words.shape))
    flat = words.reshape(-1).astype(np.int64)
    low = (1 << bits) - 1
    raw = (flat & low) ^ masks.astype(np.int64)
    if np.issubdtype(words.dtype, np.signedinteger):
        sign = np.int64(1) << (bits - 1)
        raw = (raw ^ sign) - sign  # sign-extend the two's complement word
    return raw.astype(words.dtype).reshape(words.shape)


def inject_reference(words: np.ndarray, bits: int, p: float, rng: np.random.Generator) -> np.ndarray:
    """Slow reference of :func:`inject`: one Bernoulli(p) draw per stored bit, in plain Python.

    The definition of the fault model; the fast path draws from the same distribution (checked
    statistically in the tests, not stream for stream: it consumes the generator differently).
    """
    words = np.asarray(words)
    if not np.issubdtype(words.dtype, np.integer):
        raise HardwareModelError(f"NTV injection needs an integer weight image, got dtype {words.dtype}")
    if not 0.0 <= p <= 1.0:
        raise HardwareModelError(f"bit-error rate must lie in [0, 1], got {p!r}")
    signed = np.issubdtype(words.dtype, np.signedinteger)
    out = []
    for value in words.reshape(-1).tolist():
        raw = int(value) & ((1 << bits) - 1)
        for j in range(bits):
            if rng.random() < p:
                raw ^= 1 << j
        if signed and raw >> (bits - 1):
            raw -= 1 << bits
        out.append(raw)
    return np.array(out, dtype=np.int64).astype(words.dtype).reshape(words.shape)
