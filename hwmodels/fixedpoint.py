"""Dynamic fixed point: a value is a ``bits``-bit integer ``q`` with a per-tensor fractional length
``frac``, standing for ``q * 2**-frac``.

Quantisation follows ONNX ``QuantizeLinear`` with scale ``2**-frac`` and zero point 0 exactly: divide
by the scale (exact for a power of two), round half to even, saturate to the integer range. Because
the scale is a power of two, requantising an integer accumulator is a rounding arithmetic shift,
which :func:`requantize` does in integers (no float rounding can creep in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from axtrain.errors import HardwareModelError

MIN_BITS = 2
MAX_BITS = 32


@dataclass(frozen=True)
class FixedPointFormat:
    """A dynamic fixed-point format: ``bits`` wide, ``frac`` fractional bits, signed or not.

    ``frac`` may be negative (a scale above 1) or exceed ``bits`` (a tensor smaller than one LSB of
    a format without integer bits). Signed values are two's complement.
    """

    bits: int
    frac: int
    signed: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or not MIN_BITS <= self.bits <= MAX_BITS:
            raise HardwareModelError(f"fixed-point width must be an integer in [{MIN_BITS}, {MAX_BITS}], got {self.bits!r}")
        if not isinstance(self.frac, int) or abs(self.frac) > 64:
            raise HardwareModelError(f"fractional length must be an integer in [-64, 64], got {self.frac!r}")

    @property
    def qmin(self) -> int:
        """Smallest representable integer."""
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def qmax(self) -> int:
        """Largest representable integer."""
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def scale(self) -> float:
        """The value of one LSB, ``2**-frac``."""
        return math.ldexp(1.0, -self.frac)

    def __str__(self) -> str:
        return f"{'s' if self.signed else 'u'}{self.bits}.{self.frac}"

    @classmethod
    def parse(cls, text: str) -> "FixedPointFormat":
        """Parse the ``str()`` form, e.g. ``s8.6`` or ``u16.-2``."""
        try:
            kind, rest = text[0], text[1:]
            bits, frac = rest.split(".", 1)
            if kind not in "su":
                raise ValueError
            return cls(int(bits), int(frac), kind == "s")
        except (ValueError, IndexError):
            raise HardwareModelError(f"bad fixed-point format {text!r}: expected e.g. 's8.6' (sign, bits, fractional length)") from None

    def storage_dtype(self) -> np.dtype:
        """The narrowest numpy integer type that holds every value of this format."""
        for dtype in (np.int8, np.int16, np.int32, np.int64) if self.signed else (np.uint8, np.uint16, np.uint32, np.uint64):
            info = np.iinfo(dtype)
            if info.min <= self.qmin and self.qmax <= info.max:
                return np.dtype(dtype)
        raise AssertionError("unreachable: bits <= 32")


def quantize(x: np.ndarray, fmt: FixedPointFormat) -> np.ndarray:
    """Quantise real values to integers of ``fmt`` as ONNX QuantizeLinear does (int64 result).

    The input is taken as float32 (ONNX's input type) and divided by the power-of-two scale, which
    is exact; ``np.rint`` rounds half to even; the result is saturated to ``[qmin, qmax]``.
    """
    values = np.asarray(x, dtype=np.float32).astype(np.float64) * math.ldexp(1.0, fmt.frac)
    rounded = np.rint(values)
    return np.clip(rounded, fmt.qmin, fmt.qmax).astype(np.int64)


def dequantize(q: np.ndarray, fmt: FixedPointFormat) -> np.ndarray:
    """Integers of ``fmt`` to float32, as ONNX DequantizeLinear (exact for |q| < 2**24)."""
    return (np.asarray(q, dtype=np.float64) * fmt.scale).astype(np.float32)


def round_shift(acc: np.ndarray, shift: int) -> np.ndarray:
    """``acc * 2**-shift`` rounded half to even, in integer arithmetic (``shift`` may be negative).

    A negative ``shift`` is an exact left shift (the caller keeps it inside int64; :func:`requantize`
    saturates first). A shift of 64 or more leaves ``|acc * 2**-shift| <= 1/2``, which rounds to 0.
    """
    acc = np.asarray(acc, dtype=np.int64)
    if shift <= 0:
        return acc << (-shift)
    if shift >= 64:
        # numpy shifts by >= the word width are undefined; every int64 rounds to 0 here (ties to even).
        return np.zeros_like(acc)
    floor = acc >> shift  # arithmetic shift: floor division by 2**shift
    remainder = acc - (floor << shift)  # in [0, 2**shift)
    half = np.int64(1) << (shift - 1)
    round_up = (remainder > half) | ((remainder == half) & ((floor & 1) == 1))
    return np.asarray(floor + round_up.astype(np.int64))


def requantize(acc: np.ndarray, acc_frac: int, fmt: FixedPointFormat) -> np.ndarray:
    """Move integers at fractional length ``acc_frac`` into ``fmt``: round half to even, saturate.

    This equals ``quantize(acc * 2**-acc_frac, fmt)`` whenever the real value is exact in float32,
    which is what an ONNX Q node computes after a float accumulation.
    """
    shift = acc_frac - fmt.frac
    acc = np.asarray(acc, dtype=np.int64)
    if shift < 0:
        # A left shift only moves values away from 0, so saturating first gives the same result and
        # keeps the shift inside int64; from 2**32 on, every non-zero value saturates.
        if -shift >= 32:
            return np.where(acc > 0, fmt.qmax, np.where(acc < 0, fmt.qmin, 0)).astype(np.int64)
        acc = np.clip(acc, fmt.qmin, fmt.qmax)
    shifted = round_shift(acc, shift)
    return np.asarray(np.clip(shifted, fmt.qmin, fmt.qmax))


def choose_frac(max_abs: float, bits: int, signed: bool = True) -> int:
    """The largest fractional length at which ``max_abs`` does not saturate a ``bits``-bit format.

    Dynamic fixed point picks a format per tensor from its range: the integer part gets just enough
    bits for the largest magnitude, every remaining bit is fractional. ``max_abs == 0`` gets the
    format with no integer bits.
    """
    if not math.isfinite(max_abs) or max_abs < 0:
        raise HardwareModelError(f"tensor range must be a finite non-negative number, got {max_abs!r}")
    magnitude_bits = bits - 1 if signed else bits
    if max_abs == 0.0:
        return magnitude_bits
    # Smallest integer-part width i with max_abs < 2**i; then frac = magnitude_bits - i.
    integer_bits = math.frexp(max_abs)[1]  # max_abs < 2**integer_bits
    frac = magnitude_bits - integer_bits
    # quantize() sees float32, so judge the value it will see (rounding to float32 may carry it up
    # to the next power of two). The largest code is 2**magnitude_bits - 1: a value above
    # qmax + 1/2 LSB would saturate by more than the rounding error of every other value, so it
    # gets one integer bit more. frac + 1 always saturates by at least 1 LSB, so frac is maximal.
    seen = float(np.float32(max_abs)) if max_abs <= float(np.finfo(np.float32).max) else max_abs
    if math.ldexp(seen, frac) > (1 << magnitude_bits) - 0.5:
        frac -= 1
    if frac < -64:
        raise HardwareModelError(f"tensor range {max_abs!r} needs a fractional length below -64 at {bits} bits")
    return min(frac, 64)
