"""The DRUM transform's bit-pattern constants, shared by the torch path
(:func:`axtrain.trainer.emulation.drum_transform`) and the numba kernels (:mod:`axtrain.trainer.kernels`).

The transform works on a float's bit pattern (docs/decisions.md item 2, 196): keep the leading
one and the next ``k - 1`` mantissa bits, clear the rest, and set the lowest kept bit where
``|q| >= 2**k``. What it needs besides the values is computed here once per ``(k, frac, dtype)``.
"""

from __future__ import annotations

import functools
import math
import struct

import torch

#: Mantissa width and the integer type of the same size, per float type the transform works on.
MANTISSA = {torch.float32: (23, torch.int32), torch.float64: (52, torch.int64)}

#: How the transform acts for given constants: not at all (an exact multiplier, ``k`` beyond the
#: mantissa, or a threshold the float type cannot hold), clearing the low bits only (``k < 2``:
#: no bit is set), or fully.
IDENTITY, CLEAR, FULL = 0, 1, 2


@functools.lru_cache(maxsize=1024)
def bit_pattern(value: float, dtype: torch.dtype) -> int | None:
    """The IEEE bit pattern of a positive ``value`` in ``dtype`` (None if it is not finite there)."""
    if not math.isfinite(value):
        return None
    try:
        packed = struct.pack("<f" if dtype == torch.float32 else "<d", value)
    except OverflowError:  # beyond float32's range
        return None
    return int.from_bytes(packed, "little", signed=True)


@functools.lru_cache(maxsize=1024)
def drum_constants(k: int, frac: int, dtype: torch.dtype) -> tuple[int, int, int, int]:
    """``(mode, keep, lower, limit)`` of DRUM(k) on ``dtype`` values ``q * 2**-frac``.

    ``keep`` clears every mantissa bit below the lowest kept one (``low = mantissa + 1 - k``);
    ``limit`` is the pattern of the threshold ``2**k * 2**-frac`` and ``lower = limit - 2**low``
    that of ``(2**k - 1) * 2**-frac``, so that a magnitude's pattern clamped to ``[lower, limit]``
    minus ``lower`` is the bit to set (``2**low`` where ``|q| >= 2**k``, else 0). ``mode`` is one of
    :data:`IDENTITY`, :data:`CLEAR`, :data:`FULL`; the other fields are 0 where unused.
    """
    mantissa, _ = MANTISSA[dtype]
    if k > mantissa:
        return (IDENTITY, 0, 0, 0)
    low = mantissa + 1 - k  # position of the lowest kept bit (the leading one sits at `mantissa`)
    keep = -(1 << low)  # ...1111 000: clears every mantissa bit below `low`
    if k < 2:
        return (CLEAR, keep, 0, 0)
    limit = bit_pattern(math.ldexp(1.0, k - frac), dtype)  # |q| >= 2**k  <=>  more than k significant bits
    if limit is None:  # the threshold overflows the float type: every value is below it
        return (IDENTITY, 0, 0, 0)
    return (FULL, keep, limit - (1 << low), limit)
