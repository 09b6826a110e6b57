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
    # ISA 2: a non-power-of-two scale (a float32 value, e.g. onnxruntime's quantizer's); None: 2**-frac.
    # Such a format's integers move between layers by requant multipliers, never by shifts; frac is 0.
    scale_value: float | None = None
    # ISA 2: the stored integer is ``q = r + zero_point`` (an asymmetric range as onnxruntime's
    # quantizer makes it): the value is ``(q - zero_point) * scale``; consumers fold it into their bias.
    zero_point: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or not MIN_BITS <= self.bits <= MAX_BITS:
            raise HardwareModelError(f"fixed-point width must be an integer in [{MIN_BITS}, {MAX_BITS}], got {self.bits!r}")
        if not isinstance(self.frac, int) or abs(self.frac) > 64:
            raise HardwareModelError(f"fractional length must be an integer in [-64, 64], got {self.frac!r}")
        if not isinstance(self.zero_point, int) or not self.qmin <= self.zero_point <= self.qmax:
            raise HardwareModelError(f"zero point {self.zero_point!r} outside the format's range [{self.qmin}, {self.qmax}]")
        if self.scale_value is not None:
            value = float(self.scale_value)
            if not (math.isfinite(value) and value > 0 and float(np.float32(value)) == value) or self.frac != 0:
                raise HardwareModelError(f"a non-power-of-two scale must be a positive finite float32 value with frac 0, got {self.scale_value!r}")

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
        """The value of one LSB, ``2**-frac`` (or the non-power-of-two ``scale_value``)."""
        return self.scale_value if self.scale_value is not None else math.ldexp(1.0, -self.frac)

    @property
    def power_of_two(self) -> bool:
        """Whether the scale is ``2**-frac`` (requantised by shifts)."""
        return self.scale_value is None

    def __str__(self) -> str:
        zero = f"z{self.zero_point}" if self.zero_point else ""  # e.g. "s8*0x1.8p-7z-13"
        if self.scale_value is not None:  # e.g. "s8*0x1.ab2c3ep-7": the float32 scale, exactly
            return f"{'s' if self.signed else 'u'}{self.bits}*{float(self.scale_value).hex()}{zero}"
        return f"{'s' if self.signed else 'u'}{self.bits}.{self.frac}{zero}"

    @classmethod
    def parse(cls, text: str) -> "FixedPointFormat":
        """Parse the ``str()`` form, e.g. ``s8.6``, ``u16.-2`` or ``s8*0x1.ab2c3ep-7`` (a
        non-power-of-two scale, hex float)."""
        try:
            kind, rest = text[0], text[1:]
            if kind not in "su":
                raise ValueError
            zero = 0
            if "z" in rest:
                rest, zero_text = rest.split("z", 1)
                zero = int(zero_text)
            if "*" in rest:
                bits, scale = rest.split("*", 1)
                return cls(int(bits), 0, kind == "s", float.fromhex(scale), zero)
            bits, frac = rest.split(".", 1)
            return cls(int(bits), int(frac), kind == "s", None, zero)
        except (ValueError, IndexError, OverflowError):
            raise HardwareModelError(f"bad fixed-point format {text!r}: expected e.g. 's8.6' (sign, bits, fractional length) or 's8*0x1.8p-7' (a scale)") from None

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
    if fmt.scale_value is not None or fmt.zero_point:
        # onnxruntime's QuantizeLinear: x / scale in float32, round half to even, add the zero point, saturate.
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            ratio = np.asarray(x, dtype=np.float32) / np.float32(fmt.scale)
        return np.asarray(np.clip(np.rint(ratio.astype(np.float64)) + fmt.zero_point, fmt.qmin, fmt.qmax), dtype=np.int64)
    values = np.asarray(x, dtype=np.float32).astype(np.float64) * math.ldexp(1.0, fmt.frac)
    rounded = np.rint(values)
    return np.clip(rounded, fmt.qmin, fmt.qmax).astype(np.int64)


