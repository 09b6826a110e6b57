"""Multiplier models: ``exact`` and DRUM(k), a dynamic-range unbiased approximate multiplier.

DRUM (Hashemi, Bahar, Reda, ICCAD 2015) transforms each operand on its own: keep the leading one and
the next ``k-1`` bits of the magnitude, drop the rest, and set the lowest kept bit to 1 (which makes
the truncation unbiased). Operands with at most ``k`` significant bits pass unchanged. The product
is the exact product of the two transformed operands, so an approximate dot product is an exact dot
product of transformed operands: the fast path is *transform, then GEMM*.

Sign handling: sign-magnitude. The magnitude is transformed and the sign re-applied, so
``drum(-a, b) == -drum(a, b)``. (The reference Verilog uses one's complement for negatives, which
differs by one LSB before the transform; we choose the symmetric form and document it in
docs/numerics.md.)

Mode names, kept in this one place: ``exact``; ``drum:K`` for K in 1..16; the paper's aliases
``K1``..``K4`` are ``drum:1``..``drum:4`` (K1 the most aggressive).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from axtrain.errors import HardwareModelError

MAX_DRUM_K = 16
PAPER_ALIASES = {f"K{k}": k for k in range(1, 5)}


@dataclass(frozen=True, order=True)
class MultiplierMode:
    """A multiplier: ``k is None`` for exact, else DRUM with ``k`` kept bits."""

    k: int | None = None

    def __post_init__(self) -> None:
        if self.k is not None and not (isinstance(self.k, int) and 1 <= self.k <= MAX_DRUM_K):
            raise HardwareModelError(f"DRUM k must be an integer in [1, {MAX_DRUM_K}], got {self.k!r}")

    @property
    def is_exact(self) -> bool:
        return self.k is None

    def __str__(self) -> str:
        return "exact" if self.k is None else f"drum:{self.k}"


EXACT = MultiplierMode(None)

_DRUM_PATTERN = re.compile(r"^drum[:(]?(\d+)\)?$")


def parse_mode(text: str | MultiplierMode) -> MultiplierMode:
    """Parse ``exact``, ``drum:K`` (also ``drum(K)``, ``drumK``) or the paper's ``K1``..``K4``."""
    if isinstance(text, MultiplierMode):
        return text
    name = str(text).strip()
    if name.lower() == "exact":
        return EXACT
    if name.upper() in PAPER_ALIASES:
        return MultiplierMode(PAPER_ALIASES[name.upper()])
    match = _DRUM_PATTERN.match(name.lower())
    if match:
        return MultiplierMode(int(match.group(1)))
    raise HardwareModelError(f"unknown multiplier mode {text!r}: expected 'exact', 'drum:K' (K in 1..{MAX_DRUM_K}) or K1..K4{_did_you_mean(name)}")


def _did_you_mean(name: str) -> str:
    """"; did you mean 'drum:2'?" for a near miss of a mode's spelling ("" when nothing is close)."""
    import difflib  # only on the error path

    known = ["exact", *(f"drum:{k}" for k in range(1, MAX_DRUM_K + 1)), *PAPER_ALIASES]
    lowered = name.lower().replace(" ", "")
    if lowered[:1] == "k" and lowered[1:].isdigit() and 1 <= int(lowered[1:]) <= MAX_DRUM_K:
        return f"; did you mean 'drum:{int(lowered[1:])}'? (K1..K4 are the paper's names of drum:1..drum:4)"
    close = difflib.get_close_matches(lowered, [k.lower() for k in known], n=2, cutoff=0.6)
    spelled = [next(k for k in known if k.lower() == c) for c in close]
    return f"; did you mean {' or '.join(repr(c) for c in spelled)}?" if spelled else ""


# ---------------------------------------------------------------------------------------------
# Slow reference: plain Python integers, one operand at a time. This is the definition.
# ---------------------------------------------------------------------------------------------


def drum_operand_reference(value: int, k: int) -> int:
    """DRUM(k) transform of one signed integer operand (sign-magnitude)."""
    magnitude = abs(int(value))
    length = magnitude.bit_length()
    if length > k:
        dropped = length - k
        magnitude = ((magnitude >> dropped) | 1) << dropped
    return -magnitude if value < 0 else magnitude


def multiply_reference(a: int, b: int, mode: MultiplierMode | str) -> int:
    """The product ``a * b`` as the multiplier ``mode`` computes it (pure Python)."""
    k = parse_mode(mode).k
    if k is None:
        return int(a) * int(b)
    return drum_operand_reference(a, k) * drum_operand_reference(b, k)


# ---------------------------------------------------------------------------------------------
# Fast path: vectorised numpy.
# ---------------------------------------------------------------------------------------------


def bit_length(magnitude: np.ndarray) -> np.ndarray:
    """Bit length of non-negative integers below 2**53, vectorised (``frexp`` is exact there)."""
    return np.frexp(np.asarray(magnitude, dtype=np.float64))[1].astype(np.int64)


# Above this many elements, and when the values span at most _LUT_SPAN integers, the transform is a
# table lookup: the table is the arithmetic transform of every value in the span, so the result is
# the same integers, ~5x faster on 8-bit activations.
_LUT_MIN_SIZE = 4096
_LUT_SPAN = 1 << 17


def _drum_arithmetic(values: np.ndarray, k: int) -> np.ndarray:
    magnitude = np.abs(values)
    dropped = np.maximum(bit_length(magnitude) - k, 0)
    kept = ((magnitude >> dropped) | (dropped > 0)) << dropped
    return np.asarray(np.where(values < 0, -kept, kept))


def drum_transform(values: np.ndarray, k: int) -> np.ndarray:
    """DRUM(k) transform of an integer array (int64 result), identical to the reference per element."""
    values = np.asarray(values, dtype=np.int64)
    if values.size >= _LUT_MIN_SIZE:
        low, high = int(values.min()), int(values.max())
        if high - low < _LUT_SPAN:
            table = _drum_arithmetic(np.arange(low, high + 1, dtype=np.int64), k)
            return np.asarray(table[values - low])
    return _drum_arithmetic(values, k)


# float dtype -> (the unsigned integer of its width, its width, its precision in bits)
_FLOAT_BITS: dict[np.dtype[Any], tuple[Any, int, int]] = {np.dtype(np.float32): (np.uint32, 32, 24), np.dtype(np.float64): (np.uint64, 64, 53)}


def drum_transform_float(values: np.ndarray, k: int) -> np.ndarray:
    """DRUM(k) of integer-valued float32 or float64 values, same dtype, computed on the bit pattern.

    The same integers as :func:`drum_transform` for integers of magnitude below ``2**24`` (float32)
    or ``2**53`` (float64), where every such integer is exact: the leading one is the implicit bit,
    so keeping the top ``k`` bits of a magnitude of bit length above ``k`` and forcing the lowest
    kept one to 1 is clearing the mantissa bits below significance ``p - k`` (``p`` = 24 or 53) and
    setting the bit there (for ``k = 1`` that bit is the implicit one); the sign bit is untouched
    (``-kept`` for negatives). Magnitudes below ``2**k`` are kept as they are. A few elementwise
    passes, 2-3x faster than a table lookup on 8-bit activations (the fast executor transforms
    every word a DISTN reads).
    """
    if values.dtype not in _FLOAT_BITS:
        raise HardwareModelError(f"drum_transform_float: expected float32 or float64 values, got {values.dtype}")
    word, width, precision = _FLOAT_BITS[values.dtype]
    if not 1 <= k < precision:
        raise HardwareModelError(f"drum_transform_float: k={k} outside 1..{precision - 1}")
    values = np.ascontiguousarray(values)
    shift = precision - k
    # Below 2**k the cleared bits are zero already: only the set bit depends on the magnitude (a
    # boolean times the bit, cheaper than a masked copy).
    out = values.view(word) & word((1 << width) - (1 << shift))
    if k > 1:  # for k = 1 the lowest kept bit is the implicit leading one, already set
        out |= np.multiply(np.abs(values) >= values.dtype.type(1 << k), word(1 << shift), dtype=word)
    result: np.ndarray = out.view(values.dtype)
    return result


def transform_operand(values: np.ndarray, mode: MultiplierMode | str) -> np.ndarray:
    """The operand as ``mode``'s multiplier sees it (identity for exact)."""
    k = parse_mode(mode).k
    values = np.asarray(values, dtype=np.int64)
    return values if k is None else drum_transform(values, k)


def multiply(a: np.ndarray, b: np.ndarray, mode: MultiplierMode | str) -> np.ndarray:
    """Element-wise products under ``mode`` (int64, broadcasting)."""
    return np.asarray(transform_operand(a, mode) * transform_operand(b, mode))


def matmul(activations: np.ndarray, weights: np.ndarray, mode: MultiplierMode | str) -> np.ndarray:
    """``activations @ weights`` with every scalar product taken by ``mode``'s multiplier.

    ``activations`` is (N, K) and ``weights`` (K, M), integers. Exact in int64 arithmetic: the GEMM
    runs in float64, which is exact while every partial sum stays below 2**53 (far above any
    accumulator of this toolchain, see docs/numerics.md), and is then cast back.
    """
    a = transform_operand(activations, mode).astype(np.float64)
    w = transform_operand(weights, mode).astype(np.float64)
    return np.rint(a @ w).astype(np.int64)