def dequantize(q: np.ndarray, fmt: FixedPointFormat) -> np.ndarray:
    """Integers of ``fmt`` to float32, as ONNX DequantizeLinear (exact for |q| < 2**24; a
    non-power-of-two scale: ``float32(q) * float32(scale)``, rounded once, as onnxruntime)."""
    if fmt.scale_value is not None or fmt.zero_point:
        return (np.asarray(q, dtype=np.float64) - fmt.zero_point).astype(np.float32) * np.float32(fmt.scale)
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


# ---------------------------------------------------------------------------------------------
# Requantisation by an integer multiplier and shift (ISA 2 REQ with the requant table RQ)
# ---------------------------------------------------------------------------------------------

#: A requant multiplier is an unsigned 31-bit integer, ``0 <= M < 2**31`` (gemmlowp's and TFLite's
#: Q0.31 multiplier without its sign bit).
MULTIPLIER_BITS = 31
#: The right shift ``n`` of a requant entry: ``0 <= n <= MAX_RQ_SHIFT`` (a 7-bit field). An int64
#: accumulator times a 31-bit multiplier is below ``2**94``, so every ``n >= 95`` rounds to 0.
MAX_RQ_SHIFT = 127
#: Output zero points a requant entry may add (an int32 word; the saturation bounds it further).
MIN_RQ_ZERO, MAX_RQ_ZERO = -(1 << 16), 1 << 16


def saturation_bounds(bits: int, signed: bool) -> tuple[int, int]:
    """``(qmin, qmax)`` of a ``bits``-wide signed or unsigned integer."""
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def check_requant_entry(multiplier: int, shift: int, zero_point: int) -> str | None:
    """Why ``(multiplier, shift, zero_point)`` is not a requant entry, or None when it is one."""
    if not 0 <= multiplier < 1 << MULTIPLIER_BITS:
        return f"multiplier {multiplier} outside [0, 2**{MULTIPLIER_BITS})"
    if not 0 <= shift <= MAX_RQ_SHIFT:
        return f"shift {shift} outside [0, {MAX_RQ_SHIFT}]"
    if not MIN_RQ_ZERO <= zero_point <= MAX_RQ_ZERO:
        return f"zero point {zero_point} outside [{MIN_RQ_ZERO}, {MAX_RQ_ZERO}]"
    return None


def requantize_multiplier_reference(acc: int, multiplier: int, shift: int, zero_point: int, qmin: int, qmax: int) -> int:
    """The definition, one value in Python integers (no width limit):
    ``clip(zero_point + round_half_even(acc * multiplier * 2**-shift), qmin, qmax)``.

    The product is exact and rounded once (half to even), unlike gemmlowp's two roundings (half away
    from zero in SaturatingRoundingDoublingHighMul, then again in RoundingDivideByPOT)."""
    product = int(acc) * int(multiplier)
    floor = product >> shift  # floor division by 2**shift (Python's >> floors negative numbers)
    remainder = product - (floor << shift)
    if shift > 0:
        half = 1 << (shift - 1)
        if remainder > half or (remainder == half and floor & 1):
            floor += 1
    return min(max(int(zero_point) + floor, qmin), qmax)


def requantize_multiplier(
    acc: np.ndarray, multiplier: np.ndarray | int, shift: np.ndarray | int, zero_point: np.ndarray | int, qmin: int, qmax: int
) -> np.ndarray:
    """:func:`requantize_multiplier_reference` for int64 arrays (multiplier, shift and zero point
    broadcast against ``acc``), in int64 without overflow for every int64 accumulator.

    ``acc * M`` needs up to 94 bits, so it is built from two exact int64 products: with
    ``acc = a1 * 2**32 + a0`` (``0 <= a0 < 2**32``), ``acc * M = T * 2**32 + r0`` where
    ``T = a1*M + (a0*M >> 32)`` (``|T| < 2**63``) and ``0 <= r0 < 2**32``. For ``n >= 32`` the result is
    ``T >> (n - 32)`` rounded by the remainder ``(T mod 2**(n-32), r0)`` compared with the half;
    for ``n < 32`` it is ``T * 2**(32-n) + (r0 >> n)`` with ``T`` first clamped to ``+-2**30`` (from
    there on every value saturates, and the clamp keeps the sign). The saturation bounds must lie
    within ``+-2**24`` (REQ saturates to at most 16 bits). Cross-checked against the reference in
    tests/hwmodels/test_fixedpoint.py over the whole int64 range."""
    if not -(1 << 24) <= qmin <= qmax <= 1 << 24:
        raise HardwareModelError(f"requantisation bounds [{qmin}, {qmax}] must lie within +-2**24")
    a = np.asarray(acc, dtype=np.int64)
    m = np.asarray(multiplier, dtype=np.int64)
    n = np.asarray(shift, dtype=np.int64)
    z = np.asarray(zero_point, dtype=np.int64)
    a, m, n, z = np.broadcast_arrays(a, m, n, z)
    low32 = np.int64(0xFFFFFFFF)
    a1 = a >> 32
    a0 = a & low32
    p0 = a0 * m  # < 2**63: exact
    t = a1 * m + (p0 >> 32)  # |a1*M| < 2**62
    r0 = p0 & low32
    # n >= 32: shift T right by k = n - 32 (k <= 62 here; n >= 95 rounds to 0 below).
    k = np.clip(n - 32, 0, 62)
    f_hi = t >> k
    r1 = t - (f_hi << k)  # in [0, 2**k)
    half1 = np.int64(1) << np.maximum(k - 1, 0)
    odd_hi = (f_hi & 1) == 1
    up_k0 = (r0 > (1 << 31)) | ((r0 == (1 << 31)) & odd_hi)
    up_k = (r1 > half1) | ((r1 == half1) & ((r0 > 0) | odd_hi))
    up_hi = np.where(k == 0, up_k0, up_k)
    f_hi = f_hi + up_hi
    # n < 32: T * 2**(32 - n) + (r0 >> n), rounded by r0's low n bits.
    j = np.clip(n, 0, 31)
    t_clamped = np.clip(t, -(1 << 30), 1 << 30)
    f_lo = (t_clamped << (32 - j)) + (r0 >> j)
    rem = r0 & ((np.int64(1) << j) - 1)
    half0 = np.int64(1) << np.maximum(j - 1, 0)
    up_lo = (j > 0) & ((rem > half0) | ((rem == half0) & ((f_lo & 1) == 1)))
    f_lo = f_lo + up_lo
    rounded = np.where(n >= 95, 0, np.where(n >= 32, f_hi, f_lo))
    rounded = np.clip(rounded, -(1 << 40), 1 << 40)  # saturates anyway; keeps the zero point's add exact
    return np.asarray(np.clip(rounded + z, qmin, qmax))


def quantize_multiplier(real: float) -> tuple[int, int]:
    """``(M, n)`` with ``M * 2**-n`` the nearest such value to ``real > 0``, ``2**30 <= M < 2**31``:
    TFLite's / gemmlowp's QuantizeMultiplier (``frexp``, 31 fractional bits of the mantissa, rounded
    to nearest; a mantissa that rounds up to ``2**31`` is halved). A power of two is exact
    (``M = 2**30``). HardwareModelError when ``n`` falls outside ``[0, MAX_RQ_SHIFT]`` (a ratio of
    scales of ``2**31`` or more, or below ``2**-96``)."""
    if not math.isfinite(real) or real <= 0:
        raise HardwareModelError(f"requantisation multiplier must be a positive finite number, got {real!r}")
    mantissa, exponent = math.frexp(real)  # real = mantissa * 2**exponent, 0.5 <= mantissa < 1
    m = round(math.ldexp(mantissa, MULTIPLIER_BITS))  # float64 mantissa times 2**31: exact, then rounded
    if m == 1 << MULTIPLIER_BITS:
        m //= 2
        exponent += 1
    n = MULTIPLIER_BITS - exponent
    if not 0 <= n <= MAX_RQ_SHIFT:
        raise HardwareModelError(f"requantisation multiplier {real!r} needs a shift of {n}, outside [0, {MAX_RQ_SHIFT}]")
    return int(m), int(n)
